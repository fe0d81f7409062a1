//! Choosing dead letters: `dlq list` and `dlq replay` with a `LetterFilter`.
//! Letters are put straight into a test topology's dead-letter queue with
//! the failure headers the worker writes, so each test knows exactly what
//! the queue holds; one test lets a running worker dead-letter its own.

use crate::helpers::{wait_for_dead_letters, TestPipeline};
use chrono::{DateTime, SecondsFormat, Utc};
use lapin::types::{AMQPValue, LongString};
use lapin::BasicProperties;
use testkit::{message_sid, status_params, TestBroker};
use worker::test_support::dlq::{self, DeadLetterSummary, LetterFilter};

/// What a worker records on a callback it gave up on (`failure/attempts.rs`).
pub(crate) struct Failure {
    reason: &'static str,
    first_failure_at: DateTime<Utc>,
}

pub(crate) fn hour(n: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::hours(n)
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

/// Puts a letter at the tail of the dead-letter queue, confirmed: message
/// `sid`'s callback with `status` (or an undecodable body without a SID),
/// carrying `failure`'s headers (or none, as a letter the broker itself
/// dead-lettered).
pub(crate) async fn put_letter(
    broker: &TestBroker,
    sid: Option<&str>,
    status: &str,
    failure: Option<Failure>,
) {
    let (mut properties, body) = match sid {
        Some(sid) => {
            let envelope = testkit::callback_envelope(&status_params(sid, status, None), hour(0));
            (envelope.to_properties(), envelope.body)
        }
        None => (BasicProperties::default(), b"\xff not a callback".to_vec()),
    };
    if let Some(failure) = failure {
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert("x-attempts".into(), AMQPValue::LongLongInt(3));
        headers.insert(
            "x-first-failure-at".into(),
            text(
                &failure
                    .first_failure_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
        );
        headers.insert("x-failure-reason".into(), text(failure.reason));
        properties = properties.with_headers(headers);
    }
    queue_wire::broker::publish_confirmed(
        &broker.publisher,
        "",
        &broker.topology.dead_letter_queue(),
        &body,
        properties,
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
}

pub(crate) fn failed(reason: &'static str, first_failure_at: DateTime<Utc>) -> Option<Failure> {
    Some(Failure {
        reason,
        first_failure_at,
    })
}

async fn list(broker: &TestBroker, filter: &LetterFilter) -> Vec<DeadLetterSummary> {
    dlq::list(&testkit::amqp_url(), &broker.topology, filter)
        .await
        .unwrap()
}

async fn replay(broker: &TestBroker, filter: &LetterFilter, limit: Option<usize>) -> usize {
    dlq::replay(&testkit::amqp_url(), &broker.topology, filter, limit)
        .await
        .unwrap()
}

async fn dead_letter_count(broker: &TestBroker) -> u32 {
    broker
        .ready_count(&broker.topology.dead_letter_queue())
        .await
}

fn ids(letters: &[DeadLetterSummary]) -> Vec<&str> {
    letters.iter().map(|l| l.letter_id.as_str()).collect()
}

/// What replays put in the main queue, in order, by MessageSid (`None` for
/// a body without one), each checked to carry no failure history.
async fn replayed(broker: &TestBroker) -> Vec<Option<String>> {
    broker
        .take_all(&broker.topology.main_queue())
        .await
        .into_iter()
        .map(|(properties, body)| {
            let headers = properties.headers().clone().unwrap_or_default();
            for name in ["x-attempts", "x-first-failure-at", "x-failure-reason"] {
                assert!(!headers.inner().contains_key(name), "{name}: {headers:?}");
            }
            twilio_protocol::form::FormParams::parse(&body)
                .ok()
                .and_then(|params| params.get("MessageSid").map(str::to_owned))
        })
        .collect()
}

fn sids(numbers: &[u64]) -> Vec<Option<String>> {
    numbers.iter().map(|&n| Some(message_sid(n))).collect()
}

/// Five letters, first failed an hour apart, and one the broker
/// dead-lettered (no failure headers); message 1 has two.
async fn five_letters_and_one_without_history(broker: &TestBroker) -> Vec<DeadLetterSummary> {
    let letters = [
        (0, "sent", failed("undecodable: not a form body", hour(0))),
        (
            1,
            "sent",
            failed("retries exhausted: Database Timeout", hour(1)),
        ),
        (2, "sent", failed("callback has no MessageStatus", hour(2))),
        (
            1,
            "delivered",
            failed("retries exhausted: deadlock", hour(3)),
        ),
        (3, "sent", failed("retries exhausted: deadlock", hour(4))),
    ];
    for (n, status, failure) in letters {
        put_letter(broker, Some(&message_sid(n)), status, failure).await;
    }
    put_letter(broker, None, "", None).await;
    let all = list(broker, &LetterFilter::default()).await;
    assert_eq!(all.len(), 6);
    all
}

#[tokio::test]
async fn listing_with_a_filter_returns_exactly_the_matching_letters_and_keeps_the_queue() {
    let broker = TestBroker::new().await;
    let all = five_letters_and_one_without_history(&broker).await;
    let listed: Vec<_> = all.iter().map(|l| l.message_sid.clone()).collect();
    let mut expected_sids = sids(&[0, 1, 2, 1, 3]);
    expected_sids.push(None);
    assert_eq!(listed, expected_sids);
    assert_eq!(all[5].reason, "unknown");
    let id = |n: usize| all[n].letter_id.as_str();
    assert_eq!(
        ids(&all)
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        6,
        "every letter has its own id"
    );

    let cases = [
        (
            LetterFilter {
                reason: Some("DATABASE timeout".into()),
                ..LetterFilter::default()
            },
            vec![id(1)],
        ),
        (
            LetterFilter {
                reason: Some("retries exhausted".into()),
                ..LetterFilter::default()
            },
            vec![id(1), id(3), id(4)],
        ),
        (
            LetterFilter {
                since: Some(hour(2)),
                ..LetterFilter::default()
            },
            vec![id(2), id(3), id(4)],
        ),
        (
            LetterFilter {
                until: Some(hour(2)),
                ..LetterFilter::default()
            },
            vec![id(0), id(1)],
        ),
        (
            LetterFilter {
                since: Some(hour(1)),
                until: Some(hour(3)),
                ..LetterFilter::default()
            },
            vec![id(1), id(2)],
        ),
        (
            LetterFilter {
                message_sid: Some(message_sid(1)),
                ..LetterFilter::default()
            },
            vec![id(1), id(3)],
        ),
        (
            LetterFilter {
                letter_id: Some(id(3).to_owned()),
                ..LetterFilter::default()
            },
            vec![id(3)],
        ),
        (
            LetterFilter {
                message_sid: Some(message_sid(1)),
                reason: Some("deadlock".into()),
                ..LetterFilter::default()
            },
            vec![id(3)],
        ),
        (
            LetterFilter {
                message_sid: Some(message_sid(9)),
                ..LetterFilter::default()
            },
            vec![],
        ),
    ];
    for (filter, expected) in cases {
        let matching = list(&broker, &filter).await;
        assert_eq!(ids(&matching), expected, "{filter:?}");
        assert!(matching.iter().all(|l| filter.matches(l)));
        assert_eq!(dead_letter_count(&broker).await, 6, "{filter:?}");
    }
    // Same letters, same order, same ids, after all those passes.
    assert_eq!(list(&broker, &LetterFilter::default()).await, all);
}

#[tokio::test]
async fn replaying_one_sid_sends_back_only_its_letters_and_the_rest_stay_in_order() {
    let broker = TestBroker::new().await;
    let all = five_letters_and_one_without_history(&broker).await;
    let by_sid = LetterFilter {
        message_sid: Some(message_sid(2)),
        ..LetterFilter::default()
    };
    assert_eq!(replay(&broker, &by_sid, None).await, 1);
    assert_eq!(replayed(&broker).await, sids(&[2]));
    let left = list(&broker, &LetterFilter::default()).await;
    let expected: Vec<_> = [0, 1, 3, 4, 5].map(|n| all[n].clone()).into();
    assert_eq!(left, expected);
    assert_eq!(replay(&broker, &by_sid, None).await, 0);
}

#[tokio::test]
async fn replaying_a_letter_id_replays_it_once_and_its_id_survives_the_replay() {
    let broker = TestBroker::new().await;
    let all = five_letters_and_one_without_history(&broker).await;
    let by_id = LetterFilter {
        letter_id: Some(all[3].letter_id.clone()),
        ..LetterFilter::default()
    };
    assert_eq!(replay(&broker, &by_id, None).await, 1);
    assert_eq!(
        replay(&broker, &by_id, None).await,
        0,
        "nothing left to replay"
    );
    let expected: Vec<_> = [0, 1, 2, 4, 5].map(|n| all[n].clone()).into();
    assert_eq!(list(&broker, &LetterFilter::default()).await, expected);

    // The replayed callback fails again and is dead-lettered anew: the same letter.
    let mut taken = broker.take_all(&broker.topology.main_queue()).await;
    assert_eq!(taken.len(), 1);
    let (properties, body) = taken.remove(0);
    queue_wire::broker::publish_confirmed(
        &broker.publisher,
        "",
        &broker.topology.dead_letter_queue(),
        &body,
        properties,
        std::time::Duration::from_secs(30),
    )
    .await
    .unwrap();
    let again = list(&broker, &by_id).await;
    assert_eq!(ids(&again), [all[3].letter_id.as_str()]);
    assert_eq!(again[0].message_sid, all[3].message_sid);
    assert_eq!(again[0].first_failure_at, None, "its history was cleared");
}

#[tokio::test]
async fn replaying_a_time_range_sends_back_the_letters_that_first_failed_in_it() {
    let broker = TestBroker::new().await;
    let all = five_letters_and_one_without_history(&broker).await;
    let range = LetterFilter {
        since: Some(hour(1)),
        until: Some(hour(3)),
        ..LetterFilter::default()
    };
    assert_eq!(replay(&broker, &range, None).await, 2);
    assert_eq!(replayed(&broker).await, sids(&[1, 2]));
    let expected: Vec<_> = [0, 3, 4, 5].map(|n| all[n].clone()).into();
    assert_eq!(list(&broker, &LetterFilter::default()).await, expected);
}

#[tokio::test]
async fn a_limit_replays_the_first_matching_letters_and_the_rest_stay_in_order() {
    let broker = TestBroker::new().await;
    let all = five_letters_and_one_without_history(&broker).await;
    let exhausted = LetterFilter {
        reason: Some("retries exhausted".into()),
        ..LetterFilter::default()
    };
    assert_eq!(replay(&broker, &exhausted, Some(2)).await, 2);
    assert_eq!(replayed(&broker).await, sids(&[1, 1]));
    let expected: Vec<_> = [0, 2, 4, 5].map(|n| all[n].clone()).into();
    assert_eq!(list(&broker, &LetterFilter::default()).await, expected);
    assert_eq!(replay(&broker, &exhausted, Some(0)).await, 0);
    assert_eq!(dead_letter_count(&broker).await, 4);
}

#[tokio::test]
async fn replaying_with_the_empty_filter_replays_every_letter() {
    let broker = TestBroker::new().await;
    let all = five_letters_and_one_without_history(&broker).await;
    // A limit takes the first ones and leaves the others where they are.
    assert_eq!(replay(&broker, &LetterFilter::default(), Some(2)).await, 2);
    let expected: Vec<_> = all[2..].to_vec();
    assert_eq!(list(&broker, &LetterFilter::default()).await, expected);
    assert_eq!(replay(&broker, &LetterFilter::default(), None).await, 4);
    assert_eq!(dead_letter_count(&broker).await, 0);
    let mut expected_sids = sids(&[0, 1, 2, 1, 3]);
    expected_sids.push(None);
    assert_eq!(replayed(&broker).await, expected_sids);
}

#[tokio::test]
async fn a_worker_dead_letters_a_replayed_poison_message_again_under_the_same_letter_id() {
    let pipeline = TestPipeline::start().await;
    let broker = &pipeline.broker;
    // Dead-lettered at once: a callback without MessageStatus.
    let poison = twilio_protocol::form::FormParams::from_pairs(
        status_params(&message_sid(7), "sent", None)
            .iter()
            .filter(|(k, _)| *k != "MessageStatus")
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    broker.publish_callback(&poison, hour(0)).await;
    wait_for_dead_letters(broker, 1).await;
    let before = list(broker, &LetterFilter::default()).await;
    assert!(before[0].reason.contains("MessageStatus"), "{before:?}");

    let by_id = LetterFilter {
        letter_id: Some(before[0].letter_id.clone()),
        ..LetterFilter::default()
    };
    assert_eq!(replay(broker, &by_id, None).await, 1);
    // Taken again by the worker, which dead-letters it again.
    let after = testkit::wait_for(
        "the replayed letter to be dead-lettered again",
        std::time::Duration::from_secs(30),
        || async {
            let mut after = list(broker, &by_id).await;
            (after.len() == 1).then(|| after.remove(0))
        },
    )
    .await;
    assert_eq!(after.message_sid, before[0].message_sid);
    assert_eq!(after.attempts, 1, "its history was cleared by the replay");
    assert!(after.first_failure_at >= before[0].first_failure_at);
}
