use ingest::app::{Application, StartError};
use ingest::config::{IngestArgs, IngestConfig};
use std::process::ExitCode;

/// mimalloc: a callback's handling is many small, short-lived allocations
/// across threads, which glibc's malloc serves at several times the cost
/// (measured in BENCHMARKS.md, *CPU per callback*).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args: IngestArgs = match service_kit::cli::parse() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let config = match IngestConfig::try_from(args) {
        Ok(config) => config,
        Err(error) => return service_kit::cli::bad_config("ingest", &error.to_string()),
    };
    let telemetry = match service_kit::telemetry::init("ingest", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => return service_kit::cli::bad_config("ingest", &error.to_string()),
    };
    service_kit::cli::warn_retired_settings(ingest::config::RETIRED);
    let addr = config.addr;
    let app = match Application::build(config) {
        Ok(app) => app,
        Err(StartError::Spool(error)) => {
            telemetry.shutdown();
            return service_kit::cli::bad_config("ingest", &error.to_string());
        }
        Err(StartError::Listen(error)) => {
            tracing::error!(%error, %addr, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "ingest listening");
    let served = app.run_until_stopped(service_kit::shutdown::signal()).await;
    telemetry.shutdown();
    match served {
        Ok(()) => {
            tracing::info!("ingest stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "ingest failed");
            ExitCode::FAILURE
        }
    }
}
