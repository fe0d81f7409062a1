//! `send`: one signed status callback, printed as sent and as answered (the
//! developer's Postman). Succeeds when the answer is the one expected (200,
//! or 403 with `--bad-signature`).

use anyhow::Context;
use clap::Args;
use std::time::{Duration, Instant};
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken};

use super::common::TargetArgs;
use crate::client::{Connection, Target};
use crate::workload::{RequestKind, SignedCallback};

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// MessageSid (and SmsSid), e.g. SM1234567890abcdef1234567890abcdef.
    #[arg(long)]
    sid: String,
    /// MessageStatus (and SmsStatus): queued, sent, delivered, undelivered, failed, read, ...
    #[arg(long)]
    status: String,
    /// ErrorCode, e.g. 30003.
    #[arg(long)]
    error_code: Option<u32>,
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    account_sid: String,
    #[arg(long, default_value = "+15017122661")]
    from: String,
    #[arg(long, default_value = "+15558675310")]
    to: String,
    /// Extra parameter NAME=VALUE (repeatable), e.g. RawDlrDoneDate=2404151230.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// Sign with a wrong token (ingest must answer 403).
    #[arg(long)]
    bad_signature: bool,
    #[arg(long, default_value_t = 15_000)]
    timeout_ms: u64,
}

pub async fn run(args: SendArgs) -> anyhow::Result<bool> {
    let target = Target::parse(&args.target.url)?;
    let signed_url = args.target.signed_url();
    let mut pairs: Vec<(String, String)> = vec![
        ("AccountSid".into(), args.account_sid),
        ("ApiVersion".into(), "2010-04-01".into()),
    ];
    if let Some(code) = args.error_code {
        pairs.push(("ErrorCode".into(), code.to_string()));
    }
    pairs.extend([
        ("From".into(), args.from),
        ("MessageSid".into(), args.sid.clone()),
        ("MessageStatus".into(), args.status.clone()),
        ("SmsSid".into(), args.sid),
        ("SmsStatus".into(), args.status),
        ("To".into(), args.to),
    ]);
    for param in &args.params {
        let (name, value) = param
            .split_once('=')
            .with_context(|| format!("--param {param:?}: expected NAME=VALUE"))?;
        pairs.push((name.to_owned(), value.to_owned()));
    }
    let params = FormParams::from_pairs(pairs);
    let token = if args.bad_signature {
        AuthToken::new(format!("not-{}", args.target.token))
    } else {
        AuthToken::new(args.target.token.clone())
    };
    let signature = compute_signature(&token, &signed_url, &params);
    let body = params.encode();
    println!("> POST {}", args.target.url);
    if signed_url != args.target.url {
        println!("> (signed for {signed_url})");
    }
    println!("> X-Twilio-Signature: {signature}");
    println!("> {body}");
    let callback = SignedCallback {
        kind: if args.bad_signature {
            RequestKind::BadSignature
        } else {
            RequestKind::Genuine
        },
        event_id: 0,
        message_id: 0,
        body: body.into(),
        signature,
    };
    let mut connection = Connection::new(target, Duration::from_millis(args.timeout_ms));
    let started = Instant::now();
    let answer = connection.post_callback_verbose(&callback).await?;
    let took = started.elapsed();
    println!(
        "< {} ({:.1} ms)",
        answer.status,
        took.as_secs_f64() * 1000.0
    );
    for (name, value) in &answer.headers {
        println!("< {name}: {value}");
    }
    if !answer.body.is_empty() {
        println!("{}", String::from_utf8_lossy(&answer.body));
    }
    Ok(answer.status == callback.kind.expected_status())
}
