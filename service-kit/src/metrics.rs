//! The process-wide Prometheus recorder behind both services' `/metrics`.
//! Each service declares its metric names (and describes them) in its own
//! `metrics` module; this only installs the recorder and renders it.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Latency buckets in seconds: sub-millisecond to Twilio's 15 s timeout.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    15.0,
];

/// Buckets for histograms of counts, not seconds: by convention their names
/// end in `_size` (`worker_batch_size`).
const COUNT_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Buckets for message lifetimes, seconds to days: by convention their
/// names end in `_to_final_seconds` (`worker_time_to_final_seconds`).
const LIFETIME_BUCKETS: [f64; 13] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0, 86400.0, 259200.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder on first call, describes `metrics`, and returns the
/// handle. `None` only if another recorder was installed first (then metrics
/// go there).
pub fn install(metrics: &[MetricDef]) -> Option<PrometheusHandle> {
    let handle = HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_size".into()), &COUNT_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Suffix("_to_final_seconds".into()),
                        &LIFETIME_BUCKETS,
                    )
                })
                .and_then(|b| b.install_recorder())
                .ok()
        })
        .clone();
    describe(metrics);
    handle
}

/// The text exposition, after the upkeep the exporter leaves to its caller.
pub fn render() -> String {
    match HANDLE.get().cloned().flatten() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// What kind of series a metric is; a histogram also exposes `_bucket`,
/// `_sum` and `_count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric a service records: declared once, in that service's `metrics`
/// module, and used by name from there (code, `/metrics` descriptions and
/// the ops consistency check alike).
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub description: &'static str,
}

impl MetricDef {
    pub const fn counter(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Counter,
            description,
        }
    }

    pub const fn gauge(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Gauge,
            description,
        }
    }

    pub const fn histogram(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            kind: MetricKind::Histogram,
            description,
        }
    }
}

/// Registers each metric's description (the `# HELP` line of `/metrics`).
fn describe(metrics: &[MetricDef]) {
    for metric in metrics {
        match metric.kind {
            MetricKind::Counter => metrics::describe_counter!(metric.name, metric.description),
            MetricKind::Gauge => metrics::describe_gauge!(metric.name, metric.description),
            MetricKind::Histogram => metrics::describe_histogram!(metric.name, metric.description),
        }
    }
}
