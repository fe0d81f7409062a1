use std::process::ExitCode;

/// mimalloc: a callback's handling is many small, short-lived allocations
/// across threads, which glibc's malloc serves at several times the cost
/// (measured in BENCHMARKS.md, *CPU per callback*).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match service_kit::cli::parse() {
        Ok(cli) => worker::run(cli).await,
        Err(code) => code,
    }
}
