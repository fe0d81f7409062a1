//! Logs and traces, set up the same way by both binaries.
//!
//! Logs are JSON lines (or a readable format for people at a terminal)
//! carrying the fields of the spans they happen in, so a line written while
//! handling a callback has its `message_sid`, `trace_id` and `span_id`.
//! Traces use the W3C trace context, carried across RabbitMQ in message
//! headers, and are exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; the standard `OTEL_*`
//! variables (protocol, service name, sampler) apply.

use chrono::{SecondsFormat, Utc};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{fmt as subscriber_fmt, prelude::*, EnvFilter};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL {0:?} is not supported (use grpc or http/protobuf)")]
    Protocol(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Keeps the tracer provider; `shutdown` flushes buffered spans on exit.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry: flushing spans failed: {error}");
        }
    }
}

/// Where log lines go: a service logs to stdout; a one-shot command keeps
/// stdout for its output and logs to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    Stderr,
}

/// Sets up logs and traces for `service_name` (overridden by `OTEL_SERVICE_NAME`).
pub fn init(service_name: &str, format: LogFormat) -> Result<Telemetry, TelemetryError> {
    init_to(service_name, format, LogTarget::Stdout)
}

/// Same, with log lines going to `target`.
pub fn init_to(
    service_name: &str,
    format: LogFormat,
    target: LogTarget,
) -> Result<Telemetry, TelemetryError> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(service_name));
    if let Some(exporter) = otlp_exporter()? {
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(install(builder.build(), Some(format), target))
}

/// Same with a provider built by the caller (tests use an in-memory exporter).
/// Without an exporter, spans still get ids: logs and propagation work.
pub fn init_with_provider(provider: SdkTracerProvider, format: LogFormat) -> Telemetry {
    install(provider, Some(format), LogTarget::Stdout)
}

/// For tests: traces as `init_with_provider`, but log lines only when
/// `TEST_LOG` is set (then as JSON), so a passing run prints none.
pub fn init_for_tests(provider: SdkTracerProvider) -> Telemetry {
    let wanted = std::env::var_os("TEST_LOG").is_some();
    install(
        provider,
        wanted.then_some(LogFormat::Json),
        LogTarget::Stdout,
    )
}

fn install(provider: SdkTracerProvider, format: Option<LogFormat>, target: LogTarget) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("twilio-status");
    opentelemetry::global::set_tracer_provider(provider.clone());
    let filter = log_filter();
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let writer = match target {
        LogTarget::Stdout => BoxMakeWriter::new(std::io::stdout),
        LogTarget::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let result = match format {
        Some(LogFormat::Json) => registry
            .with(
                subscriber_fmt::layer()
                    .json()
                    .event_format(JsonLines)
                    .with_writer(writer),
            )
            .try_init(),
        Some(LogFormat::Pretty) => registry
            .with(subscriber_fmt::layer().pretty().with_writer(writer))
            .try_init(),
        None => registry.try_init(),
    };
    // Already installed (several apps in one test process): keep the first.
    drop(result);
    Telemetry { provider }
}

fn resource(service_name: &str) -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| service_name.to_owned());
    Resource::builder().with_service_name(name).build()
}

fn otlp_exporter() -> Result<Option<opentelemetry_otlp::SpanExporter>, TelemetryError> {
    let configured = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()));
    if !configured {
        return Ok(None);
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "grpc".to_owned());
    use opentelemetry_otlp::WithExportConfig;
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?,
        "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?,
        other => return Err(TelemetryError::Protocol(other.to_owned())),
    };
    Ok(Some(exporter))
}

/// Records the span's W3C ids as its `trace_id` and `span_id` fields, so log
/// lines inside it carry them. The span must declare both fields (as
/// `tracing::field::Empty`) and have its parent set before this is called.
pub fn record_trace_ids(span: &tracing::Span) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string());
        span.record("span_id", span_context.span_id().to_string());
    }
}

/// The W3C headers (`traceparent`, `tracestate`) for the given span.
pub fn trace_headers(span: &tracing::Span) -> Vec<(String, String)> {
    let mut headers = HeaderPairs(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&span.context(), &mut headers);
    });
    headers.0
}

/// The remote parent context found in headers (`get` looks one up by name).
pub fn parent_from_headers(get: impl Fn(&str) -> Option<String>) -> opentelemetry::Context {
    let headers = HeaderMap(
        ["traceparent", "tracestate"]
            .into_iter()
            .filter_map(|name| get(name).map(|value| (name.to_owned(), value)))
            .collect(),
    );
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&headers))
}

struct HeaderPairs(Vec<(String, String)>);

impl Injector for HeaderPairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct HeaderMap(HashMap<String, String>);

impl Extractor for HeaderMap {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// One JSON object a line: time, level, target, the event's fields, and the
/// fields of every span it happened in (innermost wins), flattened.
struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)),
        );
        line.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string()),
        );
        line.insert(
            "target".into(),
            Value::String(event.metadata().target().to_owned()),
        );
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) = serde_json::from_str::<Value>(fields) {
                    line.extend(span_fields);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

/// The log filter: `RUST_LOG`, or `info`. Postgres NOTICEs ("relation ...
/// already exists, skipping" on a fresh database) reach sqlx's log at INFO
/// and mislead, so they are kept at WARN unless `RUST_LOG` names sqlx.
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let names_sqlx = std::env::var("RUST_LOG").is_ok_and(|wanted| wanted.contains("sqlx"));
    match "sqlx::postgres::notice=warn".parse() {
        Ok(quiet) if !names_sqlx => filter.add_directive(quiet),
        _ => filter,
    }
}
