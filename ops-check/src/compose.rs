//! `docker-compose.yml` runs the image's programs as the code defines them:
//! every service built from this repository (or using the image built here)
//! runs `ingest`, `worker` or `worker migrate` with only the variables that
//! program reads and values it accepts, listens on the program's port, has a
//! health check on `/healthz` at that port, and the serving worker waits for
//! `worker migrate` instead of migrating by itself. A drifted compose file
//! otherwise shows up only when someone runs the stack.

use crate::container::Container;
use crate::files::{relative, repo_root};
use crate::problems::Problems;
use crate::programs::{check_roles_present, Role, LIVENESS_PATH};
use crate::yaml::{self, entries, has, items, scalar, strings};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A service of the compose file that runs the image, and what it runs when
/// its command is understood.
pub struct ComposeService {
    pub name: String,
    pub role: Option<Role>,
}

pub fn path() -> PathBuf {
    repo_root().join("docker-compose.yml")
}

/// Checks the compose file; returns the services that run the image.
pub fn check(problems: &mut Problems) -> Vec<ComposeService> {
    let path = path();
    match yaml::load(&path) {
        Ok(docs) => check_doc(
            &relative(&path),
            docs.first().unwrap_or(&Value::Null),
            problems,
        ),
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    }
}

/// Checks one parsed compose file, named `file` in messages.
pub fn check_doc(file: &str, doc: &Value, problems: &mut Problems) -> Vec<ComposeService> {
    let services = entries(&doc["services"]);
    if services.is_empty() {
        problems.push(format!("{file}: no services"));
    }

    // The image's services: those built here, and those using the same image.
    let built_images: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| has(s, "build"))
        .filter_map(|(_, s)| scalar(&s["image"]))
        .collect();
    let ours = |service: &Value| {
        has(service, "build")
            || scalar(&service["image"]).is_some_and(|image| built_images.contains(&image))
    };

    let mut checked = Vec::new();
    for (name, service) in &services {
        if !ours(service) {
            continue;
        }
        let origin = format!("{file} service `{name}`");
        if has(service, "env_file") {
            problems.push(format!(
                "{origin}: uses env_file, which hides the variables from this check; \
                 list them under `environment`"
            ));
        }
        let role = container(&origin, service, problems).check(problems);
        if let Some(role) = role.as_ref().filter(|role| role.serves()) {
            check_healthcheck(&origin, role, service, problems);
        }
        checked.push(ComposeService {
            name: name.clone(),
            role,
        });
    }

    check_migration_order(file, doc, &checked, problems);
    let roles: BTreeSet<Role> = checked.iter().filter_map(|s| s.role.clone()).collect();
    check_roles_present(file, &roles, problems);
    checked
}

/// The service as a container: command, environment (interpolated as
/// compose would, with the host's environment unknown) and target ports.
fn container(origin: &str, service: &Value, problems: &mut Problems) -> Container {
    let argv = match &service["command"] {
        node @ Value::Array(_) => strings(node),
        other => scalar(other)
            .map(|line| line.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let mut env = BTreeMap::new();
    match &service["environment"] {
        Value::Array(list) => {
            for item in list.iter().filter_map(scalar) {
                match item.split_once('=') {
                    Some((k, v)) => env.insert(k.to_owned(), interpolate(v)),
                    None => env.insert(item, None),
                };
            }
        }
        node @ Value::Object(_) => {
            for (k, v) in entries(node) {
                env.insert(k, scalar(v).and_then(|v| interpolate(&v)));
            }
        }
        _ => {}
    }
    let mut ports = Vec::new();
    for item in items(&service["ports"]) {
        let target = match item {
            Value::Object(_) => scalar(&item["target"]),
            other => scalar(other).and_then(|spec| {
                let spec = spec.split('/').next().unwrap_or_default().to_owned();
                spec.rsplit(':').next().map(str::to_owned)
            }),
        };
        match target.as_deref().map(str::parse::<u16>) {
            Some(Ok(port)) => ports.push(port),
            _ => problems.push(format!("{origin}: cannot read port {item}")),
        }
    }
    Container {
        origin: origin.to_owned(),
        argv,
        env,
        ports,
    }
}

/// A serving program's health check probes liveness on the program's port.
fn check_healthcheck(origin: &str, role: &Role, service: &Value, problems: &mut Problems) {
    let port = role.program.default_port_or_record(problems);
    let test = strings(&service["healthcheck"]["test"]).join(" ");
    if test.is_empty() {
        problems.push(format!(
            "{origin}: no healthcheck; probe GET {LIVENESS_PATH} on port {port}"
        ));
    } else if !test.contains(LIVENESS_PATH) || !test.contains(&port.to_string()) {
        problems.push(format!(
            "{origin}: the healthcheck {test:?} should probe GET {LIVENESS_PATH} on port {port}"
        ));
    }
}

/// The serving worker waits for `worker migrate` to complete and does not
/// migrate by itself.
fn check_migration_order(
    file: &str,
    doc: &Value,
    checked: &[ComposeService],
    problems: &mut Problems,
) {
    let migrations: Vec<&str> = checked
        .iter()
        .filter(|s| s.role.as_ref().is_some_and(Role::is_migration))
        .map(|s| s.name.as_str())
        .collect();
    for service in checked {
        if !service.role.as_ref().is_some_and(Role::is_serving_worker) {
            continue;
        }
        let origin = format!("{file} service `{}`", service.name);
        let node = &doc["services"][service.name.as_str()];
        let waits = migrations.iter().any(|m| {
            scalar(&node["depends_on"][*m]["condition"]).as_deref()
                == Some("service_completed_successfully")
        });
        if !waits {
            problems.push(format!(
                "{origin}: should depend on a `worker migrate` service ({}) with \
                 condition service_completed_successfully",
                if migrations.is_empty() {
                    "there is none".to_owned()
                } else {
                    migrations.join(", ")
                }
            ));
        }
        let auto_migrate = scalar(&node["environment"]["WORKER_AUTO_MIGRATE"]);
        if auto_migrate.as_deref() != Some("false") {
            problems.push(format!(
                "{origin}: set WORKER_AUTO_MIGRATE to \"false\"; `worker migrate` runs separately"
            ));
        }
    }
}

/// A value as compose would pass it, when that does not depend on the host:
/// `$$` is a literal `$`; `${VAR:-default}` and `${VAR-default}` become the
/// default (the host's variable is assumed unset); anything taken from the
/// host alone (`$VAR`, `${VAR}`, `${VAR:?error}`, `${VAR:+alt}`) makes the
/// value unknown (`None`).
///
/// Hand-written: no maintained crate implements compose's interpolation
/// (`shellexpand` knows neither `${VAR-default}`, `${VAR:?err}` nor `$$`).
pub fn interpolate(value: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let inner = after.strip_prefix('{')?;
        let end = inner.find('}')?;
        let expr = &inner[..end];
        let name_len = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let operator = &expr[name_len..];
        let default = operator
            .strip_prefix(":-")
            .or_else(|| operator.strip_prefix('-'))?;
        out.push_str(default);
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::read;

    #[test]
    fn interpolation_keeps_what_does_not_depend_on_the_host() {
        assert_eq!(interpolate("plain").as_deref(), Some("plain"));
        assert_eq!(interpolate("${A:-x}").as_deref(), Some("x"));
        assert_eq!(interpolate("${A-x}").as_deref(), Some("x"));
        assert_eq!(interpolate("${A:-}").as_deref(), Some(""));
        assert_eq!(
            interpolate("amqp://${U:-u}:${P:-p}@h:5672/%2f").as_deref(),
            Some("amqp://u:p@h:5672/%2f")
        );
        assert_eq!(interpolate("cost $$5").as_deref(), Some("cost $5"));
        for unknown in [
            "${A}",
            "$A",
            "${A:?set A}",
            "${A?set A}",
            "${A:+x}",
            "${A:-x",
        ] {
            assert_eq!(interpolate(unknown), None, "{unknown}");
        }
    }

    /// The real compose file with `from` replaced by `to`, checked.
    fn check_broken(from: &str, to: &str) -> Problems {
        let text = read(&path()).unwrap();
        assert!(
            text.contains(from),
            "docker-compose.yml no longer has {from:?}"
        );
        let docs = yaml::parse(&text.replacen(from, to, 1), "docker-compose.yml").unwrap();
        let mut problems = Problems::default();
        check_doc("docker-compose.yml", &docs[0], &mut problems);
        problems
    }

    #[test]
    fn a_broken_compose_file_is_reported() {
        let renamed = check_broken("WORKER_ADDR: 0.0.0.0:8081", "WORKER_ADDRESS: 0.0.0.0:8081");
        assert!(
            renamed.mentions(&["`worker`", "sets WORKER_ADDRESS"]),
            "{renamed:?}"
        );
        assert!(
            renamed.mentions(&["`worker`", "WORKER_ADDR is not set"]),
            "{renamed:?}"
        );

        let port = check_broken("INGEST_ADDR: 0.0.0.0:8080", "INGEST_ADDR: 0.0.0.0:9999");
        assert!(port.mentions(&["`ingest`", "uses port 9999"]), "{port:?}");

        let order = check_broken(
            "condition: service_completed_successfully",
            "condition: service_started",
        );
        assert!(
            order.mentions(&["should depend on a `worker migrate`"]),
            "{order:?}"
        );

        let probe = check_broken("/dev/tcp/127.0.0.1/8081", "/dev/tcp/127.0.0.1/8082");
        assert!(
            probe.mentions(&["`worker`", "the healthcheck"]),
            "{probe:?}"
        );

        let migrate = check_broken(
            r#"command: ["worker", "migrate"]"#,
            r#"command: ["worker"]"#,
        );
        assert!(
            migrate.mentions(&["nothing runs `worker migrate`"]),
            "{migrate:?}"
        );

        let merged = check_broken("  AMQP_TOPOLOGY_PREFIX:", "  AMQP_TOPOLOGY_PREFIXX:");
        assert!(
            merged.mentions(&["`ingest`", "sets AMQP_TOPOLOGY_PREFIXX"]),
            "{merged:?}"
        );
    }
}
