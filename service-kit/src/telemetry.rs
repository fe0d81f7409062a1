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
use std::sync::{Arc, OnceLock};
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
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
        Some(LogFormat::Json) => {
            let lines = JsonLines::default();
            let dispatch = tracing::Dispatch::new(
                registry.with(
                    subscriber_fmt::layer()
                        .fmt_fields(JsonFragments)
                        .event_format(lines.clone())
                        .with_writer(writer),
                ),
            );
            lines.bind(&dispatch);
            dispatch.try_init()
        }
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

/// One JSON object a line: time, level, target, the event's fields, the
/// fields of every span it happened in (innermost wins), flattened, and the
/// W3C `trace_id` and `span_id` of the innermost span.
///
/// The ids are read from the span's OpenTelemetry context only when a line
/// is written, and span fields are kept as JSON fragments appended as they
/// are recorded (`JsonFragments`): a span that never logs, as a callback's
/// does not at INFO, costs no formatting beyond its fields' values.
#[derive(Clone, Default)]
struct JsonLines {
    /// The dispatcher this formats for (`bind`): a subscriber's own
    /// callbacks see no default dispatcher, and the OpenTelemetry context
    /// is reached through it.
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl JsonLines {
    fn bind(&self, dispatch: &tracing::Dispatch) {
        let _ = self.dispatch.set(dispatch.downgrade());
    }
}

impl<S> FormatEvent<S, JsonFragments> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFragments>,
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
        let mut innermost = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                innermost = Some(span.id());
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFragments>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) =
                    serde_json::from_str::<Value>(&format!("{{{}}}", fields.fields))
                {
                    line.extend(span_fields);
                }
            }
        }
        let dispatch = self.dispatch.get().and_then(WeakDispatch::upgrade);
        if let (Some(id), Some(dispatch)) = (innermost, dispatch) {
            insert_trace_ids(&mut line, &id, &dispatch);
        }
        event.record(&mut JsonVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The span's W3C ids as `trace_id` and `span_id`, when it has a valid
/// OpenTelemetry context.
fn insert_trace_ids(
    line: &mut Map<String, Value>,
    id: &tracing::span::Id,
    dispatch: &tracing::Dispatch,
) {
    let Some(context) = tracing_opentelemetry::get_otel_context(id, dispatch) else {
        return;
    };
    let span = context.span();
    let span_context = span.span_context();
    if span_context.is_valid() {
        line.insert(
            "trace_id".into(),
            Value::String(span_context.trace_id().to_string()),
        );
        line.insert(
            "span_id".into(),
            Value::String(span_context.span_id().to_string()),
        );
    }
}

/// Span fields as comma-separated JSON members (`"name":value`), appended
/// as they are recorded: no parse and re-serialise per `record`, as
/// `JsonFields` does. A field recorded twice appears twice; the later one
/// wins when a line is written. Dotted names (`http.route`,
/// `messaging.system`, `twilio.message_sid`) are OpenTelemetry attributes
/// for the trace and are left out of log lines; plain names (`message_sid`,
/// `request_id`) are the log's.
struct JsonFragments;

impl<'writer> FormatFields<'writer> for JsonFragments {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = FragmentVisitor {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut visitor = FragmentVisitor {
            writer: &mut writer,
            first,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct FragmentVisitor<'a, 'writer> {
    writer: &'a mut Writer<'writer>,
    first: bool,
    result: fmt::Result,
}

impl FragmentVisitor<'_, '_> {
    /// Writes the separator and the name; false when the field is skipped.
    fn name(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.contains('.') {
            return false;
        }
        let separator = if self.first { "" } else { "," };
        self.first = false;
        self.result = write!(self.writer, "{separator}");
        self.string(name);
        self.result = self.result.and_then(|()| self.writer.write_char(':'));
        self.result.is_ok()
    }

    /// A JSON string, written as is when nothing in it needs escaping (ids,
    /// statuses), otherwise by serde_json.
    fn string(&mut self, value: &str) {
        let plain = !value
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b < 0x20 || b == 0x7f);
        self.result = self.result.and_then(|()| {
            if plain {
                write!(self.writer, "\"{value}\"")
            } else {
                write!(self.writer, "{}", Value::String(value.to_owned()))
            }
        });
    }

    fn member(&mut self, field: &Field, value: impl fmt::Display) {
        if self.name(field) {
            self.result = write!(self.writer, "{value}");
        }
    }
}

impl Visit for FragmentVisitor<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.name(field) {
            self.string(&format!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.name(field) {
            self.string(value);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, value);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Log lines written into a shared buffer.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn lines_of(run: impl FnOnce()) -> Vec<Value> {
        let captured = Captured::default();
        let writer = captured.clone();
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        let lines = JsonLines::default();
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(tracer))
                .with(
                    subscriber_fmt::layer()
                        .fmt_fields(JsonFragments)
                        .event_format(lines.clone())
                        .with_writer(move || writer.clone()),
                ),
        );
        lines.bind(&dispatch);
        tracing::dispatcher::with_default(&dispatch, run);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
            .collect()
    }

    #[test]
    fn a_line_carries_its_spans_fields_as_last_recorded_and_the_trace_ids() {
        let mut ids = None;
        let lines = lines_of(|| {
            let outer =
                tracing::info_span!("outer", request_id = "r-1", note = "a \"quoted\"\nline");
            let inner = tracing::info_span!(
                parent: &outer,
                "inner",
                message_sid = tracing::field::Empty,
                twilio.message_sid = "SM1",
                status = "queued",
                ratio = 0.5_f64,
                control = "tab\there",
                count = 3_u64
            );
            inner.record("message_sid", "SM1");
            inner.record("status", "sent");
            let context = inner.context();
            let span = context.span();
            ids = Some((
                span.span_context().trace_id().to_string(),
                span.span_context().span_id().to_string(),
            ));
            inner.in_scope(|| tracing::warn!(outcome = "kept", "something happened"));
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["message"], "something happened");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["outcome"], "kept");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["note"], "a \"quoted\"\nline");
        assert_eq!(line["message_sid"], "SM1");
        assert_eq!(line["status"], "sent", "the later record wins: {line}");
        assert_eq!(line["count"], 3);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["control"], "tab\there");
        assert!(
            line.get("twilio.message_sid").is_none(),
            "a dotted name is the trace's attribute: {line}"
        );
        let (trace_id, span_id) = ids.unwrap();
        assert_eq!(line["trace_id"], trace_id.as_str());
        assert_eq!(line["span_id"], span_id.as_str(), "the innermost span's id");
        assert_eq!(trace_id.len(), 32);
    }

    #[test]
    fn a_line_outside_any_span_has_no_trace_ids() {
        let lines = lines_of(|| tracing::error!(code = 7, "alone"));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["code"], 7);
        assert!(lines[0].get("trace_id").is_none(), "{}", lines[0]);
    }
}
