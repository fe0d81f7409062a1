//! The configuration's rules, checked on parsed command lines.

use super::consumer::POOL_HEADROOM;
use super::*;
use clap::Parser;

fn common(extra: &[&str]) -> Result<CommonConfig, ConfigError> {
    let mut argv = vec!["worker"];
    argv.extend_from_slice(extra);
    CommonConfig::try_from(WorkerCli::parse_from(argv).common)
}

#[test]
fn defaults_are_valid() {
    let config = common(&[]).unwrap();
    assert_eq!(config.topology.retry_delays().len(), 4);
    assert_eq!(config.topology.main_queue(), "twilio.status.events");
}

#[test]
fn refuses_bad_urls_and_delays() {
    assert!(matches!(
        common(&["--amqp-url", "x"]),
        Err(ConfigError::AmqpUrl(_))
    ));
    assert_eq!(
        common(&["--database-url", "mysql://x"]).unwrap_err(),
        ConfigError::DatabaseUrl
    );
    assert!(WorkerCli::try_parse_from(["worker", "--retry-delays-ms", "0"]).is_err());
}

fn worker_config(extra: &[&str]) -> Result<WorkerConfig, ConfigError> {
    let mut argv = vec!["worker"];
    argv.extend_from_slice(extra);
    let cli = WorkerCli::parse_from(argv);
    WorkerConfig::new(CommonConfig::try_from(cli.common)?, cli.consume)
}

#[test]
fn sending_is_off_without_an_account_and_checked_with_one() {
    assert!(worker_config(&[]).unwrap().sending.is_none());
    let account = ["--twilio-account-sid", "AC123"];
    assert_eq!(
        worker_config(&account).unwrap_err(),
        ConfigError::SendingCredentials
    );
    let with_token = [&account[..], &["--twilio-auth-token", "t"]].concat();
    // Without PUBLIC_BASE_URL the API serves reconciliation, not sending.
    let reconcile_only = worker_config(&with_token).unwrap();
    assert!(reconcile_only.sending.is_none());
    assert!(reconcile_only.twilio_api.is_some());
    let bad_url = [&with_token[..], &["--public-base-url", "hooks.example.com"]].concat();
    assert!(matches!(
        worker_config(&bad_url).unwrap_err(),
        ConfigError::SendingCallbackUrl(_)
    ));
    let complete = [
        &with_token[..],
        &["--public-base-url", "https://hooks.example.com/"],
    ]
    .concat();
    let config = worker_config(&complete).unwrap();
    let sending = config.sending.unwrap();
    assert_eq!(
        sending.status_callback_url,
        "https://hooks.example.com/twilio/status"
    );
    let api = config.twilio_api.unwrap();
    assert_eq!(api.main.as_ref().unwrap().1.username, "AC123");
    assert!(
        !format!("{api:?}").contains("\"t\""),
        "secret in Debug output"
    );
    let with_key = [
        &account[..],
        &[
            "--twilio-api-key-sid",
            "SK1",
            "--twilio-api-key-secret",
            "s",
            "--public-base-url",
            "http://h",
        ],
    ]
    .concat();
    let api = worker_config(&with_key).unwrap().twilio_api.unwrap();
    assert_eq!(api.main.unwrap().1.username, "SK1");
}

#[test]
fn api_credentials_are_chosen_per_account() {
    use secrecy::ExposeSecret;
    let config = worker_config(&[
        "--twilio-account-sid",
        "ACmain",
        "--twilio-auth-token",
        "main-new,main-old",
        "--twilio-account-tokens",
        "ACsub=sub-new|sub-old",
        "--public-base-url",
        "http://h",
    ])
    .unwrap();
    let api = config.twilio_api.unwrap();
    let (account, credentials) = api.credentials_for(Some("ACsub")).unwrap();
    assert_eq!(
        (account.as_str(), credentials.username.as_str()),
        ("ACsub", "ACsub")
    );
    assert_eq!(credentials.password.expose_secret(), "sub-new");
    // Unlisted: the main account's credentials, on the message's account.
    let (account, credentials) = api.credentials_for(Some("ACother")).unwrap();
    assert_eq!(
        (account.as_str(), credentials.username.as_str()),
        ("ACother", "ACmain")
    );
    assert_eq!(credentials.password.expose_secret(), "main-new");
    let (account, _) = api.credentials_for(None).unwrap();
    assert_eq!(account, "ACmain");

    // Subaccount tokens alone: the API is on, sending is not.
    let only_subaccounts = worker_config(&["--twilio-account-tokens", "ACsub=t"]).unwrap();
    assert!(only_subaccounts.sending.is_none());
    let api = only_subaccounts.twilio_api.unwrap();
    assert!(api.credentials_for(Some("ACsub")).is_some());
    assert!(api.credentials_for(Some("ACother")).is_none());
}

#[test]
fn template_placeholders_are_refused() {
    assert_eq!(
        worker_config(&["--api-token", "REPLACE_ME_long_random_token"]).unwrap_err(),
        ConfigError::TemplateSecret("WORKER_API_TOKEN")
    );
    assert_eq!(
        worker_config(&["--api-read-tokens", "fine,REPLACE_ME"]).unwrap_err(),
        ConfigError::TemplateSecret("WORKER_API_READ_TOKENS")
    );
    assert_eq!(
        worker_config(&["--twilio-auth-token", "REPLACE_ME_twilio_auth_token"]).unwrap_err(),
        ConfigError::TemplateSecret("TWILIO_AUTH_TOKEN")
    );
    assert_eq!(
        common(&["--database-url", "postgres://REPLACE_ME_user:p@db/x"]).unwrap_err(),
        ConfigError::TemplateSecret("DATABASE_URL")
    );
    let message = ConfigError::TemplateSecret("WORKER_API_TOKEN").to_string();
    assert!(!message.contains("long_random"), "{message}");
    let config = worker_config(&["--api-token", "t", "--api-read-tokens", "r1, r2,"]).unwrap();
    assert_eq!(config.api_read_tokens.len(), 2);
}

#[test]
fn numeric_settings_have_ranges() {
    for (flag, value) in [
        ("--concurrency", "0"),
        ("--concurrency", "65"),
        ("--retry-delays-ms", "5,0"),
        ("--retention-days", "36501"),
    ] {
        let parsed = WorkerCli::try_parse_from(["worker", flag, value]);
        let error = parsed.expect_err(&format!("{flag} {value} accepted"));
        let line = service_kit::cli::one_line(&error.to_string());
        assert!(line.contains(flag), "{flag} {value}: {line}");
        assert!(!line.contains("--help"), "{line}");
        assert!(!line.contains('\n'));
    }
    assert!(WorkerCli::try_parse_from(["worker", "--concurrency", "64"]).is_ok());
}

#[test]
fn settings_that_became_constants_are_refused_as_flags() {
    for flag in [
        "--prefetch",
        "--max-batch",
        "--hold-limit-secs",
        "--database-pool-size",
        "--history-upkeep-secs",
        "--reconcile-interval-secs",
        "--reconcile-max-per-run",
        "--reconcile-concurrency",
        "--reconcile-max-checks",
    ] {
        assert!(
            WorkerCli::try_parse_from(["worker", flag, "1"]).is_err(),
            "{flag}"
        );
    }
}

#[test]
fn the_pool_has_a_connection_per_consumer_and_headroom() {
    let config = worker_config(&[]).unwrap();
    assert_eq!(config.database_pool_size, 8, "today's default");
    let config = worker_config(&["--concurrency", "64"]).unwrap();
    assert_eq!(config.database_pool_size, 64 + POOL_HEADROOM);
}

#[test]
fn an_empty_reconcile_after_turns_periodic_reconciliation_off() {
    let config = worker_config(&[]).unwrap();
    assert!(config.reconcile.interval.is_some());
    let config = worker_config(&["--reconcile-after", ""]).unwrap();
    assert!(config.reconcile.interval.is_none());
    assert!(config.reconcile.after.is_empty());
}

#[test]
fn only_secrets_hide_their_values() {
    use clap::CommandFactory;
    const SECRETS: [&str; 7] = [
        "AMQP_URL",
        "DATABASE_URL",
        "WORKER_API_TOKEN",
        "WORKER_API_READ_TOKENS",
        "TWILIO_AUTH_TOKEN",
        "TWILIO_ACCOUNT_TOKENS",
        "TWILIO_API_KEY_SECRET",
    ];
    let command = WorkerCli::command();
    let subcommands = command
        .get_subcommands()
        .flat_map(|sub| sub.get_arguments());
    for arg in command.get_arguments().chain(subcommands) {
        let Some(env) = arg.get_env().and_then(|env| env.to_str()) else {
            continue;
        };
        assert_eq!(
            arg.is_hide_env_values_set(),
            SECRETS.contains(&env),
            "{env}"
        );
    }
}

#[test]
fn subcommands_parse() {
    let cli = WorkerCli::parse_from(["worker", "dlq", "purge", "--yes"]);
    assert!(matches!(
        cli.command,
        Some(Command::Dlq(DlqCommand::Purge { yes: true }))
    ));
    let cli = WorkerCli::parse_from(["worker", "migrate"]);
    assert!(matches!(cli.command, Some(Command::Migrate)));
    let cli = WorkerCli::parse_from(["worker", "reconcile", "--dry-run"]);
    assert!(matches!(
        cli.command,
        Some(Command::Reconcile(command)) if command.dry_run
    ));
}
