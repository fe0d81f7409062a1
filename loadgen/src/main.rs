//! `loadgen`: signed Twilio status callbacks for the pipeline, one at a time
//! (`send`) or as realistic load (`run`), the end-to-end check of what the
//! worker stored (`check`), the worker's read and search APIs under load
//! (`read`, `search`), and the ceilings each stage is compared with
//! (`ceiling-http`, `ceiling-broker`, `ceiling-db`), and an example consumer
//! of the worker's change feed (`watch-changes`). Everything it talks to
//! must be on this machine.
//!
//! This file is the command line and its exit codes; each subcommand's
//! arguments, run and report are in `commands/`, and the measurements they
//! drive are the other modules here.

mod ceiling_broker;
mod ceiling_db;
mod ceiling_http;
mod ceiling_input;
mod client;
mod commands;
mod latency;
mod lifecycle;
mod load;
mod local;
mod persistence;
mod read_loop;
mod search_query;
mod tally;
mod workload;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::commands::ceiling_broker::CeilingBrokerArgs;
use crate::commands::ceiling_db::CeilingDbArgs;
use crate::commands::ceiling_http::CeilingHttpArgs;
use crate::commands::check::CheckArgs;
use crate::commands::delete_topology::DeleteTopologyArgs;
use crate::commands::read::ReadArgs;
use crate::commands::run::RunArgs;
use crate::commands::search::SearchArgs;
use crate::commands::send::SendArgs;
use crate::commands::watch_changes::WatchChangesArgs;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Signed Twilio status callbacks for the pipeline: one at a time, as load, and the ceilings to compare with",
    long_about = "Sends Twilio message status callbacks signed exactly as Twilio signs them \
(URL + sorted parameters, HMAC-SHA1 with the auth token) to ingest, one at a time (send) or \
as realistic load (run), checks what the worker stored (check, or run --database-url), and \
measures what HTTP, RabbitMQ and Postgres alone can do on this machine (ceiling-*).\n\n\
Only loopback addresses are accepted. Every loop is bounded in count and in time.\n\n\
Exit codes: 0 all as expected; 1 an unexpected answer, a row-count mismatch or an error; \
2 bad usage."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send one signed status callback and print the answer (the developer's Postman).
    Send(SendArgs),
    /// Send realistic callback traffic, closed loop (--concurrency) or open loop (--rate).
    #[command(long_about = "Send realistic callback traffic to ingest.\n\n\
Each message lives through a Twilio lifecycle: queued → sent → delivered (68%), \
→ undelivered with ErrorCode 30003/30005/30006 (12%), queued → failed with 30007 (5%), \
WhatsApp queued → sent → delivered → read (15%), with the parameters Twilio sends \
(AccountSid, ApiVersion, From, To, MessageSid, MessageStatus, SmsSid, SmsStatus, ErrorCode, \
RawDlrDoneDate, MessagingServiceSid, Channel*, EventType). A run's message SIDs all start \
with SM + its 8-hex-digit run id.\n\n\
Closed loop (--concurrency C): C kept-alive connections, each sending its next request when \
the previous one is answered. Open loop (--rate R): requests scheduled R per second whatever \
the server does; latency counts from the scheduled time, so a stall is not hidden \
(no coordinated omission).\n\n\
With --database-url, waits (bounded) until the worker has stored everything, then reports \
end-to-end throughput, callback-to-row lag (persisted_at − received_at) and whether the rows \
equal exactly the unique accepted callbacks (duplicates and bad signatures excluded).")]
    Run(RunArgs),
    /// Check what the worker stored for an earlier run, by its run id.
    Check(CheckArgs),
    /// Read API latency: GET /messages/{sid} for messages sampled from the database, closed loop.
    Read(ReadArgs),
    /// Search API latency: GET /messages?... for each --query, its placeholders sampled from the database, closed loop.
    Search(SearchArgs),
    /// HTTP ceiling: a bare in-process actix-web server answering 200, driven by the same client.
    CeilingHttp(CeilingHttpArgs),
    /// Broker ceiling: persistent publishes with confirms into a fresh copy of the pipeline's topology (deleted after).
    CeilingBroker(CeilingBrokerArgs),
    /// Database ceiling: multi-row event inserts into a scratch database (dropped after).
    CeilingDb(CeilingDbArgs),
    /// Delete the exchange and queues of a topology prefix (benchmark clean-up).
    DeleteTopology(DeleteTopologyArgs),
    /// Example consumer of the change feed: binds a queue of its own, prints each change once.
    #[command(
        long_about = "Example consumer of the worker's change feed (README, Change feed).\n\n\
Declares the exchange <prefix>.changes, a durable queue of its own (--queue, default \
<prefix>.changes.example, which keeps changes while the consumer is down) bound with each \
--binding key (default message.failed and message.undelivered), consumes with manual acks, \
drops the copies of a change_id it has seen, and prints each change as one line (--format \
json, the body as published, or text). Stops with exit code 1 on an x-change-version other \
than 1, leaving that change in the queue."
    )]
    WatchChanges(WatchChangesArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let outcome = match cli.command {
        Command::Send(args) => commands::send::run(args).await,
        Command::Run(args) => commands::run::run(args).await,
        Command::Check(args) => commands::check::run(args).await,
        Command::Read(args) => commands::read::run(args).await,
        Command::Search(args) => commands::search::run(args).await,
        Command::CeilingHttp(args) => commands::ceiling_http::run(args).await,
        Command::CeilingBroker(args) => commands::ceiling_broker::run(args).await,
        Command::CeilingDb(args) => commands::ceiling_db::run(args).await,
        Command::DeleteTopology(args) => commands::delete_topology::run(args).await,
        Command::WatchChanges(args) => commands::watch_changes::run(args).await,
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("loadgen: {error:#}");
            ExitCode::FAILURE
        }
    }
}
