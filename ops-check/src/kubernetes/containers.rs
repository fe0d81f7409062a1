//! A Kubernetes container as the shared container checks see it, built from
//! its spec and the ConfigMaps and Secrets it reads, plus what only
//! Kubernetes has: named ports and the liveness and readiness probes.

use super::Manifest;
use crate::container::Container;
use crate::problems::Problems;
use crate::programs::{Role, LIVENESS_PATH, READINESS_PATH};
use crate::yaml::{entries, has, items, scalar, strings};
use serde_json::Value;
use std::collections::BTreeMap;

type Keys = BTreeMap<String, Option<String>>;

/// ConfigMap and Secret keys by name; values only for ConfigMaps.
#[derive(Default)]
pub struct EnvSources {
    config_maps: BTreeMap<String, Keys>,
    secrets: BTreeMap<String, Keys>,
}

impl EnvSources {
    pub fn from(manifests: &[Manifest]) -> Self {
        let mut sources = EnvSources::default();
        for manifest in manifests {
            match manifest.kind().as_str() {
                "ConfigMap" => {
                    let mut keys = Keys::new();
                    for (k, v) in entries(&manifest.doc["data"]) {
                        keys.insert(k, scalar(v));
                    }
                    for (k, _) in entries(&manifest.doc["binaryData"]) {
                        keys.insert(k, None);
                    }
                    sources.config_maps.insert(manifest.name(), keys);
                }
                "Secret" => {
                    let mut keys = Keys::new();
                    for field in ["data", "stringData"] {
                        for (k, _) in entries(&manifest.doc[field]) {
                            keys.insert(k, None);
                        }
                    }
                    sources.secrets.insert(manifest.name(), keys);
                }
                _ => {}
            }
        }
        sources
    }
}

/// A Kubernetes container, with what the platform-neutral check does not see.
pub struct KubeContainer {
    pub container: Container,
    pub named_ports: BTreeMap<String, u16>,
    pub spec: Value,
}

pub fn kube_container(
    origin: String,
    spec: &Value,
    sources: &EnvSources,
    problems: &mut Problems,
) -> KubeContainer {
    let mut argv = strings(&spec["command"]);
    argv.extend(strings(&spec["args"]));

    let mut env = BTreeMap::new();
    for from in items(&spec["envFrom"]) {
        let prefix = scalar(&from["prefix"]).unwrap_or_default();
        let (kind, name, keys) = if let Some(name) = scalar(&from["configMapRef"]["name"]) {
            let keys = sources.config_maps.get(&name);
            ("ConfigMap", name, keys)
        } else if let Some(name) = scalar(&from["secretRef"]["name"]) {
            let keys = sources.secrets.get(&name);
            ("Secret", name, keys)
        } else {
            problems.push(format!("{origin}: cannot read envFrom entry {from}"));
            continue;
        };
        match keys {
            Some(keys) => {
                for (key, value) in keys {
                    env.insert(format!("{prefix}{key}"), value.clone());
                }
            }
            None => problems.push(format!(
                "{origin}: envFrom names {kind} `{name}`, which is not defined under deploy/"
            )),
        }
    }
    for var in items(&spec["env"]) {
        let Some(name) = scalar(&var["name"]) else {
            problems.push(format!("{origin}: env entry without a name: {var}"));
            continue;
        };
        let value = if has(var, "valueFrom") {
            check_value_from(&origin, &name, &var["valueFrom"], sources, problems);
            None
        } else {
            scalar(&var["value"])
        };
        env.insert(name, value);
    }

    let mut ports = Vec::new();
    let mut named_ports = BTreeMap::new();
    for port in items(&spec["ports"]) {
        match port["containerPort"]
            .as_i64()
            .and_then(|p| u16::try_from(p).ok())
        {
            Some(number) => {
                ports.push(number);
                if let Some(name) = scalar(&port["name"]) {
                    named_ports.insert(name, number);
                }
            }
            None => problems.push(format!("{origin}: port without containerPort: {port}")),
        }
    }

    KubeContainer {
        container: Container {
            origin,
            argv,
            env,
            ports,
        },
        named_ports,
        spec: spec.clone(),
    }
}

/// A variable taken from a Secret or ConfigMap key names one defined under
/// `deploy/`, unless the reference is optional.
fn check_value_from(
    origin: &str,
    name: &str,
    value_from: &Value,
    sources: &EnvSources,
    problems: &mut Problems,
) {
    for (field, kind, objects) in [
        ("secretKeyRef", "Secret", &sources.secrets),
        ("configMapKeyRef", "ConfigMap", &sources.config_maps),
    ] {
        let reference = &value_from[field];
        if let (Some(object), Some(key)) = (scalar(&reference["name"]), scalar(&reference["key"])) {
            let found = objects
                .get(&object)
                .is_some_and(|keys| keys.contains_key(&key));
            let optional = reference["optional"].as_bool() == Some(true);
            if !found && !optional {
                problems.push(format!(
                    "{origin}: {name} comes from {kind} `{object}` key `{key}`, \
                     which is not defined under deploy/"
                ));
            }
        }
    }
}

/// A port given as a number, a numeric string or a name of the container's.
pub fn resolve_port(port: &Value, named: &BTreeMap<String, u16>) -> Option<u16> {
    match port {
        Value::Number(n) => n.as_i64().and_then(|n| u16::try_from(n).ok()),
        other => {
            let text = scalar(other)?;
            text.parse::<u16>()
                .ok()
                .or_else(|| named.get(&text).copied())
        }
    }
}

pub fn port_text(port: Option<u16>) -> String {
    port.map_or_else(|| "no port of the container".to_owned(), |p| p.to_string())
}

/// A serving container's liveness probe is GET /healthz and its readiness
/// probe GET /readyz, both on the program's port.
pub fn check_probes(role: &Role, container: &KubeContainer, problems: &mut Problems) {
    if !role.serves() {
        return;
    }
    let origin = &container.container.origin;
    let expected_port = role.program.default_port_or_record(problems);
    for (probe, path) in [
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
    ] {
        let Some(get) = container.spec[probe].get("httpGet") else {
            problems.push(format!(
                "{origin}: no {probe} with httpGet {path} on port {expected_port}"
            ));
            continue;
        };
        let actual_path = scalar(&get["path"]).unwrap_or_default();
        if actual_path != path {
            problems.push(format!(
                "{origin}: {probe} GETs {actual_path:?}; it must be {path}"
            ));
        }
        match resolve_port(&get["port"], &container.named_ports) {
            Some(port) if port == expected_port => {}
            other => problems.push(format!(
                "{origin}: {probe} port {} resolves to {}, not {}'s port {expected_port}",
                scalar(&get["port"]).unwrap_or_default(),
                port_text(other),
                role.program
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ports_resolve_by_number_text_or_name() {
        let named = BTreeMap::from([("http".to_owned(), 8081)]);
        assert_eq!(resolve_port(&json!(8081), &named), Some(8081));
        assert_eq!(resolve_port(&json!("8081"), &named), Some(8081));
        assert_eq!(resolve_port(&json!("http"), &named), Some(8081));
        assert_eq!(resolve_port(&json!("metrics"), &named), None);
        assert_eq!(resolve_port(&json!(70000), &named), None);
        assert_eq!(resolve_port(&Value::Null, &named), None);
    }
}
