//! Property tests for the signer and the form parser, the two places where
//! a byte of difference from Twilio means a refused or forged callback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};
use twilio_protocol::form::FormParams;
use twilio_protocol::keyring::Keyring;
use twilio_protocol::signature::{
    compute_signature, compute_signature_with, Algorithm, AuthToken, SignatureVerifier,
};

/// Twilio's algorithm written again in Python with only its standard
/// library, following twilio-python's RequestValidator: an independent
/// reference for our Rust signer.
const PYTHON_REFERENCE: &str = r#"
import base64, hashlib, hmac, json, sys
out = []
for case in json.load(sys.stdin):
    s = case["url"]
    params = case["params"]
    for name in sorted(set(n for n, _ in params)):
        for value in sorted(set(v for n, v in params if n == name)):
            s += name + value
    hash_function = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}[case["algorithm"]]
    digest = hmac.new(case["token"].encode(), s.encode("utf-8"), hash_function).digest()
    out.append(base64.b64encode(digest).decode())
json.dump(out, sys.stdout)
"#;

/// Token, URL, parameters.
type SigningCase = (String, String, Vec<(String, String)>);

fn python_signatures(cases: &[(Algorithm, SigningCase)]) -> Vec<String> {
    let input = serde_json::to_vec(
        &cases
            .iter()
            .map(|(algorithm, (token, url, params))| {
                serde_json::json!({"algorithm": algorithm.name(), "token": token, "url": url, "params": params})
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let mut child = Command::new("python3")
        .args(["-c", PYTHON_REFERENCE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is on every machine of this project");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Names like Twilio's (and mixed case, digits, unicode), values anything.
fn param() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        "[A-Za-z][A-Za-z0-9]{0,12}",
        prop::sample::select(vec![
            "MessageSid",
            "MessageStatus",
            "To",
            "From",
            "Body",
            "MediaUrl",
            "ErrorCode"
        ])
        .prop_map(str::to_owned),
        "\\PC{1,6}",
    ];
    (name, "\\PC{0,24}")
}

fn url() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https"]),
        "[a-z]{1,10}\\.(com|io)",
        prop::option::of(1u16..65535),
        "(/[A-Za-z0-9._-]{0,8}){1,3}",
        prop::option::of("[a-z]{1,5}=[A-Za-z0-9%]{0,6}(&[a-z]{1,5}=[A-Za-z0-9]{0,6}){0,2}"),
    )
        .prop_map(|(scheme, host, port, path, query)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{path}{query}")
        })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(vec![Algorithm::HmacSha1, Algorithm::HmacSha256])
}

fn case() -> impl Strategy<Value = SigningCase> {
    (
        "[A-Za-z0-9]{1,40}",
        url(),
        prop::collection::vec(param(), 0..12),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    #[test]
    fn our_signature_equals_the_independent_reference(cases in prop::collection::vec((algorithm(), case()), 1..64)) {
        let reference = python_signatures(&cases);
        for ((algorithm, (token, url, params)), expected) in cases.iter().zip(reference) {
            let ours = compute_signature_with(*algorithm, &AuthToken::new(token.clone()), url, &FormParams::from_pairs(params.clone()));
            prop_assert_eq!(&ours, &expected, "{:?} url {} params {:?}", algorithm, url, params);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_signature_verifies_on_its_own_url_and_nowhere_else(
        (token, url, params) in case(),
        other_path in "/[a-z]{1,8}",
    ) {
        let params = FormParams::from_pairs(params);
        let signature = compute_signature(&AuthToken::new(token.clone()), &url, &params);
        let verifier = SignatureVerifier::new(vec![AuthToken::new(token)]);
        prop_assert!(verifier.verify_form(&url, &params, &signature));
        let elsewhere = format!("{url}{other_path}");
        prop_assert!(!verifier.verify_form(&elsewhere, &params, &signature));
    }

    #[test]
    fn a_shared_key_signature_verifies_only_under_its_own_algorithm(
        algorithm in algorithm(),
        (secret, url, params) in case(),
    ) {
        let params = FormParams::from_pairs(params);
        let signature = compute_signature_with(algorithm, &AuthToken::new(secret.clone()), &url, &params);
        let other = match algorithm {
            Algorithm::HmacSha1 => Algorithm::HmacSha256,
            Algorithm::HmacSha256 => Algorithm::HmacSha1,
        };
        let keyring = Keyring::new(vec![AuthToken::new("main-token")])
            .with_shared_key("k1", vec![AuthToken::new(secret)]);
        let verifies = |header: &str| {
            let key = keyring.select(params.get("AccountSid"), Some(header)).unwrap();
            key.verifier.verify_form_with(key.algorithm, &url, &params, &signature)
        };
        let own = format!("key=k1,algorithm={}", algorithm.name());
        let wrong = format!("key=k1,algorithm={}", other.name());
        prop_assert!(verifies(&own), "{}", own);
        prop_assert!(!verifies(&wrong), "{}", wrong);
    }

    #[test]
    fn form_encoding_round_trips(pairs in prop::collection::vec(("\\PC{0,10}", "\\PC{0,20}"), 0..20)) {
        let params = FormParams::from_pairs(pairs);
        prop_assert_eq!(FormParams::parse(params.encode().as_bytes()), Ok(params));
    }

    #[test]
    fn the_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = FormParams::parse(&bytes);
        let _ = twilio_protocol::callback::StatusCallback::from_form(&bytes);
        let _ = twilio_protocol::callback::StatusCallback::from_json(&bytes);
    }
}
