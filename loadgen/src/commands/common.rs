//! What several subcommands' arguments share: the default local URLs and the
//! auth token check.

pub const DEFAULT_URL: &str = "http://127.0.0.1:8080/twilio/status";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/twilio_status";

/// An empty token signs nothing ingest would accept: refuse it up front.
pub fn non_empty_token(value: &str) -> Result<String, String> {
    if value.trim().is_empty() {
        Err(
            "the auth token is empty: pass --token or set TWILIO_AUTH_TOKEN \
             (`cargo xtask up` runs with dev-auth-token)"
                .into(),
        )
    } else {
        Ok(value.to_owned())
    }
}
