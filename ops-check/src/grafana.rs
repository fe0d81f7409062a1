//! Grafana's files under `ops/` agree with the code and with each other:
//! every dashboard parses, has queries, queries only metrics the programs
//! record, and uses only data sources that the provisioning files under
//! `ops/` define (template variables such as `${datasource}` aside). A panel
//! on a renamed metric shows "No data" instead of failing; this catches it.

use crate::metrics::Recorded;
use crate::ops::OpsFile;
use crate::problems::Problems;
use crate::yaml::{items, scalar};
use serde_json::Value;
use std::collections::BTreeSet;

/// Checks `dashboards` against the code and the data sources provisioned
/// in `ops_yaml` (every YAML file under `ops/`).
pub fn check(ops_yaml: &[OpsFile], dashboards: &[OpsFile], problems: &mut Problems) {
    let recorded = Recorded::from_code();
    let provisioned = provisioned_uids(ops_yaml);
    for dashboard in dashboards {
        for doc in &dashboard.docs {
            check_dashboard(&dashboard.file, doc, &provisioned, &recorded, problems);
        }
    }
}

/// The uids of the data sources Grafana's provisioning files define.
pub fn provisioned_uids(ops_yaml: &[OpsFile]) -> BTreeSet<String> {
    ops_yaml
        .iter()
        .flat_map(|file| &file.docs)
        .flat_map(|doc| items(&doc["datasources"]))
        .filter_map(|source| scalar(&source["uid"]))
        .collect()
}

/// One dashboard's queries and data sources.
pub fn check_dashboard(
    file: &str,
    dashboard: &Value,
    provisioned: &BTreeSet<String>,
    recorded: &Recorded,
    problems: &mut Problems,
) {
    let mut exprs = Vec::new();
    collect_exprs(dashboard, &mut exprs);
    if exprs.is_empty() {
        problems.push(format!("{file}: no queries"));
    }
    for expr in &exprs {
        recorded.check_expr(file, expr, problems);
    }
    let mut uids = BTreeSet::new();
    collect_datasource_uids(dashboard, &mut uids);
    for uid in uids.difference(provisioned) {
        if !uid.starts_with("${") {
            problems.push(format!(
                "{file}: uses data source uid {uid:?}, but ops/ provisions {provisioned:?}"
            ));
        }
    }
}

/// Every `"expr"` string, at any depth.
fn collect_exprs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => collect_exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, out)),
        _ => {}
    }
}

/// Every `"datasource": {"uid": …}`, at any depth.
fn collect_datasource_uids(node: &Value, out: &mut BTreeSet<String>) {
    match node {
        Value::Object(map) => {
            if let Some(uid) = map
                .get("datasource")
                .and_then(|ds| ds.get("uid"))
                .and_then(Value::as_str)
            {
                out.insert(uid.to_owned());
            }
            map.values()
                .for_each(|value| collect_datasource_uids(value, out));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| collect_datasource_uids(item, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::read;
    use crate::ops::{load_yaml, ops_dir};

    /// The real dashboard with `from` replaced by `to`, checked.
    fn check_broken(from: &str, to: &str) -> Problems {
        let path = ops_dir().join("grafana/dashboards/pipeline.json");
        let text = read(&path).unwrap();
        assert!(text.contains(from), "the dashboard no longer has {from:?}");
        let dashboard: Value = serde_json::from_str(&text.replacen(from, to, 1)).unwrap();
        let mut problems = Problems::default();
        let provisioned = provisioned_uids(&load_yaml(&mut problems));
        let recorded = Recorded::from_code();
        check_dashboard(
            "pipeline.json",
            &dashboard,
            &provisioned,
            &recorded,
            &mut problems,
        );
        problems
    }

    #[test]
    fn a_broken_dashboard_is_reported() {
        let metric = check_broken("rabbitmq_queue_messages", "rabbitmq_queue_message");
        assert!(
            metric.mentions(&["pipeline.json: rabbitmq_queue_message is not recorded"]),
            "{metric:?}"
        );
        let source = check_broken("\"uid\": \"prometheus\"", "\"uid\": \"prom\"");
        assert!(source.mentions(&["data source uid \"prom\""]), "{source:?}");
        let variable = check_broken("\"uid\": \"prometheus\"", "\"uid\": \"${datasource}\"");
        assert!(variable.is_empty(), "{variable:?}");

        let mut problems = Problems::default();
        let empty = serde_json::json!({"panels": []});
        check_dashboard(
            "d.json",
            &empty,
            &BTreeSet::new(),
            &Recorded::from_code(),
            &mut problems,
        );
        assert!(problems.mentions(&["d.json: no queries"]));
    }
}
