use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match service_kit::cli::parse() {
        Ok(cli) => worker::run(cli).await,
        Err(code) => code,
    }
}
