//! The window `GET /stats` reads: messages first seen in `[since, until)`.

use chrono::{DateTime, Utc};
use sea_orm::Value;

/// The widest window `GET /stats` reads: each request scans the messages
/// first seen in it, and a reader must not make the writers wait.
pub const MAX_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(31);

/// The window: messages whose first event was received in `[since, until)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Window {
    /// `since` is an RFC 3339 time or a duration back from now (`24h`, the
    /// default); `until` an RFC 3339 time (default now).
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let until = match until {
            None => now,
            Some(raw) => DateTime::parse_from_rfc3339(raw)
                .map_err(|_| format!("until={raw:?} is not an RFC 3339 time"))?
                .with_timezone(&Utc),
        };
        let raw = since.unwrap_or("24h");
        let since = match DateTime::parse_from_rfc3339(raw) {
            Ok(at) => at.with_timezone(&Utc),
            Err(_) => {
                let back = humantime::parse_duration(raw).map_err(|_| {
                    format!("since={raw:?} is neither an RFC 3339 time nor a duration like 24h")
                })?;
                let back = chrono::Duration::from_std(back)
                    .map_err(|_| format!("since={raw:?} is too long ago"))?;
                until
                    .checked_sub_signed(back)
                    .ok_or_else(|| format!("since={raw:?} is too long ago"))?
            }
        };
        if since >= until {
            return Err("since must be before until".into());
        }
        if until - since > MAX_WINDOW {
            return Err(format!(
                "the window is too large: at most {} days between since and until",
                MAX_WINDOW.num_days()
            ));
        }
        Ok(Self { since, until })
    }

    pub(super) fn values(&self) -> [Value; 2] {
        [self.since.into(), self.until.into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn windows_parse_times_and_durations() {
        let day = Window::parse(None, None, now()).unwrap();
        assert_eq!(day.until - day.since, chrono::Duration::hours(24));
        let w = Window::parse(
            Some("2026-12-01T00:00:00Z"),
            Some("2026-12-02T00:00:00+00:00"),
            now(),
        )
        .unwrap();
        assert_eq!(w.until - w.since, chrono::Duration::hours(24));
        let w = Window::parse(Some("90m"), None, now()).unwrap();
        assert_eq!(w.until - w.since, chrono::Duration::minutes(90));
        assert!(Window::parse(Some("yesterday"), None, now()).is_err());
        assert!(Window::parse(Some("2026-12-04T00:00:00Z"), None, now()).is_err());
        assert!(Window::parse(None, Some("noon"), now()).is_err());
        assert!(Window::parse(Some("31d"), None, now()).is_ok());
        let too_wide = Window::parse(Some("32d"), None, now()).unwrap_err();
        assert!(too_wide.contains("too large"), "{too_wide}");
    }
}
