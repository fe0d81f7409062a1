//! `GET /messages`: filters, keyset paging while messages keep arriving,
//! and malformed filters.

use std::collections::HashSet;

use crate::helpers::{at, wait_for_event_rows, TestPipeline};
use testkit::message_sid;
use twilio_protocol::form::FormParams;

const ACCOUNT: &str = "AC00000000000000000000000000000000";
const OTHER_ACCOUNT: &str = "AC11111111111111111111111111111111";
const SENDER: &str = "+15017122661";

struct Sent {
    sid: String,
    status: &'static str,
    error_code: Option<i32>,
    to: String,
    account: &'static str,
    second: i64,
}

fn params(sent: &Sent) -> FormParams {
    let mut pairs = vec![
        ("AccountSid", sent.account.to_owned()),
        ("ApiVersion", "2010-04-01".to_owned()),
        ("From", SENDER.to_owned()),
        ("MessageSid", sent.sid.clone()),
        ("MessageStatus", sent.status.to_owned()),
        ("To", sent.to.clone()),
    ];
    if let Some(code) = sent.error_code {
        pairs.push(("ErrorCode", code.to_string()));
    }
    FormParams::from_pairs(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)))
}

/// Message `n`: to one of three recipients, failing now and then, some
/// under another account; every third pair shares its first second, so
/// ties are ordered by SID.
fn message(n: u64) -> Sent {
    let (status, error_code) = match n % 5 {
        0 => ("undelivered", Some(30003)),
        1 => ("failed", Some(30007)),
        _ => ("delivered", None),
    };
    Sent {
        sid: message_sid(n),
        status,
        error_code,
        to: format!("+1555000000{}", n % 3),
        account: if n.is_multiple_of(4) {
            OTHER_ACCOUNT
        } else {
            ACCOUNT
        },
        second: (n as i64 / 2) * 10,
    }
}

async fn store(pipeline: &TestPipeline, messages: &[Sent]) {
    let before = crate::helpers::event_rows(&pipeline.db).await;
    let batch: Vec<_> = messages.iter().map(|m| (params(m), at(m.second))).collect();
    pipeline.broker.publish_batch(&batch).await;
    wait_for_event_rows(&pipeline.db, before + messages.len() as u64).await;
}

async fn get(pipeline: &TestPipeline, query: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(format!("{}/messages?{query}", pipeline.worker.address))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn sids(page: &serde_json::Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_sid"].as_str().unwrap().to_owned())
        .collect()
}

/// The SIDs of `messages` matching `keep`, in the listing's order.
fn expected(messages: &[Sent], keep: impl Fn(&Sent) -> bool) -> Vec<String> {
    let mut kept: Vec<&Sent> = messages.iter().filter(|m| keep(m)).collect();
    kept.sort_by(|a, b| (b.second, &b.sid).cmp(&(a.second, &a.sid)));
    kept.into_iter().map(|m| m.sid.clone()).collect()
}

/// Which sent messages a query should find.
type Keep = Box<dyn Fn(&Sent) -> bool>;

#[tokio::test]
async fn each_filter_and_their_combinations_find_exactly_the_matching_messages() {
    let pipeline = TestPipeline::start().await;
    let messages: Vec<Sent> = (1..=40).map(message).collect();
    store(&pipeline, &messages).await;

    let cases: Vec<(String, Keep)> = vec![
        ("".into(), Box::new(|_| true)),
        (
            "to=%2B15550000001".into(),
            Box::new(|m| m.to == "+15550000001"),
        ),
        // Typed the way people write a number.
        (
            "to=%2B1%20555%20000-0001".into(),
            Box::new(|m| m.to == "+15550000001"),
        ),
        (format!("from={}", "%2B15017122661"), Box::new(|_| true)),
        ("from=%2B15550000000".into(), Box::new(|_| false)),
        ("status=failed".into(), Box::new(|m| m.status == "failed")),
        (
            "error_code=30003".into(),
            Box::new(|m| m.error_code == Some(30003)),
        ),
        (
            format!("account_sid={OTHER_ACCOUNT}&status=undelivered"),
            Box::new(|m| m.account == OTHER_ACCOUNT && m.status == "undelivered"),
        ),
        (
            format!(
                "to=%2B15550000002&status=delivered&since={}&until={}",
                at(50).to_rfc3339().replace('+', "%2B"),
                at(150).to_rfc3339().replace('+', "%2B")
            ),
            Box::new(|m| {
                m.to == "+15550000002" && m.status == "delivered" && (50..150).contains(&m.second)
            }),
        ),
    ];
    for (query, keep) in cases {
        let want = expected(&messages, keep);
        let (status, page) = get(&pipeline, &format!("{query}&limit=500")).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(sids(&page), want, "{query}");
        assert_eq!(page["next_cursor"], serde_json::Value::Null, "{query}");
    }

    let (_, page) = get(&pipeline, "to=%2B15550000001&limit=1").await;
    let listed = &page["messages"][0];
    let newest = expected(&messages, |m| m.to == "+15550000001")[0].clone();
    let sent = messages.iter().find(|m| m.sid == newest).unwrap();
    assert_eq!(listed["message_sid"], newest.as_str());
    assert_eq!(listed["status"], sent.status);
    assert_eq!(listed["to"], "+15550000001");
    assert_eq!(listed["from"], SENDER);
    assert_eq!(listed["account_sid"], sent.account);
    assert_eq!(
        listed["first_seen_at"].as_str().unwrap(),
        at(sent.second).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    assert!(page["next_cursor"].is_string());
}

#[tokio::test]
async fn paging_never_repeats_or_skips_while_messages_arrive() {
    let pipeline = TestPipeline::start().await;
    let messages: Vec<Sent> = (1..=45).map(message).collect();
    store(&pipeline, &messages).await;
    let want = expected(&messages, |m| m.to == "+15550000001");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut arriving = 1000;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("to=%2B15550000001&limit=4&cursor={cursor}"),
            None => "to=%2B15550000001&limit=4".to_owned(),
        };
        let (status, page) = get(&pipeline, &query).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(sids(&page));
        // Between pages, new messages for the same recipient: newer than
        // any listed, one in the same second as the newest, and one older
        // than every message (a late first callback).
        let mut newer = message(arriving);
        newer.to = "+15550000001".into();
        newer.second = 10_000 + arriving as i64;
        let mut tied = message(arriving + 1);
        tied.to = "+15550000001".into();
        tied.second = messages.iter().map(|m| m.second).max().unwrap();
        let mut older = message(arriving + 2);
        older.to = "+15550000002".into();
        older.second = -1000;
        store(&pipeline, &[newer, tied, older]).await;
        arriving += 3;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a message was listed twice: {seen:?}"
    );
    let first_listing: Vec<&String> = seen.iter().filter(|sid| want.contains(sid)).collect();
    assert_eq!(
        first_listing,
        want.iter().collect::<Vec<_>>(),
        "every message there when paging began, once, in order"
    );
}

#[tokio::test]
async fn a_malformed_filter_is_400_naming_it_and_changes_nothing() {
    let pipeline = TestPipeline::start().await;
    store(&pipeline, &[message(2)]).await;
    for (query, named) in [
        ("status=nonsense", "status"),
        ("error_code=thirty", "error_code"),
        ("account_sid=ACnothex", "account_sid"),
        ("since=last%20week", "since"),
        ("until=tomorrow", "until"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        ("to=%00", "to"),
        ("colour=red", "colour"),
        ("to=a&to=b", "to"),
    ] {
        let (status, body) = get(&pipeline, query).await;
        assert_eq!(status, 400, "{query}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(named), "{query}: {error}");
    }
    let (status, page) = get(&pipeline, "").await;
    assert_eq!(status, 200);
    assert_eq!(sids(&page), vec![message_sid(2)]);
}
