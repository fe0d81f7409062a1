//! The failure path itself: the dead-letter queue survives being looked at,
//! and queues declared by an earlier version do not stop this one.

use crate::helpers::{at, wait_for_event_rows, RunningWorker};
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ConnectionProperties};
use queue_wire::topology::Topology;
use testkit::{message_sid, status_params, unique_name, TestBroker, TestDatabase};
use worker::test_support::dlq;

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

#[tokio::test]
async fn listing_the_dead_letter_queue_never_redelivers_or_drops_a_letter() {
    let broker = TestBroker::new().await;
    let queue = broker.topology.dead_letter_queue();
    for n in 0..3u64 {
        let envelope =
            testkit::callback_envelope(&status_params(&message_sid(n), "sent", None), at(0));
        let confirm = broker
            .publisher
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                &envelope.body,
                envelope.to_properties(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(confirm, lapin::Confirmation::Ack(None));
    }
    // More listings than RabbitMQ 4.x's default delivery limit (20).
    for _ in 0..25 {
        let letters = dlq::list(
            &testkit::amqp_url(),
            &broker.topology,
            &dlq::LetterFilter::default(),
        )
        .await
        .unwrap();
        let sids: Vec<_> = letters.iter().map(|l| l.message_sid.clone()).collect();
        let expected: Vec<_> = (0..3u64).map(|n| Some(message_sid(n))).collect();
        assert_eq!(sids, expected, "same letters, same order");
    }
    for n in 0..3u64 {
        let message = broker
            .channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
            .expect("the letter is still there");
        let delivery = message.delivery;
        assert!(!delivery.redelivered, "letter {n} was never redelivered");
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        // The broker's count of earlier returns of this message (absent or 0).
        let returned = match headers.inner().get("x-delivery-count") {
            None => 0,
            Some(AMQPValue::LongLongInt(n)) => *n,
            Some(other) => panic!("unexpected x-delivery-count {other:?}"),
        };
        assert_eq!(returned, 0, "letter {n}: {headers:?}");
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
}

/// Declares the queues as the previous release did: classic retry queues,
/// a main queue without at-least-once dead-lettering.
async fn declare_previous_release(connection: &Connection, topology: &Topology) {
    let channel = connection.create_channel().await.unwrap();
    channel
        .exchange_declare(
            topology.exchange().into(),
            lapin::ExchangeKind::Direct,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut dead = FieldTable::default();
    dead.insert("x-queue-type".into(), text("quorum"));
    channel
        .queue_declare(
            topology.dead_letter_queue().into(),
            QueueDeclareOptions::durable(),
            dead,
        )
        .await
        .unwrap();
    let mut main = FieldTable::default();
    main.insert("x-queue-type".into(), text("quorum"));
    main.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(50));
    main.insert("x-dead-letter-exchange".into(), text(""));
    main.insert(
        "x-dead-letter-routing-key".into(),
        text(&topology.dead_letter_queue()),
    );
    channel
        .queue_declare(
            topology.main_queue().into(),
            QueueDeclareOptions::durable(),
            main,
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            topology.main_queue().into(),
            topology.exchange().into(),
            topology.routing_key().into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for delay in topology.retry_delays() {
        let mut retry = FieldTable::default();
        retry.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        retry.insert("x-dead-letter-exchange".into(), text(&topology.exchange()));
        retry.insert(
            "x-dead-letter-routing-key".into(),
            text(topology.routing_key()),
        );
        channel
            .queue_declare(
                topology.retry_queue(*delay).into(),
                QueueDeclareOptions::durable(),
                retry,
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn queues_of_the_previous_release_do_not_stop_this_one() {
    let topology = Topology::new(unique_name("test").replace('_', "."))
        .with_retry_delays(testkit::test_retry_delays());
    let connection = Connection::connect(&testkit::amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    declare_previous_release(&connection, &topology).await;
    // Declaring today's topology over it succeeds, and uses the queues as they are.
    topology.declare(&connection).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let publisher = connection.create_channel().await.unwrap();
    publisher.confirm_select(Default::default()).await.unwrap();
    let broker = TestBroker {
        topology,
        connection,
        channel,
        publisher,
        url: testkit::amqp_url(),
    };
    let database = TestDatabase::new().await;
    let worker = RunningWorker::start(&broker, &database.url).await;
    worker.wait_ready().await;
    broker
        .publish_callback(&status_params(&message_sid(1), "delivered", None), at(1))
        .await;
    let db = database.connect().await;
    wait_for_event_rows(&db, 1).await;
    worker.stop().await;
}
