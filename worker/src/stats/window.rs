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
            Some(raw) => instant("until", raw)?,
        };
        let since = instant_or_ago("since", since.unwrap_or("24h"), until)?;
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

/// A time given as RFC 3339, or as a duration back from `now` (`24h`,
/// `90m`, `7d`); the error names the parameter.
pub fn instant_or_ago(name: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    let back = humantime::parse_duration(raw).map_err(|_| {
        format!("{name}={raw:?} is neither an RFC 3339 time nor a duration like 24h")
    })?;
    chrono::Duration::from_std(back)
        .ok()
        .and_then(|back| now.checked_sub_signed(back))
        .ok_or_else(|| format!("{name}={raw:?} is too long ago"))
}

/// A time given as RFC 3339; the error names the parameter.
pub fn instant(name: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| format!("{name}={raw:?} is not an RFC 3339 time"))
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
