//! Delivery outcomes as the store sees them happen: a message reaching its
//! first final status (with the time since it was first seen), and a
//! message whose outcomes start to conflict. `STORE_BATCH` reports both per
//! batch; here they become metrics.
//!
//! A message counts once, for its first final status: a read receipt after
//! `delivered`, or an `undelivered` contradicting it, does not count it
//! again (the contradiction is `worker_conflicting_outcomes_total`). So the
//! final outcomes of an account are its messages, and a share of them
//! (undelivered or failed with one code, say) is a share of messages.

use sea_orm::sqlx::postgres::PgRow;
use sea_orm::sqlx::{self, Postgres, Row};
use sea_orm::DbErr;
use twilio_protocol::callback::is_account_sid;
use twilio_protocol::status::{MessageStatus, UnknownStatus};

use super::outage::from_sqlx;
use crate::metrics::{CONFLICTING_OUTCOMES, FINAL_OUTCOMES, FOREIGN_ACCOUNT_EVENTS, TIME_TO_FINAL};

/// One message that reached a final status in a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalOutcome {
    /// A final status (`MessageStatus::is_final`).
    pub status: MessageStatus,
    pub error_code: Option<i32>,
    /// The account the message belongs to (`messages.account_sid`), if known.
    pub account_sid: Option<String>,
    /// From the message's first event to its first final one.
    pub seconds: f64,
}

/// What one batch did to the delivery report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutcomeReport {
    pub finals: Vec<FinalOutcome>,
    pub newly_conflicting: u64,
    /// Events stored that another account than the message's owner signed
    /// (kept, but they changed nothing).
    pub foreign_account_events: u64,
}

impl OutcomeReport {
    /// Reads `STORE_BATCH`'s row (`projection::OUTCOME_REPORT`).
    pub fn from_row(row: &PgRow) -> Result<Self, DbErr> {
        let statuses: Option<Vec<String>> = column(row, "final_statuses")?;
        let error_codes: Option<Vec<Option<i32>>> = column(row, "final_error_codes")?;
        let seconds: Option<Vec<f64>> = column(row, "final_seconds")?;
        let account_sids: Option<Vec<Option<String>>> = column(row, "final_account_sids")?;
        let finals = statuses
            .unwrap_or_default()
            .iter()
            .zip(error_codes.unwrap_or_default())
            .zip(seconds.unwrap_or_default())
            .zip(account_sids.unwrap_or_default())
            .map(|(((status, error_code), seconds), account_sid)| {
                Ok(FinalOutcome {
                    status: status
                        .parse()
                        .map_err(|e: UnknownStatus| DbErr::Type(e.to_string()))?,
                    error_code,
                    account_sid,
                    seconds,
                })
            })
            .collect::<Result<_, DbErr>>()?;
        let newly_conflicting: i64 = column(row, "newly_conflicting")?;
        let foreign_account_events: i64 = column(row, "foreign_events")?;
        Ok(Self {
            finals,
            newly_conflicting: u64::try_from(newly_conflicting).unwrap_or(0),
            foreign_account_events: u64::try_from(foreign_account_events).unwrap_or(0),
        })
    }

    pub fn record_metrics(&self) {
        for outcome in &self.finals {
            let error_code = error_code_label(outcome.error_code);
            metrics::counter!(
                FINAL_OUTCOMES.name,
                "account_sid" => account_label(outcome.account_sid.as_deref()),
                "status" => outcome.status.as_str(),
                "error_code" => error_code
            )
            .increment(1);
            metrics::histogram!(TIME_TO_FINAL.name, "outcome" => outcome.status.as_str())
                .record(outcome.seconds.max(0.0));
        }
        if self.newly_conflicting > 0 {
            metrics::counter!(CONFLICTING_OUTCOMES.name).increment(self.newly_conflicting);
        }
        if self.foreign_account_events > 0 {
            metrics::counter!(FOREIGN_ACCOUNT_EVENTS.name).increment(self.foreign_account_events);
            tracing::warn!(
                events = self.foreign_account_events,
                "callbacks signed by another account than their message's owner: kept in the history, the messages unchanged"
            );
        }
    }
}

fn column<'r, T>(row: &'r PgRow, name: &str) -> Result<T, DbErr>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name).map_err(from_sqlx)
}

/// The `account_sid` label: the SID when it has the shape of one (`AC` and
/// 32 hex digits), `other` otherwise, empty for none. The accounts are the
/// few that sign callbacks (ingest's tokens) or that we send from; the
/// shape keeps a malformed `AccountSid` from minting series.
fn account_label(account_sid: Option<&str>) -> String {
    match account_sid {
        None => String::new(),
        Some(sid) if is_account_sid(sid) => sid.to_owned(),
        Some(_) => "other".to_owned(),
    }
}

/// The `error_code` label: the code when Twilio's table knows it, `other`
/// otherwise, empty for none. A label takes a bounded set of values
/// whatever codes arrive.
fn error_code_label(code: Option<i32>) -> String {
    match code {
        None => String::new(),
        Some(code) if twilio_protocol::error_codes::is_known(code) => code.to_string(),
        Some(_) => "other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_take_a_bounded_set_of_values() {
        let sid = "AC0123456789abcdef0123456789ABCDEF";
        assert_eq!(account_label(Some(sid)), sid);
        assert_eq!(account_label(None), "");
        for junk in [
            "AC123",
            "SM0123456789abcdef0123456789abcdef",
            "AC0123456789abcdef0123456789abcdeg",
        ] {
            assert_eq!(account_label(Some(junk)), "other", "{junk}");
        }
        assert_eq!(error_code_label(Some(30007)), "30007");
        assert_eq!(error_code_label(Some(99_999)), "other");
        assert_eq!(error_code_label(None), "");
    }
}
