//! Command-line conventions both binaries keep: a configuration error is one
//! line on stderr and exit code 2.

use std::process::ExitCode;

use crate::telemetry::LogFormat;

/// Exit code for bad configuration, as the contract requires.
pub const EXIT_BAD_CONFIG: u8 = 2;

/// What the shipped templates (`.env.example`, `deploy/secret.yaml`) put
/// where a secret goes: a value still holding it was never filled in.
pub const TEMPLATE_PLACEHOLDER: &str = "REPLACE_ME";

/// Whether `secret` still holds the templates' placeholder (in any case).
pub fn is_template_placeholder(secret: &str) -> bool {
    secret.to_ascii_uppercase().contains(TEMPLATE_PLACEHOLDER)
}

/// Where a RabbitMQ on this machine answers with its stock user.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The name every exchange and queue starts with, unless
/// `AMQP_TOPOLOGY_PREFIX` says otherwise (`queue_wire::topology`).
pub const DEFAULT_TOPOLOGY_PREFIX: &str = "twilio.status";

/// The settings both programs read the same way: where RabbitMQ is, the
/// names of the topology on it, and how to log. Flattened into each CLI
/// (`global`, so a subcommand takes them too).
#[derive(Debug, Clone, clap::Args)]
pub struct SharedArgs {
    /// RabbitMQ connection URL; a comma-separated list names several nodes
    /// of one cluster, tried in turn and failed over. Holds a password, so
    /// --help does not show its value.
    #[arg(
        long,
        global = true,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = DEFAULT_AMQP_URL
    )]
    pub amqp_url: String,

    /// Name prefix of the exchanges and queues (two deployments can share
    /// one RabbitMQ virtual host under different prefixes).
    #[arg(long, global = true, env = "AMQP_TOPOLOGY_PREFIX", default_value = DEFAULT_TOPOLOGY_PREFIX)]
    pub topology_prefix: String,

    /// Log format: one JSON object a line, or pretty text for a terminal.
    #[arg(
        long,
        global = true,
        env = "LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

/// A base URL that is not `http(s)://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an http(s)://host[:port] URL")]
pub struct InvalidBaseUrl(pub String);

/// The one rule for every base URL a setting names (`PUBLIC_BASE_URL`,
/// `TWILIO_API_BASE_URL`): `http` or `https` (any case), a host, an optional
/// port or path, no query, fragment or space; returned without a trailing
/// slash, so that a path can be appended.
pub fn parse_base_url(raw: &str) -> Result<String, InvalidBaseUrl> {
    let trimmed = raw.trim().trim_end_matches('/');
    let invalid = || InvalidBaseUrl(raw.to_owned());
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(invalid)?;
    let scheme_ok = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if !scheme_ok || host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(invalid());
    }
    Ok(trimmed.to_owned())
}

/// Parses the command line and environment of program `P`: `Ok` with the
/// arguments, or `Err` with the exit code once `--help`/`--version` has
/// been printed (0) or the error, one line naming the variable (2).
/// `--help` shows the value of each non-secret variable that is set.
pub fn parse<P: clap::Parser>() -> Result<P, ExitCode> {
    let command = hide_unset_values(P::command());
    let name = command.get_name().to_owned();
    let parsed = command
        .clone()
        .try_get_matches()
        .and_then(|matches| P::from_arg_matches(&matches));
    match parsed {
        Ok(parsed) => Ok(parsed),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => Err(bad_config(&name, &describe_parse_error(&e, &command))),
    }
}

/// `command` with the values of unset variables hidden: clap writes an
/// unset one as `NAME=`, which reads as set to empty. (Secrets hide their
/// values always, `hide_env_values`.)
pub fn hide_unset_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let unset = arg
                .get_env()
                .is_some_and(|name| std::env::var_os(name).is_none());
            if unset {
                arg.hide_env_values(true)
            } else {
                arg
            }
        })
        .mut_subcommands(hide_unset_values)
}

/// A setting an earlier release read and this one does not, with what took
/// its place: a deployment that still sets it is told so at start (a
/// warning, not a refusal: an upgrade must not stop on an old variable).
pub struct Retired {
    pub variable: &'static str,
    pub now: &'static str,
}

/// The `retired` settings that are set, to be warned about once logging runs.
pub fn retired_settings_set(retired: &[Retired]) -> impl Iterator<Item = &Retired> {
    retired
        .iter()
        .filter(|setting| std::env::var_os(setting.variable).is_some())
}

/// Warns, once each, about every `retired` setting that is set.
pub fn warn_retired_settings(retired: &[Retired]) {
    for setting in retired_settings_set(retired) {
        tracing::warn!(
            variable = setting.variable,
            now = setting.now,
            "a setting of an earlier release is set; this release does not read it"
        );
    }
}

/// Prints `program: configuration error: message` and returns exit code 2.
pub fn bad_config(program: &str, message: &str) -> ExitCode {
    eprintln!("{program}: configuration error: {}", one_line(message));
    ExitCode::from(EXIT_BAD_CONFIG)
}

/// A command-line or environment error as one line that also names the
/// environment variable: deployments set variables, and clap names only
/// the flag. `command` is the program's (`Cli::command()`), searched with
/// its subcommands. (`--help` and `--version` are not errors.)
pub fn describe_parse_error(error: &clap::Error, command: &clap::Command) -> String {
    let message = one_line(&error.render().to_string());
    let variable = match error.get(clap::error::ContextKind::InvalidArg) {
        Some(clap::error::ContextValue::String(shown)) => environment_variable(command, shown),
        _ => None,
    };
    match variable {
        Some(variable) => format!("{variable}: {message}"),
        None => message,
    }
}

/// The environment variable of an argument as clap shows it (`--workers <WORKERS>`).
fn environment_variable(command: &clap::Command, shown: &str) -> Option<String> {
    let long = shown.split_whitespace().next()?.strip_prefix("--")?;
    let own = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned());
    own.or_else(|| {
        command
            .get_subcommands()
            .find_map(|sub| environment_variable(sub, shown))
    })
}

/// A message (clap's, typically) without its usage block, on one line.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_follow_one_rule() {
        assert_eq!(
            parse_base_url(" HTTPS://hooks.example.com:8443/ ").unwrap(),
            "HTTPS://hooks.example.com:8443"
        );
        assert_eq!(
            parse_base_url("http://fake-twilio:9000/base/").unwrap(),
            "http://fake-twilio:9000/base"
        );
        for bad in [
            "hooks.example.com",
            "ftp://x",
            "https://",
            "https://h?x=1",
            "http://h/#x",
            "http://:80",
        ] {
            assert_eq!(
                parse_base_url(bad),
                Err(InvalidBaseUrl(bad.to_owned())),
                "{bad}"
            );
        }
    }

    #[test]
    fn clap_errors_become_one_line() {
        let clap = "error: the following required arguments were not provided:\n  --auth-token <AUTH_TOKEN>\n\nUsage: ingest --auth-token <AUTH_TOKEN>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(clap),
            "the following required arguments were not provided: --auth-token <AUTH_TOKEN>"
        );
    }
}
