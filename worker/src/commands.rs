//! The program behind `worker` and its subcommands: consume, `migrate`,
//! `dlq`, `reconcile`, `retention`. Each answers with the contract's exit
//! code; a subcommand's output is one JSON object a line on stdout, its
//! logs and totals on stderr.

use service_kit::telemetry::LogTarget;
use std::io::{BufRead, Write};
use std::process::ExitCode;

use crate::app::{self, Application};
use crate::config::{
    Command, CommonConfig, DlqCommand, HistoryConfig, ReconcileCommand, ReconcileRunConfig,
    RetentionCommand, WorkerCli, WorkerConfig,
};
use crate::dlq;

/// Runs what the command line asks: consume (no subcommand), or one of
/// the subcommands; the exit code follows the contract (0, 1, or 2 for bad
/// configuration).
pub async fn run(cli: WorkerCli) -> ExitCode {
    let common = match CommonConfig::try_from(cli.common) {
        Ok(common) => common,
        Err(e) => return bad_config(&e.to_string()),
    };
    // A command's stdout is its output (dlq list, reconcile): its logs go to stderr.
    let log_target = match cli.command {
        None => LogTarget::Stdout,
        Some(_) => LogTarget::Stderr,
    };
    let telemetry = match service_kit::telemetry::init_to("worker", common.log_format, log_target) {
        Ok(telemetry) => telemetry,
        Err(e) => return bad_config(&e.to_string()),
    };
    service_kit::cli::warn_retired_settings(crate::config::RETIRED);
    let code = match cli.command {
        None => match WorkerConfig::new(common, cli.consume) {
            Ok(config) => consume(config).await,
            Err(e) => bad_config(&e.to_string()),
        },
        Some(Command::Migrate) => migrate(&common).await,
        Some(Command::Dlq(command)) => dead_letters(&common, command).await,
        Some(Command::Reconcile(command)) => reconcile(&common, command).await,
        Some(Command::Retention(command)) => retention(&common, command).await,
    };
    telemetry.shutdown();
    code
}

/// One plain line naming the server and database, with a hint; a database
/// that does not exist is a configuration error (exit 2).
fn database_failure(database_url: &str, error: &sea_orm::DbErr) -> ExitCode {
    let failure = crate::store::database::explain_database_error(database_url, error);
    if failure.missing_database {
        return bad_config(&failure.message);
    }
    eprintln!("worker: {}", failure.message);
    ExitCode::FAILURE
}

fn bad_config(message: &str) -> ExitCode {
    service_kit::cli::bad_config("worker", message)
}

async fn consume(config: WorkerConfig) -> ExitCode {
    let database_url = config.common.database_url.clone();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(app::StartError::Database(error)) => {
            return database_failure(&database_url, &error);
        }
        Err(error) => {
            tracing::error!(%error, "worker cannot start");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(port = app.port(), "worker listening");
    match app.run_until_stopped(service_kit::shutdown::signal()).await {
        Ok(()) => {
            tracing::info!("worker stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "worker failed");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(common: &CommonConfig) -> ExitCode {
    let result = async {
        let db = crate::store::database::connect_database(&common.database_url, 1).await?;
        crate::store::database::migrate(&db).await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!("migrations applied");
            ExitCode::SUCCESS
        }
        Err(error) => database_failure(&common.database_url, &error),
    }
}

async fn dead_letters(common: &CommonConfig, command: DlqCommand) -> ExitCode {
    let result = match command {
        DlqCommand::List { filter } => {
            let filter = match filter.into_filter() {
                Ok(filter) => filter,
                Err(message) => return bad_config(&message),
            };
            dlq::list(&common.amqp_url, &common.topology, &filter)
                .await
                .map(|letters| {
                    eprintln!("{} dead letter(s)", letters.len());
                    print_json_lines(&letters);
                })
        }
        DlqCommand::Replay { filter, limit } => {
            let filter = match filter.into_filter() {
                Ok(filter) => filter,
                Err(message) => return bad_config(&message),
            };
            dlq::replay(&common.amqp_url, &common.topology, &filter, limit)
                .await
                .map(|n| eprintln!("replayed {n} dead letter(s)"))
        }
        DlqCommand::Purge { yes } => {
            if !yes && !confirm("Delete every message in the dead-letter queue? [y/N] ") {
                eprintln!("not purged");
                return ExitCode::FAILURE;
            }
            dlq::purge(&common.amqp_url, &common.topology)
                .await
                .map(|n| eprintln!("purged {n} dead letter(s)"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("worker dlq: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One reconciliation run: a JSON line per message looked up on stdout,
/// the totals on stderr.
async fn reconcile(common: &CommonConfig, command: ReconcileCommand) -> ExitCode {
    let config = match ReconcileRunConfig::new(command) {
        Ok(config) => config,
        Err(e) => return bad_config(&e.to_string()),
    };
    let db = match crate::store::database::connect_database(&common.database_url, 4).await {
        Ok(db) => db,
        Err(error) => return database_failure(&common.database_url, &error),
    };
    let twilio = match crate::twilio_api::TwilioClient::new(config.twilio_api, None) {
        Ok(twilio) => twilio,
        Err(error) => {
            eprintln!("worker reconcile: {error}");
            return ExitCode::FAILURE;
        }
    };
    let reconciler =
        crate::reconcile::Reconciler::new(db, twilio, config.reconcile, common.change_feed);
    match reconciler.run_once(config.dry_run).await {
        Ok((summary, findings)) => {
            print_json_lines(&findings);
            let mode = if config.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            };
            eprintln!(
                "checked {}: {} recorded, {} unchanged, {} not found, {} failed{mode}",
                summary.checked,
                summary.recorded,
                summary.unchanged,
                summary.not_found,
                summary.failed
            );
            ExitCode::SUCCESS
        }
        Err(error) => database_failure(&common.database_url, &error),
    }
}

async fn retention(common: &CommonConfig, command: RetentionCommand) -> ExitCode {
    let config = HistoryConfig::from_args(&command.history);
    let db = match crate::store::database::connect_database(&common.database_url, 2).await {
        Ok(db) => db,
        Err(error) => return database_failure(&common.database_url, &error),
    };
    let now = chrono::Utc::now();
    match crate::retention::run_once(&db, &config, now, command.dry_run).await {
        Ok(upkeep) => {
            print_json_lines(&upkeep.dropped);
            let verb = if command.dry_run {
                "would drop"
            } else {
                "dropped"
            };
            match config.retention_days {
                Some(days) => eprintln!(
                    "{verb} {} day(s) of history before {} (retention {days} days) in {} ms; {} partition(s) created ahead",
                    upkeep.dropped.len(),
                    crate::store::partitions::horizon(now, days),
                    upkeep.drop_time.as_millis(),
                    upkeep.created
                ),
                None => eprintln!(
                    "WORKER_RETENTION_DAYS is 0: the history is kept for ever; {} partition(s) created ahead",
                    upkeep.created
                ),
            }
            ExitCode::SUCCESS
        }
        Err(error) => database_failure(&common.database_url, &error),
    }
}

/// A command's output: one JSON object a line on stdout.
fn print_json_lines<T: serde::Serialize>(items: &[T]) {
    let mut stdout = std::io::stdout().lock();
    for item in items {
        if let Ok(line) = serde_json::to_string(item) {
            let _ = writeln!(stdout, "{line}");
        }
    }
}

fn confirm(prompt: &str) -> bool {
    eprint!("{prompt}");
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}
