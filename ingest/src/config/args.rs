//! What ingest reads from its flags and environment variables.

use clap::builder::RangedU64ValueParser;
use service_kit::cli::SharedArgs;
use std::net::SocketAddr;
use std::path::PathBuf;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Twilio waits 15 s at most for an answer (its `rt`/`tt` connection
/// overrides stop there): waiting longer for anything serves no one.
pub(super) const TWILIO_TIMEOUT_MS: u64 = 15_000;

#[derive(Debug, clap::Parser)]
#[command(
    name = "ingest",
    version,
    about = "Receives Twilio message status callbacks, verifies X-Twilio-Signature and publishes them to RabbitMQ",
    long_about = "Receives Twilio message status callbacks on POST /twilio/status, verifies \
X-Twilio-Signature exactly as Twilio's SDKs do (the auth token of the callback's account, or \
the SharedKey its X-Twilio-Webhooks-Signature-Settings names), publishes the raw callback to a \
durable RabbitMQ quorum queue and answers 200 only once the broker has confirmed it (or, while \
RabbitMQ cannot confirm, once it is in the durable local spool).\n\n\
Also serves GET /healthz, GET /readyz and GET /metrics. Stops gracefully on SIGTERM/SIGINT, \
then drains the spool into RabbitMQ for up to INGEST_SHUTDOWN_DRAIN_SECS."
)]
pub struct IngestArgs {
    /// Auth token(s) of the main account, which also serve every account not in
    /// TWILIO_ACCOUNT_TOKENS; comma-separated to rotate without downtime.
    /// Required unless TWILIO_ACCOUNT_TOKENS is set.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Per-account tokens, `ACxxx=token1|token2,ACyyy=token3`: a callback is
    /// verified with the tokens of the AccountSid it carries (subaccounts).
    #[arg(long, env = "TWILIO_ACCOUNT_TOKENS", hide_env_values = true)]
    pub account_tokens: Option<String>,

    /// SharedKey secrets, `KEY_ID=SECRET,...`: a callback whose
    /// X-Twilio-Webhooks-Signature-Settings names a key is verified with its
    /// secret, under HMAC_SHA1 or HMAC_SHA256 as the header says.
    #[arg(long, env = "TWILIO_SIGNING_KEYS", hide_env_values = true)]
    pub signing_keys: Option<String>,

    /// scheme://host[:port] Twilio calls; the signed URL is this + path + query.
    /// Unset: rebuilt from the request as http://<Host header>.
    #[arg(long, env = "PUBLIC_BASE_URL")]
    pub public_base_url: Option<String>,

    /// Listen address.
    #[arg(long, env = "INGEST_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// Largest accepted request body, in bytes (1 KiB to 4 MiB: Twilio's
    /// callbacks are a few hundred bytes).
    #[arg(
        long,
        env = "INGEST_BODY_LIMIT_BYTES",
        default_value_t = 64 * 1024,
        value_parser = RangedU64ValueParser::<usize>::new().range(KIB..=4 * MIB)
    )]
    pub body_limit_bytes: usize,

    /// How long to wait for the broker's publisher confirm before answering
    /// 503 (500 to 15000: Twilio waits 15 s at most). A batch not confirmed
    /// within half of this (at most 1 s) goes to the spool instead.
    #[arg(
        long,
        env = "INGEST_CONFIRM_TIMEOUT_MS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(500..=TWILIO_TIMEOUT_MS)
    )]
    pub confirm_timeout_ms: u64,

    /// Directory of the durable local spool (callbacks RabbitMQ cannot
    /// confirm in time wait here). Each process locks a directory of its
    /// own: this one, or `ingest-N` inside it when another process holds it.
    #[arg(long, env = "INGEST_SPOOL_DIR", default_value = "ingest-spool")]
    pub spool_dir: PathBuf,

    /// Largest size of the spool on disk; full, callbacks get 503. 0 turns
    /// the spool off (callbacks RabbitMQ cannot confirm get 503). At most 1 TiB.
    #[arg(
        long,
        env = "INGEST_SPOOL_MAX_BYTES",
        default_value_t = 1 << 30,
        value_parser = clap::value_parser!(u64).range(0..=1 << 40)
    )]
    pub spool_max_bytes: u64,

    /// After SIGTERM, once in-flight requests are done (they get up to 20 s):
    /// how long ingest may keep draining its spool into RabbitMQ before it
    /// exits (0: not at all; at most 3600). What is left stays on disk for
    /// the next process on the directory, or any live one that adopts it.
    /// Keep 20 s plus this within the termination grace period.
    #[arg(
        long,
        env = "INGEST_SHUTDOWN_DRAIN_SECS",
        default_value_t = 25,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    pub shutdown_drain_secs: u64,

    /// Rebuild the signed URL from X-Forwarded-Proto/X-Forwarded-Host (or
    /// Forwarded) when PUBLIC_BASE_URL is unset. Only behind a proxy that
    /// sets them; PUBLIC_BASE_URL is preferred.
    #[arg(long, env = "INGEST_TRUST_FORWARDED_HEADERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_forwarded_headers: bool,

    /// RabbitMQ, topology names and log format.
    #[command(flatten)]
    pub shared: SharedArgs,
}
