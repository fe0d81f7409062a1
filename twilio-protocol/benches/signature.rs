//! What verifying a callback costs: `verify_form` on a realistic callback
//! (Twilio's TV4 undelivered vector) against the floor it cannot go below,
//! one bare HMAC-SHA1 of the same signed string; and parsing a realistic
//! form body. After the run it prints verify_form / bare HMAC.
//!
//! `cargo bench -p twilio-protocol --bench signature`

use criterion::Criterion;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use twilio_protocol::form::FormParams;
use twilio_protocol::signature::{compute_signature, AuthToken, SignatureVerifier};

const TOKEN: &str = "12345";
const URL: &str = "https://example.com/twilio/status";
/// TV4's signature (twilio-protocol.md).
const TV4_SIGNATURE: &str = "b1qZ72pOUUWY6H7AzyGhZMfr2js=";
/// TV4 as Twilio sends it: form-encoded, in Twilio's order, not sorted.
const TV4_BODY: &[u8] = b"ErrorCode=30003&SmsSid=SM1234567890abcdef1234567890abcdef\
&SmsStatus=undelivered&MessageStatus=undelivered&To=%2B15558675310\
&MessageSid=SM1234567890abcdef1234567890abcdef\
&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&From=%2B15017122661&ApiVersion=2010-04-01";
/// A WhatsApp read callback: more parameters, longer values.
const WHATSAPP_BODY: &[u8] = b"SmsSid=SM1234567890abcdef1234567890abcdef&SmsStatus=read\
&MessageStatus=read&ChannelToAddress=%2B447700900123&To=whatsapp%3A%2B447700900123\
&ChannelPrefix=whatsapp&MessagingServiceSid=MG1234567890abcdef1234567890abcdef\
&MessageSid=SM1234567890abcdef1234567890abcdef\
&AccountSid=ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX&StructuredMessage=false\
&From=whatsapp%3A%2B14155238886&ApiVersion=2010-04-01\
&ChannelInstallSid=XE1234567890abcdef1234567890abcdef&EventType=READ";

fn tv4() -> FormParams {
    FormParams::parse(TV4_BODY).unwrap_or_default()
}

/// The exact bytes Twilio's HMAC covers for TV4: URL, then sorted name+value pairs.
fn signed_string(params: &FormParams) -> Vec<u8> {
    let mut signed = URL.as_bytes().to_vec();
    for (name, value) in params.signing_order() {
        signed.extend_from_slice(name.as_bytes());
        signed.extend_from_slice(value.as_bytes());
    }
    signed
}

fn bench_signature(c: &mut Criterion) {
    let params = tv4();
    let verifier = SignatureVerifier::new(vec![AuthToken::new(TOKEN)]);
    let token = AuthToken::new(TOKEN);
    assert_valid(&verifier, &params);
    let signed = signed_string(&params);

    let mut group = c.benchmark_group("signature");
    group.bench_function("verify_form_tv4", |b| {
        b.iter(|| verifier.verify_form(black_box(URL), black_box(&params), TV4_SIGNATURE))
    });
    group.bench_function("compute_signature_tv4", |b| {
        b.iter(|| compute_signature(&token, black_box(URL), black_box(&params)))
    });
    group.bench_function("hmac_sha1_baseline", |b| {
        b.iter(|| {
            let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(TOKEN.as_bytes()) else {
                return Default::default();
            };
            mac.update(black_box(&signed));
            mac.finalize().into_bytes()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("form");
    group.bench_function("parse_tv4_body", |b| {
        b.iter(|| FormParams::parse(black_box(TV4_BODY)))
    });
    group.bench_function("parse_whatsapp_body", |b| {
        b.iter(|| FormParams::parse(black_box(WHATSAPP_BODY)))
    });
    group.finish();
}

fn assert_valid(verifier: &SignatureVerifier, params: &FormParams) {
    // A benchmark of a failing verification would measure the wrong thing.
    if !verifier.verify_form(URL, params, TV4_SIGNATURE) || params.len() != 9 {
        eprintln!("TV4 does not verify: the benchmark input is wrong");
        std::process::exit(1);
    }
}

/// Where criterion writes its estimates (its own default, made explicit).
fn output_directory() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("criterion")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
    }
}

/// The median estimate, in ns, criterion recorded for `group/function`.
fn median_ns(directory: &Path, group: &str, function: &str) -> Option<f64> {
    let path = directory
        .join(group)
        .join(function)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let estimates: serde_json::Value = serde_json::from_str(&text).ok()?;
    estimates["median"]["point_estimate"].as_f64()
}

fn main() {
    let directory = output_directory();
    let mut criterion = Criterion::default()
        .output_directory(&directory)
        .configure_from_args();
    bench_signature(&mut criterion);
    criterion.final_summary();

    let verify = median_ns(&directory, "signature", "verify_form_tv4");
    let hmac = median_ns(&directory, "signature", "hmac_sha1_baseline");
    let parse = median_ns(&directory, "form", "parse_tv4_body");
    if let (Some(verify), Some(hmac)) = (verify, hmac) {
        println!(
            "verify_form (TV4) {verify:.0} ns vs bare HMAC-SHA1 {hmac:.0} ns: ratio {:.2}",
            verify / hmac
        );
        println!(
            "  (verify_form signs two URL variants, default port added and removed, as the SDKs do)"
        );
    }
    if let Some(parse) = parse {
        println!(
            "FormParams::parse (TV4 body, {} bytes) {parse:.0} ns",
            TV4_BODY.len()
        );
    }
}
