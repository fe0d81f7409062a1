//! The deadline every read answers within.

use super::error::ApiError;

/// Every read answers within this, whatever it waits for (a pool
/// connection, another reader's `/stats`, its statements): Twilio's and a
/// dashboard's patience is 15 s.
const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

/// Runs a read under `READ_DEADLINE`: past it, `503` too slow.
pub(super) async fn within_deadline<T>(
    read: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(READ_DEADLINE, read)
        .await
        .unwrap_or(Err(ApiError::TooSlow))
}
