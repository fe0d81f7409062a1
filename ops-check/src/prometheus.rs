//! Prometheus' files under `ops/` agree with the code: every alerting or
//! recording rule uses only metrics the programs record, the scrape config
//! scrapes each serving program of the compose stack on its port at
//! `/metrics`, and every rule file it loads exists. A rule on a renamed
//! metric never fires, silently; this is where that is caught.

use crate::compose::{self, ComposeService};
use crate::metrics::Recorded;
use crate::ops::{ops_dir, OpsFile};
use crate::problems::Problems;
use crate::programs::Program;
use crate::yaml::{items, scalar, strings};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// Checks the rules in `ops_yaml` (every YAML file under `ops/`) and
/// `ops/prometheus/prometheus.yml` against the code and the compose file.
pub fn check(ops_yaml: &[OpsFile], problems: &mut Problems) {
    let recorded = Recorded::from_code();
    if recorded.is_empty() {
        problems.push("ingest::metrics::ALL and worker::metrics::ALL declare no metrics");
    }
    for file in ops_yaml {
        check_rules(file, &recorded, problems);
    }

    // The compose file's own problems are its check's business.
    let services = compose::check(&mut Problems::default());
    let config_path = ops_dir().join("prometheus").join("prometheus.yml");
    let config_file = crate::files::relative(&config_path);
    match ops_yaml.iter().find(|f| f.file == config_file) {
        Some(config) => {
            let doc = config.docs.first().unwrap_or(&Value::Null);
            check_scrape_config(&config_file, doc, &config_path, &services, problems);
        }
        None => problems.push(format!("{config_file}: missing or not valid YAML")),
    }
}

/// Every rule expression of `file` uses metrics the code records.
pub fn check_rules(file: &OpsFile, recorded: &Recorded, problems: &mut Problems) {
    for doc in &file.docs {
        for group in items(&doc["groups"]) {
            for rule in items(&group["rules"]) {
                if let Some(expr) = scalar(&rule["expr"]) {
                    recorded.check_expr(&file.file, &expr, problems);
                }
            }
        }
    }
}

/// Prometheus scrapes each serving program of the compose file on its port,
/// and loads rule files that exist (relative to `path`).
pub fn check_scrape_config(
    file: &str,
    config: &Value,
    path: &Path,
    services: &[ComposeService],
    problems: &mut Problems,
) {
    let mut scraped = BTreeSet::new();
    for job in items(&config["scrape_configs"]) {
        let metrics_path = scalar(&job["metrics_path"]).unwrap_or_else(|| "/metrics".to_owned());
        for target in items(&job["static_configs"]).flat_map(|c| strings(&c["targets"])) {
            let Some((host, port)) = target.rsplit_once(':') else {
                continue;
            };
            let Some(role) = services
                .iter()
                .find(|s| s.name == host)
                .and_then(|s| s.role.clone())
            else {
                continue;
            };
            let expected = role.program.default_port_or_record(problems);
            if port.parse::<u16>().ok() != Some(expected) || metrics_path != "/metrics" {
                problems.push(format!(
                    "{file}: scrapes {target}{metrics_path}, but {} serves /metrics on port {expected}",
                    role.program
                ));
            }
            scraped.insert(role.program);
        }
    }
    for program in Program::ALL {
        if !scraped.contains(&program) {
            problems.push(format!(
                "{file}: no scrape target for the compose service running {program}"
            ));
        }
    }
    let dir = path.parent().unwrap_or(path);
    for rule_file in strings(&config["rule_files"]) {
        if !dir.join(&rule_file).exists() {
            problems.push(format!("{file}: rule file {rule_file} does not exist"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::read;
    use crate::yaml;

    /// The real `ops/prometheus/<name>` with `from` replaced by `to`.
    fn broken(name: &str, from: &str, to: &str) -> (std::path::PathBuf, OpsFile) {
        let path = ops_dir().join("prometheus").join(name);
        let text = read(&path).unwrap();
        assert!(
            text.contains(from),
            "ops/prometheus/{name} no longer has {from:?}"
        );
        let docs = yaml::parse(&text.replacen(from, to, 1), name).unwrap();
        let file = OpsFile {
            file: name.to_owned(),
            docs,
        };
        (path, file)
    }

    #[test]
    fn a_rule_on_an_unrecorded_metric_is_reported() {
        let (_, rules) = broken(
            "alerts.yml",
            "ingest_broker_blocked",
            "ingest_broker_blockd",
        );
        let mut problems = Problems::default();
        check_rules(&rules, &Recorded::from_code(), &mut problems);
        assert!(
            problems.mentions(&["alerts.yml: ingest_broker_blockd is not recorded"]),
            "{problems:?}"
        );
    }

    #[test]
    fn a_broken_scrape_config_is_reported() {
        let services = compose::check(&mut Problems::default());
        let check = |from: &str, to: &str| {
            let (path, config) = broken("prometheus.yml", from, to);
            let mut problems = Problems::default();
            check_scrape_config(
                "prometheus.yml",
                &config.docs[0],
                &path,
                &services,
                &mut problems,
            );
            problems
        };
        let port = check("worker:8081", "worker:9999");
        assert!(
            port.mentions(&["scrapes worker:9999/metrics, but worker serves"]),
            "{port:?}"
        );
        let gone = check("worker:8081", "elsewhere:8081");
        assert!(gone.mentions(&["no scrape target for the compose service running worker"]));
        let rules = check("alerts.yml", "alert.yml");
        assert!(
            rules.mentions(&["rule file alert.yml does not exist"]),
            "{rules:?}"
        );
        let metrics_path = check("metrics_path: /metrics", "metrics_path: /stats");
        assert!(
            metrics_path.mentions(&["scrapes ingest:8080/stats"]),
            "{metrics_path:?}"
        );
    }
}
