//! A test pipeline with a fake Twilio API, and reconcilers on it.

use crate::helpers::{wait_for_event_rows, TestPipeline};
use chrono::{Duration as Age, Utc};
use clap::Parser;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde_json::json;
use twilio_protocol::form::FormParams;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker::config::{Command, ReconcileConfig, ReconcileRunConfig, WorkerCli};
use worker::test_support::entity::message_status_event;
use worker::test_support::feed::ChangeFeed;
use worker::test_support::reconcile::Reconciler;

pub const MAIN: &str = "AC000000000000000000000000000000aa";
pub const SUB: &str = "AC000000000000000000000000000000bb";

pub struct Rig {
    pub pipeline: TestPipeline,
    pub twilio: MockServer,
}

/// A pipeline whose worker runs no periodic reconciliation (the tests run it).
pub async fn rig() -> Rig {
    let pipeline = TestPipeline::start_tuned(&[], |config| config.reconcile.interval = None).await;
    Rig {
        pipeline,
        twilio: MockServer::start().await,
    }
}

impl Rig {
    pub fn db(&self) -> &DatabaseConnection {
        &self.pipeline.db
    }

    /// A reconciler on the fake API: main account `MAIN` (token `main-token`),
    /// subaccount `SUB` (token `sub-token`), and `extra` flags.
    pub fn reconciler(&self, extra: &[&str]) -> Reconciler {
        self.reconciler_tuned(extra, |_| {})
    }

    /// Same, with settings that have no flag changed by `tune`.
    pub fn reconciler_tuned(
        &self,
        extra: &[&str],
        tune: impl FnOnce(&mut ReconcileConfig),
    ) -> Reconciler {
        let uri = self.twilio.uri();
        let tokens = format!("{SUB}=sub-token|sub-old");
        let mut argv = vec![
            "worker",
            "reconcile",
            "--twilio-api-base-url",
            &uri,
            "--twilio-account-sid",
            MAIN,
            "--twilio-auth-token",
            "main-token",
            "--twilio-account-tokens",
            &tokens,
        ];
        argv.extend_from_slice(extra);
        let Some(Command::Reconcile(command)) = WorkerCli::parse_from(argv).command else {
            panic!("not the reconcile command");
        };
        let mut config = ReconcileRunConfig::new(command).unwrap();
        tune(&mut config.reconcile);
        let twilio =
            worker::test_support::twilio_api::TwilioClient::new(config.twilio_api, None).unwrap();
        Reconciler::new(
            self.pipeline.db.clone(),
            twilio,
            config.reconcile,
            ChangeFeed::On,
        )
    }

    /// Stores one callback of `sid` from `account`, received `age` ago.
    pub async fn callback(&self, sid: &str, status: &str, account: &str, age: Age) {
        let params = FormParams::from_pairs(
            [
                ("AccountSid", account),
                ("MessageSid", sid),
                ("MessageStatus", status),
                ("To", "+15558675310"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let before = crate::helpers::event_rows(self.db()).await;
        self.pipeline
            .broker
            .publish_callback(&params, Utc::now() - age)
            .await;
        wait_for_event_rows(self.db(), before + 1).await;
    }

    /// The fake API answers one lookup of `sid` with `status`, and expects
    /// exactly one.
    pub async fn answers_once(
        &self,
        sid: &str,
        account: &str,
        status: &str,
        error_code: Option<i32>,
    ) {
        Mock::given(method("GET"))
            .and(path(message_path(account, sid)))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(resource(account, sid, status, error_code)),
            )
            .expect(1)
            .mount(&self.twilio)
            .await;
    }

    pub async fn events(&self, sid: &str) -> Vec<message_status_event::Model> {
        message_status_event::Entity::find()
            .filter(message_status_event::Column::MessageSid.eq(sid))
            .order_by_asc(message_status_event::Column::PersistedAt)
            .all(self.db())
            .await
            .unwrap()
    }
}

pub fn message_path(account: &str, sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json")
}

/// When the fake API says its messages last changed: an hour ago, to the
/// second (RFC 2822, as Twilio writes dates).
pub fn updated_an_hour_ago() -> chrono::DateTime<Utc> {
    let at = Utc::now() - Age::hours(1);
    chrono::DateTime::from_timestamp(at.timestamp(), 0).unwrap()
}

pub fn resource(
    account: &str,
    sid: &str,
    status: &str,
    error_code: Option<i32>,
) -> serde_json::Value {
    json!({
        "sid": sid, "account_sid": account, "status": status, "error_code": error_code,
        "error_message": null, "from": "+15017122661", "to": "+15558675310",
        "date_updated": updated_an_hour_ago().to_rfc2822(), "num_segments": "1"
    })
}

pub const HOURS_13: Age = Age::hours(13);
