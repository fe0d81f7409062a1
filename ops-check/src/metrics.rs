//! The metrics the code records, from the programs' own declarations
//! (`ingest::metrics::ALL`, `worker::metrics::ALL`), and the project metric
//! names a PromQL expression uses, so that alert rules and dashboards are
//! checked against series that really exist.

use crate::problems::Problems;
use service_kit::metrics::{MetricDef, MetricKind};
use std::collections::BTreeMap;

/// Families whose names this project owns; other names in an expression
/// (`up`, `rate`, label names, …) are not checked.
const PREFIXES: &[&str] = &["ingest_", "worker_", "rabbitmq_"];

/// Metric names the code records, with their kind.
pub struct Recorded(BTreeMap<&'static str, MetricKind>);

impl Recorded {
    /// What ingest and the worker declare.
    pub fn from_code() -> Self {
        Self::from_defs(ingest::metrics::ALL.iter().chain(worker::metrics::ALL))
    }

    pub fn from_defs<'a>(defs: impl IntoIterator<Item = &'a MetricDef>) -> Self {
        Recorded(defs.into_iter().map(|def| (def.name, def.kind)).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a series of that name exists: a declared metric, or the
    /// `_bucket`, `_sum` or `_count` series of a declared histogram.
    pub fn has_series(&self, name: &str) -> bool {
        if self.0.contains_key(name) {
            return true;
        }
        ["_bucket", "_sum", "_count"].iter().any(|suffix| {
            name.strip_suffix(suffix)
                .is_some_and(|base| self.0.get(base) == Some(&MetricKind::Histogram))
        })
    }

    /// Records each project metric an expression of `file` uses that the
    /// code does not record.
    pub fn check_expr(&self, file: &str, expr: &str, problems: &mut Problems) {
        for metric in metrics_in(expr) {
            if !self.has_series(&metric) {
                problems.push(format!(
                    "{file}: {metric} is not recorded by the code (it records {})",
                    self.0.keys().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
}

/// Metric names a PromQL expression uses from this project's families.
pub fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| PREFIXES.iter().any(|prefix| token.starts_with(prefix)))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFS: [MetricDef; 2] = [
        MetricDef::counter("worker_things_total", ""),
        MetricDef::histogram("ingest_wait_seconds", ""),
    ];

    #[test]
    fn series_of_declared_metrics_exist() {
        let recorded = Recorded::from_defs(&DEFS);
        assert!(recorded.has_series("worker_things_total"));
        assert!(recorded.has_series("ingest_wait_seconds_bucket"));
        assert!(recorded.has_series("ingest_wait_seconds_count"));
        assert!(
            !recorded.has_series("worker_things_total_count"),
            "not a histogram"
        );
        assert!(!recorded.has_series("worker_thing_total"));
    }

    #[test]
    fn expressions_are_checked_by_name() {
        let expr = "histogram_quantile(0.9, sum by (le) (rate(ingest_wait_seconds_bucket[5m]))) \
                    / on(job) rate(worker_thingz_total{queue=\"main\"}[5m]) and up == 1";
        assert_eq!(
            metrics_in(expr),
            ["ingest_wait_seconds_bucket", "worker_thingz_total"]
        );
        let mut problems = Problems::default();
        Recorded::from_defs(&DEFS).check_expr("a.yml", expr, &mut problems);
        assert!(problems.mentions(&["a.yml: worker_thingz_total is not recorded"]));
        assert_eq!(problems.iter().count(), 1);
    }

    #[test]
    fn the_programs_declare_metrics() {
        let recorded = Recorded::from_code();
        assert!(!recorded.is_empty());
        for def in ingest::metrics::ALL.iter().chain(worker::metrics::ALL) {
            assert!(
                PREFIXES.iter().any(|prefix| def.name.starts_with(prefix)),
                "{} is outside the checked families {PREFIXES:?}",
                def.name
            );
        }
    }
}
