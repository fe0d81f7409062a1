use clap::Parser;
use ingest::app::Application;
use ingest::config::{IngestArgs, IngestConfig};
use std::process::ExitCode;

/// Exit code for bad configuration, as the contract requires.
const EXIT_BAD_CONFIG: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match IngestArgs::try_parse() {
        Ok(args) => IngestConfig::try_from(args).map_err(|e| e.to_string()),
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => Err(one_line(&e.to_string())),
    };
    let config = match config {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ingest: configuration error: {message}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let telemetry = match shared::telemetry::init("ingest", config.log_format) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("ingest: configuration error: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let addr = config.addr;
    let app = match Application::build(config) {
        Ok(app) => app,
        Err(error) => {
            tracing::error!(%error, %addr, "cannot listen");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "ingest listening");
    let served = app.run_until_stopped().await;
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

/// clap's message without its usage block, on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .take_while(|line| !line.starts_with("Usage:"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
}
