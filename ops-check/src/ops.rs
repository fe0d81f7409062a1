//! The monitoring files under `ops/`, read once for the Prometheus and
//! Grafana checks: every YAML file there must parse (Prometheus' own config
//! and rules, Grafana's provisioning), and every JSON file is a dashboard.

use crate::files::{files_under, read, relative, repo_root};
use crate::problems::Problems;
use crate::yaml;
use serde_json::Value;
use std::path::PathBuf;

pub fn ops_dir() -> PathBuf {
    repo_root().join("ops")
}

/// A parsed file: its path relative to the repository, and its documents.
pub struct OpsFile {
    pub file: String,
    pub docs: Vec<Value>,
}

/// Every YAML file under `ops/`, parsed; a file that does not parse is a
/// problem.
pub fn load_yaml(problems: &mut Problems) -> Vec<OpsFile> {
    let paths = files_under(&ops_dir(), &["yml", "yaml"]);
    if paths.is_empty() {
        problems.push("ops/ has no YAML files".to_owned());
    }
    paths
        .iter()
        .filter_map(|path| match yaml::load(path) {
            Ok(docs) => Some(OpsFile {
                file: relative(path),
                docs,
            }),
            Err(e) => {
                problems.push(e);
                None
            }
        })
        .collect()
}

/// Every JSON file under `ops/` (Grafana dashboards), parsed.
pub fn load_dashboards(problems: &mut Problems) -> Vec<OpsFile> {
    let paths = files_under(&ops_dir(), &["json"]);
    if paths.is_empty() {
        problems.push("ops/ has no Grafana dashboard (JSON)".to_owned());
    }
    paths
        .iter()
        .filter_map(|path| {
            let parsed = read(path).and_then(|text| {
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("{} is not valid JSON: {e}", relative(path)))
            });
            match parsed {
                Ok(dashboard) => Some(OpsFile {
                    file: relative(path),
                    docs: vec![dashboard],
                }),
                Err(e) => {
                    problems.push(e);
                    None
                }
            }
        })
        .collect()
}
