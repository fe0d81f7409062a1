//! The signature against Twilio's published vectors (TV1–TV10) and the
//! edge cases of the signed string.

use twilio_protocol::form::FormParams;
use twilio_protocol::signature::*;

fn token() -> AuthToken {
    AuthToken::new("12345")
}

fn verifier() -> SignatureVerifier {
    SignatureVerifier::new(vec![token()])
}

use testkit::vectors::{tv4, tv5};

fn params(pairs: &[(&str, &str)]) -> FormParams {
    FormParams::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn tv1() -> FormParams {
    params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675310"),
        ("Digits", "1234"),
        ("From", "+14158675310"),
        ("To", "+18005551212"),
    ])
}

fn tv2() -> FormParams {
    params(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+14158675309"),
        ("Digits", "1234"),
        ("From", "+14158675309"),
        ("To", "+18005551212"),
    ])
}

const TV4_URL: &str = "https://example.com/twilio/status";

#[test]
fn tv1_twilio_docs_vector_and_its_port_variant() {
    let url = "https://example.com/myapp.php?foo=1&bar=2";
    assert_eq!(
        compute_signature(&token(), url, &tv1()),
        "L/OH5YylLD5NRKLltdqwSvS0BnU="
    );
    let with_port = "https://example.com:443/myapp.php?foo=1&bar=2";
    assert_eq!(
        compute_signature(&token(), with_port, &tv1()),
        "nbjTKFXyL7SOTAXZi6MWqyIuq40="
    );
    assert!(verifier().verify_form(url, &tv1(), "L/OH5YylLD5NRKLltdqwSvS0BnU="));
    assert!(verifier().verify_form(url, &tv1(), "nbjTKFXyL7SOTAXZi6MWqyIuq40="));
    assert!(verifier().verify_form(with_port, &tv1(), "L/OH5YylLD5NRKLltdqwSvS0BnU="));
}

#[test]
fn tv2_scheme_and_port_variants() {
    let cases = [
        (
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
        ),
        (
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            "kvajT1Ptam85bY51eRf/AJRuM3w=",
        ),
        (
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            "OyGYPqTF6ztdbRNCvuQO/oPvqQ4=",
        ),
        (
            "http://mycompany.com:80/myapp.php?foo=1&bar=2",
            "0ZXoZLH/DfblKGATFgpif+LLRf4=",
        ),
    ];
    for (url, signature) in cases {
        assert_eq!(compute_signature(&token(), url, &tv2()), signature, "{url}");
        assert!(verifier().verify_form(url, &tv2(), signature), "{url}");
    }
    // http and https sign different strings.
    assert!(!verifier().verify_form(cases[0].0, &tv2(), cases[2].1));
    assert!(!verifier().verify_form(cases[2].0, &tv2(), cases[0].1));
}

#[test]
fn tv4_undelivered_and_its_port_variant() {
    assert_eq!(
        compute_signature(&token(), TV4_URL, &tv4()),
        "b1qZ72pOUUWY6H7AzyGhZMfr2js="
    );
    assert!(verifier().verify_form(TV4_URL, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
    assert!(verifier().verify_form(TV4_URL, &tv4(), "qVPHOgehesvghAjaW63wK/Rrtfs="));
    assert_eq!(
        compute_signature(&token(), "https://example.com:443/twilio/status", &tv4()),
        "qVPHOgehesvghAjaW63wK/Rrtfs="
    );
}

#[test]
fn tv5_delivered_with_parameters_in_any_order() {
    assert_eq!(
        compute_signature(&token(), TV4_URL, &tv5()),
        "QmwTNjaqH1I3ZNvzAlMOa6fBtFk="
    );
    assert!(verifier().verify_form(TV4_URL, &tv5(), "QmwTNjaqH1I3ZNvzAlMOa6fBtFk="));
}

#[test]
fn tv6_explicit_port_is_one_directional() {
    let with_8443 = "https://example.com:8443/twilio/status";
    assert_eq!(
        compute_signature(&token(), with_8443, &tv4()),
        "2MT4sMvn4sFKzJlYZS7HMUZvKC8="
    );
    assert!(verifier().verify_form(with_8443, &tv4(), "2MT4sMvn4sFKzJlYZS7HMUZvKC8="));
    assert!(!verifier().verify_form(TV4_URL, &tv4(), "2MT4sMvn4sFKzJlYZS7HMUZvKC8="));
    assert!(verifier().verify_form(with_8443, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
}

#[test]
fn tv6b_http_and_its_port_variant() {
    let http = "http://example.com/twilio/status";
    assert_eq!(
        compute_signature(&token(), http, &tv4()),
        "A2CQo9W115k3nMCYn9We/1dX6aw="
    );
    assert!(verifier().verify_form(http, &tv4(), "A2CQo9W115k3nMCYn9We/1dX6aw="));
    assert!(verifier().verify_form(http, &tv4(), "5WrHWad5DwDWGk1p0D+OWmGzl1c="));
    assert!(verifier().verify_form(
        "http://example.com:80/twilio/status",
        &tv4(),
        "A2CQo9W115k3nMCYn9We/1dX6aw="
    ));
}

#[test]
fn tv7_query_string_is_signed_as_sent() {
    let url = "https://example.com/twilio/status?tenant=42&b=x%20y";
    assert_eq!(
        compute_signature(&token(), url, &tv4()),
        "dQIzWxdiFwYTsAR/TPFDeznCwHo="
    );
    assert!(verifier().verify_form(url, &tv4(), "dQIzWxdiFwYTsAR/TPFDeznCwHo="));
    // Re-encoding the query breaks it, as it does for Twilio.
    let reencoded = "https://example.com/twilio/status?tenant=42&b=x+y";
    assert!(!verifier().verify_form(reencoded, &tv4(), "dQIzWxdiFwYTsAR/TPFDeznCwHo="));
}

#[test]
fn tv8_fragment_is_not_signed() {
    let url = "https://example.com/twilio/status#rc=5&rp=all";
    assert!(verifier().verify_form(url, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
}

#[test]
fn tv9_json_body_hash_and_url_signature() {
    let body = br#"{"property": "value", "boolean": true}"#;
    let hash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    assert_eq!(body_sha256_hex(body), hash);
    let url = format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={hash}");
    assert!(verifier().verify_json(&url, body, "a9nBmqA0ju/hNViExpshrM61xv4="));
    let mut trailing_space = body.to_vec();
    trailing_space.push(b' ');
    assert!(!verifier().verify_json(&url, &trailing_space, "a9nBmqA0ju/hNViExpshrM61xv4="));
    // The hash parameter is mandatory.
    assert!(!verifier().verify_json(
        "https://mycompany.com/myapp.php?foo=1&bar=2",
        body,
        "a9nBmqA0ju/hNViExpshrM61xv4="
    ));
}

#[test]
fn tv10_repeated_key_values_are_sorted() {
    let p = params(&[
        ("MediaUrl", "https://b.example/2.jpg"),
        ("Body", "hi"),
        ("MediaUrl", "https://a.example/1.jpg"),
        ("To", "+15558675310"),
    ]);
    assert_eq!(
        compute_signature(&token(), TV4_URL, &p),
        "sLq9nY0x9Fjk3C9rLh6KUShOUlk="
    );
}

#[test]
fn m1_no_parameters() {
    let url = "https://example.com/a";
    assert_eq!(
        compute_signature(&token(), url, &FormParams::default()),
        "H5+M2WZw2rz520kM3QstM2pLq/4="
    );
}

#[test]
fn m2_uppercase_sorts_before_lowercase() {
    let p = params(&[("b", "1"), ("B", "2"), ("a", "3"), ("A", "4")]);
    assert_eq!(
        compute_signature(&token(), "https://example.com/a", &p),
        "rtMQbpcsNzLUmg74WIXNjuAUrP0="
    );
}

#[test]
fn m3_empty_value_contributes_its_name() {
    let p = params(&[("ErrorCode", ""), ("X", "1")]);
    assert_eq!(
        compute_signature(&token(), "https://example.com/a", &p),
        "Q58BhVOHPB1MSeB97tKjTJcfyEw="
    );
}

#[test]
fn m4_utf8_values() {
    let p = params(&[("Body", "héllo ✓"), ("From", "+1")]);
    assert_eq!(
        compute_signature(&token(), "https://example.com/a", &p),
        "/jdMpK+kfIp/CIORbU7Rxs4Atfw="
    );
}

#[test]
fn wrong_token_fails() {
    let wrong = SignatureVerifier::new(vec![AuthToken::new("12346")]);
    assert!(!wrong.verify_form(TV4_URL, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
}

#[test]
fn tampered_parameter_fails() {
    let tampered = FormParams::from_pairs(tv4().iter().map(|(k, v)| {
        let v = if k == "MessageStatus" { "delivered" } else { v };
        (k.to_owned(), v.to_owned())
    }));
    assert!(!verifier().verify_form(TV4_URL, &tampered, "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
}

#[test]
fn any_of_several_tokens_is_accepted() {
    let rotating = SignatureVerifier::new(vec![AuthToken::new("new-token"), token()]);
    assert!(rotating.verify_form(TV4_URL, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
}

#[test]
fn credentials_in_url_are_not_signed() {
    let url = "https://user:pass@example.com/twilio/status";
    assert!(verifier().verify_form(url, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));
}

#[test]
fn empty_or_garbage_signature_fails() {
    assert!(!verifier().verify_form(TV4_URL, &tv4(), ""));
    assert!(!verifier().verify_form(TV4_URL, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js"));
}

#[test]
fn token_debug_hides_the_secret() {
    assert!(!format!("{:?}", verifier()).contains("12345"));
}

/// SharedKey vectors computed with twilio-python 9.13.0's
/// `RequestValidator("12345").compute_signature(url, params, "HMAC_SHA256")`.
#[test]
fn shared_key_hmac_sha256_vectors_from_the_sdk() {
    let sha256 = Algorithm::HmacSha256;
    let tv4_sha256 = "MZVRlkDhWv74F5ehvp2cyzlt+ulXxVGmFPmZRjaey+E=";
    assert_eq!(
        compute_signature_with(sha256, &token(), TV4_URL, &tv4()),
        tv4_sha256
    );
    assert_eq!(
        compute_signature_with(
            sha256,
            &token(),
            "https://example.com:443/twilio/status",
            &tv4()
        ),
        "FQNSfLKpAsbm2cibI1QjwYIMhjfLL2E9n6xpaSx4i0I="
    );
    assert!(verifier().verify_form_with(sha256, TV4_URL, &tv4(), tv4_sha256));
    assert!(verifier().verify_form_with(
        sha256,
        TV4_URL,
        &tv4(),
        "FQNSfLKpAsbm2cibI1QjwYIMhjfLL2E9n6xpaSx4i0I="
    ));
    // The same signature is not accepted as HMAC-SHA1, nor TV4's SHA-1 one as SHA-256.
    assert!(!verifier().verify_form(TV4_URL, &tv4(), tv4_sha256));
    assert!(!verifier().verify_form_with(sha256, TV4_URL, &tv4(), "b1qZ72pOUUWY6H7AzyGhZMfr2js="));

    let body = br#"{"property": "value", "boolean": true}"#;
    let url = "https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";
    let json_sha256 = "+UOCWf84gdgo/5Hpg4m5/EgKnJA2/TbOw5sPNVr3bPk=";
    assert!(verifier().verify_json_with(sha256, url, body, json_sha256));
    assert!(!verifier().verify_json_with(sha256, url, b"{}", json_sha256));
}
