use clap::Parser;
use ingest::app::{Application, StartError};
use ingest::config::{IngestArgs, IngestConfig};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match IngestArgs::try_parse() {
        Ok(args) => IngestConfig::try_from(args).map_err(|e| e.to_string()),
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => Err(ingest::config::describe_parse_error(&e)),
    };
    let config = match config {
        Ok(config) => config,
        Err(message) => return service_kit::cli::bad_config("ingest", &message),
    };
    let telemetry = match service_kit::telemetry::init("ingest", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => return service_kit::cli::bad_config("ingest", &error.to_string()),
    };
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
