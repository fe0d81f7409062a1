//! One trace per callback, across the broker: the worker's spans are
//! children of ingest's publish span, which continues the caller's trace.
//! Its own test binary, because it installs the process-wide subscriber.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "pipeline/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::{start_ingest, wait_for_event_rows, TestPipeline};
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::time::Duration;
use testkit::{message_sid, sign, status_params, wait_for};

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// One story from request to stored row, asserted span by span: long, and
/// clearer read whole than split.
#[tokio::test]
async fn the_worker_spans_belong_to_the_trace_ingest_continued() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let _telemetry = service_kit::telemetry::init_for_tests(provider);

    let pipeline = TestPipeline::start().await;
    let mut changes = testkit::ChangeListener::bind(
        &pipeline.broker.connection,
        &pipeline.broker.topology,
        &["#"],
    )
    .await;
    let address = start_ingest(&pipeline.broker).await;
    let client = reqwest::Client::new();

    // The caller (a proxy in front of us, say) already has a trace going.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{caller_trace}-00f067aa0ba902b7-01");
    let sid = message_sid(77);
    let params = status_params(&sid, "delivered", None);
    let url = format!("{address}/twilio/status");
    let response = client
        .post(&url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", sign(&url, &params))
        .header("traceparent", traceparent)
        .body(params.encode())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    wait_for_event_rows(&pipeline.db, 1).await;

    // The change it made, published by the relay, carries the trace on.
    let expected = [(sid.clone(), "delivered".to_owned())]
        .into_iter()
        .collect();
    changes
        .wait_for_last_statuses(&expected, Duration::from_secs(30))
        .await;
    let change_traceparent = changes.received[0].traceparent.clone().unwrap();

    let spans = wait_for(
        "the worker's spans to be exported",
        Duration::from_secs(30),
        || {
            let spans = exporter.get_finished_spans().unwrap();
            let done = ["twilio.status process", "twilio.status.changes publish"]
                .iter()
                .all(|name| {
                    spans.iter().any(|s| {
                        s.name == *name
                            && attribute(s, "twilio.message_sid").as_deref() == Some(sid.as_str())
                    })
                });
            async move { done.then_some(spans) }
        },
    )
    .await;
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == name
                    && attribute(s, "twilio.message_sid").as_deref() == Some(sid.as_str())
            })
            .unwrap_or_else(|| panic!("no {name} span for {sid}"))
    };
    let request = find("POST /twilio/status");
    let publish = find("twilio.status publish");
    let process = find("twilio.status process");
    let persist = spans
        .iter()
        .find(|s| {
            s.name == "twilio.status persist" && s.parent_span_id == process.span_context.span_id()
        })
        .expect("a persist span under the process span");
    let change = find("twilio.status.changes publish");

    let trace = TraceId::from_hex(caller_trace).unwrap();
    for span in [request, publish, process, persist, change] {
        assert_eq!(
            span.span_context.trace_id(),
            trace,
            "{} is in another trace",
            span.name
        );
    }
    assert_eq!(publish.parent_span_id, request.span_context.span_id());
    assert_eq!(process.parent_span_id, publish.span_context.span_id());
    // The change continues the trace from the publish that carried its callback.
    assert_eq!(change.parent_span_id, publish.span_context.span_id());
    assert_eq!(change.span_kind, SpanKind::Producer);
    assert!(
        change_traceparent.contains(&change.span_context.span_id().to_string()),
        "the change's traceparent {change_traceparent} names its publish span"
    );
    assert!(change_traceparent.contains(caller_trace));
    assert_eq!(request.span_kind, SpanKind::Server);
    assert_eq!(publish.span_kind, SpanKind::Producer);
    assert_eq!(process.span_kind, SpanKind::Consumer);
    assert_eq!(
        attribute(process, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attribute(process, "twilio.message_status").as_deref(),
        Some("delivered")
    );
    assert_eq!(
        attribute(publish, "messaging.destination.name").as_deref(),
        Some(pipeline.broker.topology.exchange().as_str())
    );

    // What the closing note shows: one trace's spans.
    let mut trace_spans: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    trace_spans.sort_by_key(|s| s.start_time);
    for span in trace_spans {
        println!(
            "{} span={} parent={} kind={:?} {:?}",
            span.name,
            span.span_context.span_id(),
            span.parent_span_id,
            span.span_kind,
            span.end_time
                .duration_since(span.start_time)
                .unwrap_or_default()
        );
    }
}
