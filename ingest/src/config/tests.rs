use clap::{CommandFactory, Parser};
use service_kit::cli::InvalidBaseUrl;
use std::time::Duration;

use super::*;

fn args(extra: &[&str]) -> IngestArgs {
    let mut argv = vec!["ingest", "--auth-token", "a, b"];
    argv.extend_from_slice(extra);
    IngestArgs::parse_from(argv)
}

#[test]
fn reads_main_account_and_key_secrets() {
    let config = IngestConfig::try_from(args(&[
        "--account-tokens",
        "ACsub=s1|s2",
        "--signing-keys",
        "k1=secret",
    ]))
    .unwrap();
    let ring = &config.keyring;
    assert!(ring.select(Some("ACother"), None).is_ok());
    assert!(ring.select(Some("ACsub"), None).is_ok());
    assert!(ring.select(None, Some("key=k1")).is_ok());
    assert!(ring.select(None, Some("key=k2")).is_err());
    // Subaccount tokens alone are a valid configuration.
    let only_accounts = IngestArgs::parse_from(["ingest", "--account-tokens", "ACsub=s1"]);
    let ring = IngestConfig::try_from(only_accounts).unwrap().keyring;
    assert!(ring.select(Some("ACsub"), None).is_ok());
    assert!(ring.select(Some("ACother"), None).is_err());
}

#[test]
fn refuses_malformed_secret_maps() {
    let err = IngestConfig::try_from(args(&["--account-tokens", "ACsub"])).unwrap_err();
    assert!(matches!(err, ConfigError::AccountTokens(_)), "{err}");
    let err = IngestConfig::try_from(args(&["--signing-keys", "k1="])).unwrap_err();
    assert!(matches!(err, ConfigError::SigningKeys(_)), "{err}");
}

#[test]
fn normalises_and_checks_the_public_base_url() {
    let ok = IngestConfig::try_from(args(&[
        "--public-base-url",
        "https://hooks.example.com:8443/",
    ]))
    .unwrap();
    assert_eq!(
        ok.public_base_url.as_deref(),
        Some("https://hooks.example.com:8443")
    );
    for bad in ["hooks.example.com", "ftp://x", "https://", "https://h?x=1"] {
        let err = IngestConfig::try_from(args(&["--public-base-url", bad])).unwrap_err();
        assert_eq!(
            err,
            ConfigError::PublicBaseUrl(InvalidBaseUrl(bad.to_owned()))
        );
        assert!(err.to_string().starts_with("PUBLIC_BASE_URL"), "{err}");
    }
}

#[test]
fn every_number_out_of_range_is_refused_naming_its_variable() {
    let cases = [
        ("--body-limit-bytes", "0", "INGEST_BODY_LIMIT_BYTES"),
        ("--body-limit-bytes", "many", "INGEST_BODY_LIMIT_BYTES"),
        (
            "--confirm-timeout-ms",
            "18446744073709551615",
            "INGEST_CONFIRM_TIMEOUT_MS",
        ),
        ("--confirm-timeout-ms", "499", "INGEST_CONFIRM_TIMEOUT_MS"),
        (
            "--spool-max-bytes",
            "1099511627777",
            "INGEST_SPOOL_MAX_BYTES",
        ),
        (
            "--shutdown-drain-secs",
            "3601",
            "INGEST_SHUTDOWN_DRAIN_SECS",
        ),
    ];
    for (flag, value, variable) in cases {
        let error = IngestArgs::try_parse_from(["ingest", "--auth-token", "t", flag, value])
            .expect_err(flag);
        let line = service_kit::cli::describe_parse_error(&error, &IngestArgs::command());
        assert!(line.starts_with(&format!("{variable}: ")), "{line}");
        assert!(line.contains(flag), "{line}");
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains("For more information"), "{line}");
    }
    // The bounds themselves are accepted, and so are the defaults.
    for (flag, value) in [
        ("--spool-max-bytes", "0"),
        ("--shutdown-drain-secs", "0"),
        ("--confirm-timeout-ms", "15000"),
        ("--confirm-timeout-ms", "500"),
        ("--body-limit-bytes", "1024"),
    ] {
        let parsed = IngestArgs::try_parse_from(["ingest", "--auth-token", "t", flag, value]);
        assert!(parsed.is_ok(), "{flag} {value}");
    }
    let defaults = IngestConfig::try_from(args(&[])).unwrap();
    assert_eq!(defaults.shutdown_drain, Duration::from_secs(25));
    assert_eq!(defaults.workers, None, "actix's default: one per core");
}

#[test]
fn a_batch_is_spooled_well_before_its_request_stops_waiting() {
    let spool_after = |confirm_ms: &str| {
        IngestConfig::try_from(args(&["--confirm-timeout-ms", confirm_ms]))
            .unwrap()
            .spool_after
    };
    assert_eq!(spool_after("5000"), Duration::from_secs(1));
    assert_eq!(spool_after("2000"), Duration::from_secs(1));
    assert_eq!(spool_after("500"), Duration::from_millis(250));
}

#[test]
fn dropped_settings_are_no_longer_flags() {
    for flag in [
        "--workers",
        "--batch-max-callbacks",
        "--spool-after-ms",
        "--keep-alive-secs",
    ] {
        let parsed = IngestArgs::try_parse_from(["ingest", "--auth-token", "t", flag, "1"]);
        assert!(parsed.is_err(), "{flag}");
    }
}

#[test]
fn only_secrets_are_hidden_in_help() {
    use clap::CommandFactory;
    let command = IngestArgs::command();
    for arg in command.get_arguments() {
        let Some(env) = arg.get_env().map(|env| env.to_string_lossy().into_owned()) else {
            continue;
        };
        let secret = matches!(
            env.as_str(),
            "TWILIO_AUTH_TOKEN" | "TWILIO_ACCOUNT_TOKENS" | "TWILIO_SIGNING_KEYS" | "AMQP_URL"
        );
        assert_eq!(arg.is_hide_env_values_set(), secret, "{env}");
    }
}

#[test]
fn a_template_placeholder_is_refused_without_printing_the_secret() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["--auth-token", "good,REPLACE_ME_twilio_auth_token"],
            "TWILIO_AUTH_TOKEN",
        ),
        (
            &[
                "--auth-token",
                "t",
                "--account-tokens",
                "ACa=real,ACb=x-replace_me-x",
            ],
            "TWILIO_ACCOUNT_TOKENS",
        ),
        (
            &[
                "--auth-token",
                "t",
                "--signing-keys",
                "k1=REPLACE_ME_secret",
            ],
            "TWILIO_SIGNING_KEYS",
        ),
        (
            &["--account-tokens", "ACa=REPLACE_ME|REPLACE_ME_old"],
            "TWILIO_ACCOUNT_TOKENS",
        ),
        (
            &[
                "--auth-token",
                "t",
                "--amqp-url",
                "amqps://REPLACE_ME_user:REPLACE_ME_password@rabbit/%2f",
            ],
            "AMQP_URL",
        ),
    ];
    for (argv, variable) in cases {
        let argv = std::iter::once("ingest").chain(argv.iter().copied());
        let error = IngestConfig::try_from(IngestArgs::parse_from(argv)).unwrap_err();
        assert!(
            matches!(&error, ConfigError::Placeholder { variable: v, .. } if *v == variable),
            "{error}"
        );
        let line = error.to_string();
        assert!(line.starts_with(variable), "{line}");
        assert!(
            !line.contains("_secret") && !line.contains("_auth_token"),
            "{line}"
        );
        assert!(!line.contains("x-replace_me-x"), "{line}");
    }
    let named = IngestConfig::try_from(args(&["--account-tokens", "ACb=REPLACE_ME"]))
        .unwrap_err()
        .to_string();
    assert!(named.contains("\"ACb\""), "the entry is named: {named}");
}

#[test]
fn refuses_empty_token_and_bad_amqp_url() {
    let no_token = IngestArgs::parse_from(["ingest", "--auth-token", " , "]);
    assert_eq!(
        IngestConfig::try_from(no_token).unwrap_err(),
        ConfigError::NoAuthToken
    );
    let bad_url = IngestConfig::try_from(args(&["--amqp-url", "not a url"])).unwrap_err();
    assert!(matches!(bad_url, ConfigError::AmqpUrl(_)));
}
