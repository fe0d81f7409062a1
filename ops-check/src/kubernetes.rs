//! Every manifest under `deploy/` runs the programs as the code defines them:
//! each container's command, variables (including those from ConfigMaps and
//! Secrets, which must exist under `deploy/`) and ports pass the shared
//! container checks; serving containers probe `/healthz` (liveness) and
//! `/readyz` (readiness) on the program's port; Services select a pod
//! template and target the program's port; `ingest`, `worker` and
//! `worker migrate` all run, the serving worker leaving migrations to the
//! Job; and `kustomization.yaml` lists exactly the manifests there are.

mod containers;

use crate::files::{files_under, read, relative, repo_root};
use crate::problems::Problems;
use crate::programs::{check_roles_present, Role};
use crate::yaml::{self, items, scalar, scalar_entries, strings};
use containers::{
    check_probes, kube_container, port_text, resolve_port, EnvSources, KubeContainer,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One document of a file under `deploy/`.
pub struct Manifest {
    pub path: PathBuf,
    pub doc: Value,
}

impl Manifest {
    fn file(&self) -> String {
        relative(&self.path)
    }

    fn kind(&self) -> String {
        scalar(&self.doc["kind"]).unwrap_or_default()
    }

    fn name(&self) -> String {
        scalar(&self.doc["metadata"]["name"]).unwrap_or_default()
    }

    fn origin(&self) -> String {
        format!("{} {}/{}", self.file(), self.kind(), self.name())
    }

    /// The pod template of a workload.
    fn pod_template(&self) -> Option<&Value> {
        let template = match self.kind().as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                &self.doc["spec"]["template"]
            }
            "CronJob" => &self.doc["spec"]["jobTemplate"]["spec"]["template"],
            "Pod" => &self.doc,
            _ => return None,
        };
        Some(template)
    }
}

pub fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

/// The YAML files under `deploy/` with their text.
pub fn read_files(problems: &mut Problems) -> Vec<(PathBuf, String)> {
    let files = files_under(&deploy_dir(), &["yaml", "yml"]);
    if files.is_empty() {
        problems.push("deploy/ has no YAML files".to_owned());
    }
    files
        .into_iter()
        .filter_map(|path| match read(&path) {
            Ok(text) => Some((path, text)),
            Err(e) => {
                problems.push(e);
                None
            }
        })
        .collect()
}

/// Every document of `files`; a file that does not parse is a problem.
pub fn parse(files: &[(PathBuf, String)], problems: &mut Problems) -> Vec<Manifest> {
    let mut manifests = Vec::new();
    for (path, text) in files {
        match yaml::parse(text, &relative(path)) {
            Ok(docs) => {
                manifests.extend(docs.into_iter().filter(|doc| !doc.is_null()).map(|doc| {
                    Manifest {
                        path: path.clone(),
                        doc,
                    }
                }))
            }
            Err(e) => problems.push(e),
        }
    }
    manifests
}

/// Checks the real files under `deploy/`.
pub fn check(problems: &mut Problems) {
    let files = read_files(problems);
    let manifests = parse(&files, problems);
    check_manifests(&manifests, &deploy_dir(), problems);
}

struct PodTemplate {
    labels: BTreeMap<String, String>,
    containers: Vec<(Option<Role>, KubeContainer)>,
}

/// Checks `manifests`, read from `deploy` (where kustomization.yaml's
/// resources must be).
pub fn check_manifests(manifests: &[Manifest], deploy: &Path, problems: &mut Problems) {
    let sources = EnvSources::from(manifests);
    let mut templates = Vec::new();
    for manifest in manifests {
        let Some(template) = manifest.pod_template() else {
            continue;
        };
        let labels = scalar_entries(&template["metadata"]["labels"])
            .into_iter()
            .collect();
        let mut containers = Vec::new();
        for field in ["initContainers", "containers"] {
            for spec in items(&template["spec"][field]) {
                let name = scalar(&spec["name"]).unwrap_or_default();
                let origin = format!("{} container `{name}`", manifest.origin());
                let container = kube_container(origin, spec, &sources, problems);
                let role = container.container.check(problems);
                if let Some(role) = &role {
                    check_probes(role, &container, problems);
                }
                containers.push((role, container));
            }
        }
        if containers.is_empty() {
            problems.push(format!("{}: no containers", manifest.origin()));
        }
        templates.push(PodTemplate { labels, containers });
    }

    let roles: BTreeSet<Role> = templates
        .iter()
        .flat_map(|t| t.containers.iter().filter_map(|(role, _)| role.clone()))
        .collect();
    check_roles_present("deploy/", &roles, problems);
    if roles.iter().any(Role::is_migration) {
        for (role, container) in templates.iter().flat_map(|t| &t.containers) {
            let serving_worker = role.as_ref().is_some_and(Role::is_serving_worker);
            let auto_migrate = container.container.env.get("WORKER_AUTO_MIGRATE");
            if serving_worker && auto_migrate != Some(&Some("false".to_owned())) {
                problems.push(format!(
                    "{}: set WORKER_AUTO_MIGRATE to \"false\"; the migration Job runs `worker migrate`",
                    container.container.origin
                ));
            }
        }
    }
    check_services(manifests, &templates, problems);
    check_kustomization(manifests, deploy, problems);
}

/// Services send traffic to the program's port of the pods they select.
fn check_services(manifests: &[Manifest], templates: &[PodTemplate], problems: &mut Problems) {
    for manifest in manifests.iter().filter(|m| m.kind() == "Service") {
        let origin = manifest.origin();
        let selector: BTreeMap<String, String> = scalar_entries(&manifest.doc["spec"]["selector"])
            .into_iter()
            .collect();
        let selected: Vec<&PodTemplate> = templates
            .iter()
            .filter(|t| {
                !selector.is_empty()
                    && selector
                        .iter()
                        .all(|(k, v)| t.labels.get(k).is_some_and(|l| l == v))
            })
            .collect();
        if selected.is_empty() {
            problems.push(format!(
                "{origin}: its selector {selector:?} matches no pod template"
            ));
        }
        for port in items(&manifest.doc["spec"]["ports"]) {
            let target = port.get("targetPort").unwrap_or(&port["port"]);
            for template in &selected {
                for (role, container) in &template.containers {
                    let Some(role) = role else { continue };
                    let expected = role.program.default_port_or_record(problems);
                    match resolve_port(target, &container.named_ports) {
                        Some(p) if p == expected => {}
                        other => problems.push(format!(
                            "{origin}: targetPort {} reaches {} in {}, \
                             but {} listens on {expected}",
                            scalar(target).unwrap_or_default(),
                            port_text(other),
                            container.container.origin,
                            role.program
                        )),
                    }
                }
            }
        }
    }
}

/// kustomization.yaml lists every manifest, and only existing ones.
fn check_kustomization(manifests: &[Manifest], deploy: &Path, problems: &mut Problems) {
    let Some(kustomization) = manifests.iter().find(|m| m.kind() == "Kustomization") else {
        problems.push("deploy/: no kustomization.yaml".to_owned());
        return;
    };
    let file = kustomization.file();
    let listed: BTreeSet<String> = strings(&kustomization.doc["resources"])
        .into_iter()
        .collect();
    let dir = kustomization.path.parent().unwrap_or(deploy);
    for path in files_under(deploy, &["yaml", "yml"]) {
        let Ok(rel) = path.strip_prefix(dir) else {
            continue;
        };
        let rel = rel.display().to_string();
        if rel != "kustomization.yaml" && !listed.contains(&rel) {
            problems.push(format!("{file}: does not list {rel} under resources"));
        }
    }
    for entry in &listed {
        if !dir.join(entry).exists() {
            problems.push(format!("{file}: lists {entry}, which does not exist"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real manifests with `from` replaced by `to` in `file`, checked.
    fn check_broken(file: &str, from: &str, to: &str) -> Problems {
        let mut problems = Problems::default();
        let mut files = read_files(&mut problems);
        let (_, text) = files
            .iter_mut()
            .find(|(path, _)| path.ends_with(file))
            .unwrap_or_else(|| panic!("no deploy/{file}"));
        assert!(text.contains(from), "deploy/{file} no longer has {from:?}");
        *text = text.replacen(from, to, 1);
        let manifests = parse(&files, &mut problems);
        check_manifests(&manifests, &deploy_dir(), &mut problems);
        problems
    }

    #[test]
    fn broken_manifests_are_reported() {
        let env = check_broken(
            "worker-deployment.yaml",
            "name: WORKER_ADDR",
            "name: WORKER_ADR",
        );
        assert!(
            env.mentions(&["Deployment/worker", "sets WORKER_ADR"]),
            "{env:?}"
        );

        let config = check_broken(
            "configmap.yaml",
            "WORKER_CONCURRENCY:",
            "WORKER_CONCURRENCIES:",
        );
        assert!(
            config.mentions(&["Deployment/worker", "sets WORKER_CONCURRENCIES"]),
            "{config:?}"
        );

        let probe = check_broken("ingest-statefulset.yaml", "path: /readyz", "path: /ready");
        assert!(
            probe.mentions(&["StatefulSet/ingest", "readinessProbe GETs \"/ready\""]),
            "{probe:?}"
        );

        let secret = check_broken("migrate-job.yaml", "key: DATABASE_URL", "key: DATABASE_URI");
        assert!(
            secret.mentions(&["key `DATABASE_URI`", "not defined under deploy/"]),
            "{secret:?}"
        );

        let service = check_broken("worker-service.yaml", "targetPort: ", "targetPort: 9");
        assert!(
            service.mentions(&["Service/worker", "but worker listens on"]),
            "{service:?}"
        );

        let listed = check_broken("kustomization.yaml", "  - pdb.yaml\n", "");
        assert!(listed.mentions(&["does not list pdb.yaml"]), "{listed:?}");

        let migrate = check_broken(
            "worker-deployment.yaml",
            "value: \"false\"",
            "value: \"true\"",
        );
        assert!(
            migrate.mentions(&["Deployment/worker", "WORKER_AUTO_MIGRATE"]),
            "{migrate:?}"
        );
    }
}
