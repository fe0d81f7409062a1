//! `cargo xtask up`: from a fresh clone to a stored callback on screen.
//!
//! Checks that the machine's RabbitMQ and Postgres answer (and says how to
//! start the one that does not), builds once, creates the database if it is
//! missing and applies the migrations, starts worker and ingest with a log
//! file each, waits for both `/readyz`, sends one signed test callback and
//! prints what the read API shows for it. Ctrl-C stops both cleanly.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

/// The auth token the local stack runs with, shown so `loadgen send` works.
const DEV_TOKEN: &str = "dev-auth-token";
const INGEST_ADDR: &str = "127.0.0.1:8080";
const WORKER_ADDR: &str = "127.0.0.1:8081";
const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DATABASE: &str = "twilio_status";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer commands for the Twilio status pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run ingest and worker against the machine's RabbitMQ and Postgres,
    /// send one signed test callback and show it; Ctrl-C stops everything.
    Up {
        /// Build and run release binaries (slower to build, as deployed).
        #[arg(long)]
        release: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let Task::Up { release } = Cli::parse().command;
    match up(release).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask up: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn up(release: bool) -> anyhow::Result<()> {
    check_services()?;
    let root = workspace_root()?;
    let bin = build(&root, release)?;
    let database_url = ensure_database().await?;
    let logs = root.join("target").join("xtask");
    std::fs::create_dir_all(&logs)?;
    let migrate_log = logs.join("migrate.log");
    say(&format!("database {database_url}: applying migrations"));
    let log = std::fs::File::create(&migrate_log)?;
    let migrated = Command::new(bin.join("worker"))
        .arg("migrate")
        .env("DATABASE_URL", &database_url)
        .env("LOG_FORMAT", "pretty")
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("cannot run worker migrate")?;
    if !migrated.success() {
        bail!("worker migrate failed; see {}", migrate_log.display());
    }

    let worker = Service::start(
        "worker",
        &bin,
        &logs,
        &[
            ("DATABASE_URL", database_url.as_str()),
            ("WORKER_ADDR", WORKER_ADDR),
            ("WORKER_AUTO_MIGRATE", "false"),
        ],
    )?;
    // The spool beside the logs, kept across runs (what a stopped ingest
    // could not publish is drained by the next).
    let spool = logs.join("ingest-spool");
    let spool = spool.to_string_lossy();
    let ingest = Service::start(
        "ingest",
        &bin,
        &logs,
        &[
            ("TWILIO_AUTH_TOKEN", DEV_TOKEN),
            ("INGEST_ADDR", INGEST_ADDR),
            ("INGEST_SPOOL_DIR", &spool),
        ],
    )?;
    let running = async {
        wait_ready(&worker, WORKER_ADDR).await?;
        wait_ready(&ingest, INGEST_ADDR).await?;
        show_a_test_callback().await
    };
    let outcome = tokio::select! {
        outcome = running => outcome,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    match outcome {
        Ok(()) => {
            print_next_steps(&logs);
            let _ = tokio::signal::ctrl_c().await;
        }
        Err(error) => eprintln!("xtask up: {error:#}"),
    }
    say("stopping ingest, then worker");
    let ingest_code = ingest.stop();
    let worker_code = worker.stop();
    say(&format!(
        "stopped (ingest exit {}, worker exit {})",
        describe_exit(ingest_code),
        describe_exit(worker_code)
    ));
    Ok(())
}

fn say(line: &str) {
    println!("==> {line}");
}

/// Both services must answer before anything is built.
fn check_services() -> anyhow::Result<()> {
    let checks = [
        (
            "RabbitMQ",
            "127.0.0.1:5672",
            "rabbitmq-server -detached && rabbitmqctl await_startup",
        ),
        (
            "PostgreSQL",
            "127.0.0.1:5432",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        ),
    ];
    let mut missing = Vec::new();
    for (name, address, start) in checks {
        if answers(address) {
            say(&format!("{name} answers on {address}"));
        } else {
            missing.push(format!(
                "{name} does not answer on {address}; start it with: {start}"
            ));
        }
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    Ok(())
}

fn answers(address: &str) -> bool {
    let Some(addr) = address.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives inside the workspace")
}

/// One build of everything `up` runs; returns the directory of the binaries.
fn build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    say(if release {
        "building (release; the first build takes about 15 minutes and 3 GB of target/)"
    } else {
        "building (the first build takes 2 to 4 minutes and about 3 GB of target/)"
    });
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(root).args([
        "build", "--bin", "ingest", "--bin", "worker", "--bin", "loadgen",
    ]);
    if release {
        cargo.arg("--release");
    }
    if !cargo.status().context("cannot run cargo build")?.success() {
        bail!("the build failed");
    }
    let target =
        std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    Ok(target.join(if release { "release" } else { "debug" }))
}

/// Creates the database when it is missing; returns its URL.
async fn ensure_database() -> anyhow::Result<String> {
    let admin = Database::connect(format!("{POSTGRES}/postgres"))
        .await
        .with_context(|| format!("cannot connect to {POSTGRES}/postgres as user postgres"))?;
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [DATABASE.into()],
        ))
        .await?
        .is_some();
    if !exists {
        say(&format!("creating database {DATABASE}"));
        admin
            .execute_unprepared(&format!("CREATE DATABASE {DATABASE}"))
            .await?;
    }
    let _ = admin.close().await;
    Ok(format!("{POSTGRES}/{DATABASE}"))
}

/// A service started in its own process group (Ctrl-C in the terminal
/// reaches only xtask, which stops them in order), logging to a file.
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn start(
        name: &'static str,
        bin: &Path,
        logs: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let log = logs.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = Command::new(bin.join(name));
        command
            .env("AMQP_URL", AMQP_URL)
            .env("LOG_FORMAT", "pretty")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        say(&format!(
            "{name} started (pid {}), log: {}",
            child.id(),
            log.display()
        ));
        Ok(Self { name, child, log })
    }

    /// SIGTERM, then its exit code once it has drained.
    fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|status| status.code())
    }
}

fn describe_exit(code: Option<i32>) -> String {
    code.map_or_else(|| "by signal".to_owned(), |c| c.to_string())
}

async fn wait_ready(service: &Service, addr: &str) -> anyhow::Result<()> {
    let url = format!("http://{addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::Client::new();
    loop {
        if let Ok(response) = client.get(&url).send().await {
            if response.status().is_success() {
                say(&format!("{} ready: {url}", service.name));
                return Ok(());
            }
        }
        if service.has_exited() {
            bail!(
                "{} exited before it was ready; see {}",
                service.name,
                service.log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready after 60 s; see {}",
                service.name,
                service.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Service {
    /// Whether the process has exited (a zombie waiting to be reaped counts).
    fn has_exited(&self) -> bool {
        // `Child::try_wait` needs `&mut`; /proc tells the same without it.
        let pid = self.child.id();
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |stat| stat.split_whitespace().nth(2) == Some("Z"))
    }
}

/// Signs and sends one `delivered` callback, then prints the read API's view.
async fn show_a_test_callback() -> anyhow::Result<()> {
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let params = FormParams::from_pairs(
        [
            ("AccountSid", "AC00000000000000000000000000000000"),
            ("From", "+15017122661"),
            ("MessageSid", sid.as_str()),
            ("MessageStatus", "delivered"),
            ("SmsSid", sid.as_str()),
            ("SmsStatus", "delivered"),
            ("To", "+15558675310"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let url = format!("http://{INGEST_ADDR}/twilio/status");
    let signature = compute_signature(&AuthToken::new(DEV_TOKEN), &url, &params);
    let client = reqwest::Client::new();
    let answer = client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", signature)
        .body(params.encode())
        .send()
        .await
        .context("sending the test callback")?;
    say(&format!(
        "sent a signed test callback for {sid}: ingest answered {}",
        answer.status()
    ));
    let view_url = format!("http://{WORKER_ADDR}/messages/{sid}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = client.get(&view_url).send().await?;
        if response.status().is_success() {
            let view: serde_json::Value = response.json().await?;
            say(&format!("GET {view_url}"));
            println!("{}", serde_json::to_string_pretty(&view)?);
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the test callback was not stored within 30 s; see target/xtask/worker.log");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_next_steps(logs: &Path) {
    let ingest: SocketAddr = INGEST_ADDR
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)));
    println!(
        "
Running. The auth token is {DEV_TOKEN}.
  ingest   http://{ingest}/twilio/status   (/readyz, /metrics)
  worker   http://{WORKER_ADDR}/messages/<MessageSid>   (/readyz, /metrics)
  logs     {logs}/ingest.log, {logs}/worker.log

Try, in another terminal:
  cargo run -p loadgen -- send --url http://{ingest}/twilio/status --token {DEV_TOKEN} \\
      --sid SM0123456789abcdef0123456789abcdef --status sent
  curl -s http://{WORKER_ADDR}/messages/SM0123456789abcdef0123456789abcdef
  cargo run -p worker -- dlq list

Ctrl-C stops both.",
        logs = logs.display()
    );
}
