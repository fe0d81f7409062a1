//! Command-line conventions both binaries keep: a configuration error is one
//! line on stderr and exit code 2.

use std::process::ExitCode;

/// Exit code for bad configuration, as the contract requires.
pub const EXIT_BAD_CONFIG: u8 = 2;

/// What the shipped templates (`.env.example`, `deploy/secret.yaml`) put
/// where a secret goes: a value still holding it was never filled in.
pub const TEMPLATE_PLACEHOLDER: &str = "REPLACE_ME";

/// Whether `secret` still holds the templates' placeholder (in any case).
pub fn is_template_placeholder(secret: &str) -> bool {
    secret.to_ascii_uppercase().contains(TEMPLATE_PLACEHOLDER)
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
    fn clap_errors_become_one_line() {
        let clap = "error: the following required arguments were not provided:\n  --auth-token <AUTH_TOKEN>\n\nUsage: ingest --auth-token <AUTH_TOKEN>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(clap),
            "the following required arguments were not provided: --auth-token <AUTH_TOKEN>"
        );
    }
}
