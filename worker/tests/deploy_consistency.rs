//! The operations files agree with the code. `docker-compose.yml`, every
//! manifest under `deploy/` and the `Dockerfile` may only set environment
//! variables the program in that container reads (taken from its clap
//! definition at run time), must listen on and probe the programs' default
//! ports, probe `/healthz` (liveness) and `/readyz` (readiness), and run the
//! real binaries. The monitoring files under `ops/` must parse and name only
//! metrics the code records. Reads files; starts nothing.

use clap::CommandFactory;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

/// Standard OpenTelemetry variables that the SDK and `service_kit::telemetry`
/// honour; allowed on both programs besides their own.
const OTEL_VARS: &[&str] = &[
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
];
/// Read by the log filter of both programs.
const LOG_VARS: &[&str] = &["RUST_LOG"];

const LIVENESS_PATH: &str = "/healthz";
const READINESS_PATH: &str = "/readyz";

// ---------------------------------------------------------------------------
// The programs, as the code defines them.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Program {
    Ingest,
    Worker,
}

impl Program {
    const ALL: [Program; 2] = [Program::Ingest, Program::Worker];

    fn command(self) -> clap::Command {
        match self {
            Program::Ingest => ingest::config::IngestArgs::command(),
            Program::Worker => worker::config::WorkerCli::command(),
        }
    }

    /// The binary's name, as its command line names itself.
    fn binary(self) -> String {
        self.command().get_name().to_owned()
    }

    fn from_binary(name: &str) -> Option<Program> {
        // `/usr/local/bin/worker` names the same program as `worker`.
        let name = name.rsplit('/').next().unwrap_or(name);
        Program::ALL.into_iter().find(|p| p.binary() == name)
    }

    /// The variable holding the listen address.
    fn addr_var(self) -> &'static str {
        match self {
            Program::Ingest => "INGEST_ADDR",
            Program::Worker => "WORKER_ADDR",
        }
    }

    /// Every variable the program's command line reads, in every subcommand.
    fn clap_env_vars(self) -> BTreeSet<String> {
        fn collect(command: &clap::Command, vars: &mut BTreeSet<String>) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    vars.insert(env.to_string_lossy().into_owned());
                }
            }
            for sub in command.get_subcommands() {
                collect(sub, vars);
            }
        }
        let mut vars = BTreeSet::new();
        collect(&self.command(), &mut vars);
        vars
    }

    /// What may be set in this program's container.
    fn allowed_env_vars(self) -> BTreeSet<String> {
        let mut vars = self.clap_env_vars();
        vars.extend(OTEL_VARS.iter().chain(LOG_VARS).map(|v| (*v).to_owned()));
        vars
    }

    /// The port of the clap default of `INGEST_ADDR` / `WORKER_ADDR`.
    fn default_port(self) -> Result<u16, String> {
        let var = self.addr_var();
        let command = self.command();
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_env() == Some(OsStr::new(var)))
            .ok_or_else(|| format!("{self}'s command line has no argument read from {var}"))?;
        let default = arg
            .get_default_values()
            .first()
            .and_then(|value| value.to_str())
            .ok_or_else(|| format!("{var} has no default value in {self}'s command line"))?;
        default
            .parse::<SocketAddr>()
            .map(|addr| addr.port())
            .map_err(|e| format!("the default of {var}, {default:?}, is not an address: {e}"))
    }

    fn default_port_or_record(self, problems: &mut Problems) -> u16 {
        self.default_port().unwrap_or_else(|e| {
            problems.push(e);
            0
        })
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Program::Ingest => "ingest",
            Program::Worker => "worker",
        })
    }
}

/// What a container runs: a program and its subcommand path (`[]` serves,
/// `["migrate"]` is `worker migrate`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Role {
    program: Program,
    subcommands: Vec<String>,
}

impl Role {
    fn serves(&self) -> bool {
        self.subcommands.is_empty()
    }

    fn is_migration(&self) -> bool {
        self.program == Program::Worker && self.subcommands == ["migrate"]
    }

    /// The roles every deployment must have.
    fn required() -> Vec<Role> {
        vec![
            Role {
                program: Program::Ingest,
                subcommands: vec![],
            },
            Role {
                program: Program::Worker,
                subcommands: vec![],
            },
            Role {
                program: Program::Worker,
                subcommands: vec!["migrate".to_owned()],
            },
        ]
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}", self.program)?;
        for sub in &self.subcommands {
            write!(f, " {sub}")?;
        }
        f.write_str("`")
    }
}

// ---------------------------------------------------------------------------
// Problems are collected, then reported together.

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    fn assert_none(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: {} problem(s):\n  - {}\n",
            self.0.len(),
            self.0.join("\n  - ")
        );
    }
}

// ---------------------------------------------------------------------------
// Files.

fn repo_root() -> PathBuf {
    let worker_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    worker_dir.parent().unwrap_or(worker_dir).to_path_buf()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn relative(path: &Path) -> String {
    let root = repo_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every document of a YAML file, with merge keys (`<<: *anchor`) applied.
fn load_yaml(path: &Path) -> Result<Vec<Yaml>, String> {
    let text = read(path)?;
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| format!("{} is not valid YAML: {e}", relative(path)))?;
    Ok(docs.into_iter().map(apply_merge_keys).collect())
}

fn apply_merge_keys(node: Yaml) -> Yaml {
    match node {
        Yaml::Hash(hash) => {
            let mut own = Hash::new();
            let mut merged = Vec::new();
            for (key, value) in hash {
                let value = apply_merge_keys(value);
                if key.as_str() == Some("<<") {
                    match value {
                        Yaml::Hash(map) => merged.push(map),
                        Yaml::Array(maps) => {
                            merged.extend(maps.into_iter().filter_map(|m| match m {
                                Yaml::Hash(map) => Some(map),
                                _ => None,
                            }))
                        }
                        _ => {}
                    }
                } else {
                    own.insert(key, value);
                }
            }
            // Keys written in the mapping win; then the first merged mapping.
            for map in merged {
                for (key, value) in map {
                    if !own.contains_key(&key) {
                        own.insert(key, value);
                    }
                }
            }
            Yaml::Hash(own)
        }
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(apply_merge_keys).collect()),
        other => other,
    }
}

fn files_under(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(OsStr::to_str)
                .is_some_and(|ext| extensions.contains(&ext))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A scalar as text; `None` for null, mappings and sequences.
fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(node: &Yaml) -> Vec<String> {
    match node {
        Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

fn hash_entries(node: &Yaml) -> Vec<(String, &Yaml)> {
    node.as_hash()
        .map(|hash| {
            hash.iter()
                .filter_map(|(k, v)| scalar(k).map(|k| (k, v)))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// One container, whichever file described it.

struct Container {
    /// Where it is described, for messages.
    origin: String,
    argv: Vec<String>,
    /// Variable → literal value when known (not from a Secret or the host).
    env: BTreeMap<String, Option<String>>,
    /// Ports inside the container.
    ports: Vec<u16>,
}

impl Container {
    /// Checks what every platform shares: the command names a real program
    /// its command line accepts, every variable set is one it reads (with a
    /// value it accepts), and a serving container listens on the default port
    /// on every interface. Returns the role when the command is understood.
    fn check(&self, problems: &mut Problems) -> Option<Role> {
        let origin = &self.origin;
        let Some(first) = self.argv.first() else {
            problems.push(format!(
                "{origin}: no command; the image has no ENTRYPOINT, so name the program ({})",
                binaries().join(" or ")
            ));
            return None;
        };
        let Some(program) = Program::from_binary(first) else {
            problems.push(format!(
                "{origin}: command {:?} does not run one of the image's programs ({})",
                self.argv.join(" "),
                binaries().join(", ")
            ));
            return None;
        };

        let allowed = program.allowed_env_vars();
        for var in self.env.keys() {
            if !allowed.contains(var) {
                problems.push(format!(
                    "{origin}: sets {var}, which {program} does not read (its command line reads {}; \
                     RUST_LOG and the standard OTEL_* variables are allowed too)",
                    program.clap_env_vars().into_iter().collect::<Vec<_>>().join(", ")
                ));
            }
        }

        // The literal values go through clap as flags: a value the program
        // would refuse at start is refused here.
        let command = program.command();
        let mut argv = vec![first.clone()];
        for (var, value) in &self.env {
            let Some(value) = value else { continue };
            let long = command
                .get_arguments()
                .find(|arg| arg.get_env() == Some(OsStr::new(var)))
                .and_then(|arg| arg.get_long());
            if let Some(long) = long {
                argv.push(format!("--{long}={value}"));
            }
        }
        argv.extend(self.argv.iter().skip(1).cloned());
        let matches = match command.try_get_matches_from(&argv) {
            Ok(matches) => matches,
            Err(e) => {
                let message = e.to_string();
                problems.push(format!(
                    "{origin}: {program} would refuse to start with this command and environment: {}",
                    message.lines().next().unwrap_or_default()
                ));
                return None;
            }
        };
        let mut subcommands = Vec::new();
        let mut level = &matches;
        while let Some((name, sub)) = level.subcommand() {
            subcommands.push(name.to_owned());
            level = sub;
        }
        let role = Role {
            program,
            subcommands,
        };

        let port = program.default_port_or_record(problems);
        if role.serves() {
            let var = program.addr_var();
            match self.env.get(var) {
                None => problems.push(format!(
                    "{origin}: {var} is not set; the default listens on loopback only, \
                     unreachable from probes and other containers (set it to 0.0.0.0:{port})"
                )),
                Some(None) => problems.push(format!(
                    "{origin}: {var} has no literal value here; set it to 0.0.0.0:{port}"
                )),
                Some(Some(value)) => match value.parse::<SocketAddr>() {
                    Ok(addr) if !addr.ip().is_unspecified() => problems.push(format!(
                        "{origin}: {var}={value} listens on one address only; use 0.0.0.0:{port}"
                    )),
                    Ok(addr) if addr.port() != port => problems.push(format!(
                        "{origin}: {var}={value} uses port {}, but {program}'s default port is {port}",
                        addr.port()
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{origin}: {var}={value}: {e}")),
                },
            }
            if self.ports.is_empty() {
                problems.push(format!(
                    "{origin}: {role} serves on port {port} but the container declares no port"
                ));
            }
        } else if !self.ports.is_empty() {
            problems.push(format!(
                "{origin}: {role} runs once and listens on nothing, yet declares ports {:?}",
                self.ports
            ));
        }
        for declared in &self.ports {
            if *declared != port {
                problems.push(format!(
                    "{origin}: container port {declared} is not {program}'s port {port} \
                     (the default of {})",
                    program.addr_var()
                ));
            }
        }
        Some(role)
    }
}

fn binaries() -> Vec<String> {
    Program::ALL.iter().map(|p| p.binary()).collect()
}

fn check_roles_present(origin: &str, roles: &BTreeSet<Role>, problems: &mut Problems) {
    for role in Role::required() {
        if !roles.contains(&role) {
            problems.push(format!("{origin}: nothing runs {role}"));
        }
    }
}

// ---------------------------------------------------------------------------
// docker compose

/// `${VAR:-default}` and `${VAR-default}` become the default; anything taken
/// from the host alone (`$VAR`, `${VAR}`, `${VAR:?error}`) makes the value
/// unknown.
fn interpolate(value: &str) -> Option<String> {
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

struct ComposeService {
    name: String,
    role: Option<Role>,
}

fn compose_path() -> PathBuf {
    repo_root().join("docker-compose.yml")
}

/// Checks the compose file; returns the services that run the image.
fn check_compose(problems: &mut Problems) -> Vec<ComposeService> {
    let path = compose_path();
    let file = relative(&path);
    let doc = match load_yaml(&path) {
        Ok(docs) => docs.into_iter().next().unwrap_or(Yaml::Null),
        Err(e) => {
            problems.push(e);
            return Vec::new();
        }
    };
    let services = hash_entries(&doc["services"]);
    if services.is_empty() {
        problems.push(format!("{file}: no services"));
    }

    // The image's services: those built here, and those using the same image.
    let built_images: BTreeSet<String> = services
        .iter()
        .filter(|(_, s)| !s["build"].is_badvalue())
        .filter_map(|(_, s)| scalar(&s["image"]))
        .collect();
    let ours = |service: &Yaml| {
        !service["build"].is_badvalue()
            || scalar(&service["image"]).is_some_and(|image| built_images.contains(&image))
    };

    let mut checked = Vec::new();
    for (name, service) in &services {
        if !ours(service) {
            continue;
        }
        let origin = format!("{file} service `{name}`");
        if !service["env_file"].is_badvalue() {
            problems.push(format!(
                "{origin}: uses env_file, which hides the variables from this check; \
                 list them under `environment`"
            ));
        }
        let argv = match &service["command"] {
            Yaml::Array(_) => strings(&service["command"]),
            other => scalar(other)
                .map(|line| line.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default(),
        };
        let mut env = BTreeMap::new();
        match &service["environment"] {
            Yaml::Array(items) => {
                for item in items.iter().filter_map(scalar) {
                    match item.split_once('=') {
                        Some((k, v)) => env.insert(k.to_owned(), interpolate(v)),
                        None => env.insert(item, None),
                    };
                }
            }
            node @ Yaml::Hash(_) => {
                for (k, v) in hash_entries(node) {
                    env.insert(k, scalar(v).and_then(|v| interpolate(&v)));
                }
            }
            _ => {}
        }
        let mut ports = Vec::new();
        if let Some(items) = service["ports"].as_vec() {
            for item in items {
                let target = match item {
                    Yaml::Hash(_) => scalar(&item["target"]),
                    other => scalar(other).and_then(|spec| {
                        let spec = spec.split('/').next().unwrap_or_default().to_owned();
                        spec.rsplit(':').next().map(str::to_owned)
                    }),
                };
                match target.as_deref().map(str::parse::<u16>) {
                    Some(Ok(port)) => ports.push(port),
                    _ => problems.push(format!("{origin}: cannot read port {item:?}")),
                }
            }
        }
        let container = Container {
            origin: origin.clone(),
            argv,
            env,
            ports,
        };
        let role = container.check(problems);

        if let Some(role) = &role {
            if role.serves() {
                // (c) the health check probes liveness on the program's port.
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
        }
        checked.push(ComposeService {
            name: name.clone(),
            role,
        });
    }

    // The worker waits for `worker migrate` and does not migrate itself.
    let migrations: Vec<&str> = checked
        .iter()
        .filter(|s| s.role.as_ref().is_some_and(Role::is_migration))
        .map(|s| s.name.as_str())
        .collect();
    for service in &checked {
        let Some(role) = &service.role else { continue };
        if role.program != Program::Worker || !role.serves() {
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

    let roles: BTreeSet<Role> = checked.iter().filter_map(|s| s.role.clone()).collect();
    check_roles_present(&file, &roles, problems);
    checked
}

#[test]
fn compose_runs_the_programs_as_the_code_defines_them() {
    let mut problems = Problems::default();
    check_compose(&mut problems);
    problems.assert_none("docker-compose.yml does not match the code");
}

// ---------------------------------------------------------------------------
// Kubernetes

struct Manifest {
    file: String,
    doc: Yaml,
}

impl Manifest {
    fn kind(&self) -> String {
        scalar(&self.doc["kind"]).unwrap_or_default()
    }

    fn name(&self) -> String {
        scalar(&self.doc["metadata"]["name"]).unwrap_or_default()
    }

    fn origin(&self) -> String {
        format!("{} {}/{}", self.file, self.kind(), self.name())
    }

    /// The pod template of a workload.
    fn pod_template(&self) -> Option<&Yaml> {
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

fn load_manifests(problems: &mut Problems) -> Vec<Manifest> {
    let dir = repo_root().join("deploy");
    let files = files_under(&dir, &["yaml", "yml"]);
    if files.is_empty() {
        problems.push("deploy/ has no YAML files".to_owned());
    }
    let mut manifests = Vec::new();
    for path in files {
        match load_yaml(&path) {
            Ok(docs) => {
                manifests.extend(docs.into_iter().filter(|doc| !doc.is_null()).map(|doc| {
                    Manifest {
                        file: relative(&path),
                        doc,
                    }
                }))
            }
            Err(e) => problems.push(e),
        }
    }
    manifests
}

/// ConfigMap and Secret keys by name; values only for ConfigMaps.
#[derive(Default)]
struct EnvSources {
    config_maps: BTreeMap<String, BTreeMap<String, Option<String>>>,
    secrets: BTreeMap<String, BTreeMap<String, Option<String>>>,
}

impl EnvSources {
    fn from(manifests: &[Manifest]) -> Self {
        let mut sources = EnvSources::default();
        for manifest in manifests {
            match manifest.kind().as_str() {
                "ConfigMap" => {
                    let mut keys = BTreeMap::new();
                    for (k, v) in hash_entries(&manifest.doc["data"]) {
                        keys.insert(k, scalar(v));
                    }
                    for (k, _) in hash_entries(&manifest.doc["binaryData"]) {
                        keys.insert(k, None);
                    }
                    sources.config_maps.insert(manifest.name(), keys);
                }
                "Secret" => {
                    let mut keys = BTreeMap::new();
                    for field in ["data", "stringData"] {
                        for (k, _) in hash_entries(&manifest.doc[field]) {
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
struct KubeContainer {
    container: Container,
    named_ports: BTreeMap<String, u16>,
    spec: Yaml,
}

fn kube_container(
    origin: String,
    spec: &Yaml,
    sources: &EnvSources,
    problems: &mut Problems,
) -> KubeContainer {
    let mut argv = strings(&spec["command"]);
    argv.extend(strings(&spec["args"]));

    let mut env = BTreeMap::new();
    for from in spec["envFrom"].as_vec().into_iter().flatten() {
        let prefix = scalar(&from["prefix"]).unwrap_or_default();
        let (kind, name, keys) = if let Some(name) = scalar(&from["configMapRef"]["name"]) {
            let keys = sources.config_maps.get(&name);
            ("ConfigMap", name, keys)
        } else if let Some(name) = scalar(&from["secretRef"]["name"]) {
            let keys = sources.secrets.get(&name);
            ("Secret", name, keys)
        } else {
            problems.push(format!("{origin}: cannot read envFrom entry {from:?}"));
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
    for var in spec["env"].as_vec().into_iter().flatten() {
        let Some(name) = scalar(&var["name"]) else {
            problems.push(format!("{origin}: env entry without a name: {var:?}"));
            continue;
        };
        let value_from = &var["valueFrom"];
        let value = if value_from.is_badvalue() {
            scalar(&var["value"])
        } else {
            for (field, kind, objects) in [
                ("secretKeyRef", "Secret", &sources.secrets),
                ("configMapKeyRef", "ConfigMap", &sources.config_maps),
            ] {
                let reference = &value_from[field];
                if let (Some(object), Some(key)) =
                    (scalar(&reference["name"]), scalar(&reference["key"]))
                {
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
            None
        };
        env.insert(name, value);
    }

    let mut ports = Vec::new();
    let mut named_ports = BTreeMap::new();
    for port in spec["ports"].as_vec().into_iter().flatten() {
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
            None => problems.push(format!("{origin}: port without containerPort: {port:?}")),
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

/// A port given as a number, a numeric string or a name of the container's.
fn resolve_port(port: &Yaml, named: &BTreeMap<String, u16>) -> Option<u16> {
    match port {
        Yaml::Integer(n) => u16::try_from(*n).ok(),
        other => {
            let text = scalar(other)?;
            text.parse::<u16>()
                .ok()
                .or_else(|| named.get(&text).copied())
        }
    }
}

fn port_text(port: Option<u16>) -> String {
    port.map_or_else(|| "no port of the container".to_owned(), |p| p.to_string())
}

struct PodTemplate {
    labels: BTreeMap<String, String>,
    containers: Vec<(Option<Role>, KubeContainer)>,
}

#[test]
fn kubernetes_manifests_run_the_programs_as_the_code_defines_them() {
    let mut problems = Problems::default();
    let manifests = load_manifests(&mut problems);
    let sources = EnvSources::from(&manifests);

    let mut templates = Vec::new();
    for manifest in &manifests {
        let Some(template) = manifest.pod_template() else {
            continue;
        };
        let labels = hash_entries(&template["metadata"]["labels"])
            .into_iter()
            .filter_map(|(k, v)| scalar(v).map(|v| (k, v)))
            .collect();
        let mut containers = Vec::new();
        for field in ["initContainers", "containers"] {
            for spec in template["spec"][field].as_vec().into_iter().flatten() {
                let name = scalar(&spec["name"]).unwrap_or_default();
                let origin = format!("{} container `{name}`", manifest.origin());
                let container = kube_container(origin, spec, &sources, &mut problems);
                let role = container.container.check(&mut problems);
                if let Some(role) = &role {
                    check_kube_probes(role, &container, &mut problems);
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
    check_roles_present("deploy/", &roles, &mut problems);
    if roles.iter().any(Role::is_migration) {
        for (role, container) in templates.iter().flat_map(|t| &t.containers) {
            let serving_worker = role
                .as_ref()
                .is_some_and(|r| r.program == Program::Worker && r.serves());
            let auto_migrate = container.container.env.get("WORKER_AUTO_MIGRATE");
            if serving_worker && auto_migrate != Some(&Some("false".to_owned())) {
                problems.push(format!(
                    "{}: set WORKER_AUTO_MIGRATE to \"false\"; the migration Job runs `worker migrate`",
                    container.container.origin
                ));
            }
        }
    }

    // Services send traffic to the program's port.
    for manifest in manifests.iter().filter(|m| m.kind() == "Service") {
        let origin = manifest.origin();
        let selector: BTreeMap<String, String> = hash_entries(&manifest.doc["spec"]["selector"])
            .into_iter()
            .filter_map(|(k, v)| scalar(v).map(|v| (k, v)))
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
        for port in manifest.doc["spec"]["ports"].as_vec().into_iter().flatten() {
            let target = if port["targetPort"].is_badvalue() {
                &port["port"]
            } else {
                &port["targetPort"]
            };
            for template in &selected {
                for (role, container) in &template.containers {
                    let Some(role) = role else { continue };
                    let expected = role.program.default_port_or_record(&mut problems);
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

    // kustomization.yaml lists every manifest, and only existing ones.
    let deploy = repo_root().join("deploy");
    match manifests.iter().find(|m| m.kind() == "Kustomization") {
        None => problems.push("deploy/: no kustomization.yaml".to_owned()),
        Some(kustomization) => {
            let listed: BTreeSet<String> = strings(&kustomization.doc["resources"])
                .into_iter()
                .collect();
            let kustomization_dir = repo_root().join(&kustomization.file);
            let kustomization_dir = kustomization_dir.parent().unwrap_or(&deploy);
            for path in files_under(&deploy, &["yaml", "yml"]) {
                let Ok(rel) = path.strip_prefix(kustomization_dir) else {
                    continue;
                };
                let rel = rel.display().to_string();
                if rel != "kustomization.yaml" && !listed.contains(&rel) {
                    problems.push(format!(
                        "{}: does not list {rel} under resources",
                        kustomization.file
                    ));
                }
            }
            for entry in &listed {
                if !kustomization_dir.join(entry).exists() {
                    problems.push(format!(
                        "{}: lists {entry}, which does not exist",
                        kustomization.file
                    ));
                }
            }
        }
    }

    problems.assert_none("deploy/ does not match the code");
}

/// (b), (c): a serving container's liveness probe is GET /healthz and its
/// readiness probe GET /readyz, both on the program's port.
fn check_kube_probes(role: &Role, container: &KubeContainer, problems: &mut Problems) {
    if !role.serves() {
        return;
    }
    let origin = &container.container.origin;
    let expected_port = role.program.default_port_or_record(problems);
    for (probe, path) in [
        ("livenessProbe", LIVENESS_PATH),
        ("readinessProbe", READINESS_PATH),
    ] {
        let get = &container.spec[probe]["httpGet"];
        if get.is_badvalue() {
            problems.push(format!(
                "{origin}: no {probe} with httpGet {path} on port {expected_port}"
            ));
            continue;
        }
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

// ---------------------------------------------------------------------------
// Dockerfile

/// Instructions, continuation lines joined and comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, rest) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((&current, ""));
                instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

#[test]
fn the_dockerfile_builds_and_ships_exactly_the_two_programs() {
    let mut problems = Problems::default();
    let root = repo_root();
    let text = match read(&root.join("Dockerfile")) {
        Ok(text) => text,
        Err(e) => {
            problems.push(e);
            problems.assert_none("Dockerfile");
            return;
        }
    };
    let expected: BTreeSet<String> = binaries().into_iter().collect();
    let instructions = dockerfile_instructions(&text);

    // The binaries' file names are the packages' binary names.
    match option_env!("CARGO_BIN_EXE_worker") {
        Some(path) if Path::new(path).file_stem() == Some(OsStr::new("worker")) => {}
        other => problems.push(format!(
            "the worker package builds no `worker` binary ({other:?})"
        )),
    }
    for program in Program::ALL {
        let manifest = root.join(program.to_string()).join("Cargo.toml");
        match read(&manifest) {
            Ok(toml) => {
                if !toml.contains(&format!("name = \"{}\"", program.binary()))
                    || toml.contains("[[bin]]")
                {
                    problems.push(format!(
                        "{}: expected package `{}` with its one default binary of the same name",
                        relative(&manifest),
                        program.binary()
                    ));
                }
            }
            Err(e) => problems.push(e),
        }
    }

    // Every `cargo build` builds exactly those packages, reproducibly.
    let mut builds = 0;
    for (_, run) in instructions.iter().filter(|(k, _)| k == "RUN") {
        let tokens: Vec<&str> = run.split_whitespace().collect();
        for start in 0..tokens.len().saturating_sub(1) {
            if tokens[start] != "cargo" || tokens[start + 1] != "build" {
                continue;
            }
            builds += 1;
            let args: Vec<&str> = tokens[start + 2..]
                .iter()
                .take_while(|t| !["&&", "||", ";", "|"].contains(t))
                .copied()
                .collect();
            let mut packages = BTreeSet::new();
            let mut iter = args.iter();
            while let Some(arg) = iter.next() {
                if *arg == "-p" || *arg == "--package" {
                    if let Some(package) = iter.next() {
                        packages.insert((*package).to_owned());
                    }
                } else if let Some(package) = arg.strip_prefix("--package=") {
                    packages.insert(package.to_owned());
                }
            }
            if packages != expected {
                problems.push(format!(
                    "Dockerfile: `cargo build {}` builds {packages:?}, expected {expected:?}",
                    args.join(" ")
                ));
            }
            for flag in ["--release", "--locked"] {
                if !args.contains(&flag) {
                    problems.push(format!(
                        "Dockerfile: `cargo build {}` lacks {flag}",
                        args.join(" ")
                    ));
                }
            }
        }
    }
    if builds == 0 {
        problems.push("Dockerfile: no `cargo build`".to_owned());
    }

    // The final stage: copies exactly those binaries, runs as non-root,
    // lets compose/Kubernetes choose the program, carries no secrets.
    let last_from = instructions
        .iter()
        .rposition(|(k, _)| k == "FROM")
        .unwrap_or(0);
    let runtime = &instructions[last_from..];
    let mut shipped = BTreeSet::new();
    for (_, copy) in runtime.iter().filter(|(k, _)| k == "COPY" || k == "ADD") {
        let words: Vec<&str> = copy
            .split_whitespace()
            .filter(|w| !w.starts_with("--"))
            .collect();
        let from_builder = copy.split_whitespace().any(|w| w.starts_with("--from="));
        let Some((dest, sources)) = words.split_last() else {
            continue;
        };
        for source in sources.iter().filter(|s| s.contains("target/")) {
            let name = source.rsplit('/').next().unwrap_or(source);
            shipped.insert(name.to_owned());
            if !from_builder || !source.contains("/release/") {
                problems.push(format!(
                    "Dockerfile: copies {source}, not a release build from the build stage"
                ));
            }
            if dest.trim_end_matches('/') != "/usr/local/bin" {
                problems.push(format!(
                    "Dockerfile: copies {name} to {dest}, expected /usr/local/bin/"
                ));
            }
        }
    }
    if shipped != expected {
        problems.push(format!(
            "Dockerfile: the runtime stage ships {shipped:?}, expected exactly {expected:?}"
        ));
    }
    if let Some((_, entrypoint)) = runtime.iter().find(|(k, _)| k == "ENTRYPOINT") {
        problems.push(format!(
            "Dockerfile: ENTRYPOINT {entrypoint} fixes one program; leave it unset so the command \
             names `ingest` or `worker`"
        ));
    }
    match runtime.iter().rfind(|(k, _)| k == "USER") {
        None => problems.push("Dockerfile: the runtime stage runs as root (no USER)".to_owned()),
        Some((_, user)) => {
            let uid = user.split(':').next().unwrap_or_default();
            // Numeric, so that Kubernetes' runAsNonRoot can verify it.
            if !uid.parse::<u32>().is_ok_and(|uid| uid != 0) {
                problems.push(format!(
                    "Dockerfile: USER {user} is not a numeric non-root uid"
                ));
            }
        }
    }
    let shared_vars: BTreeSet<String> = Program::Ingest
        .allowed_env_vars()
        .intersection(&Program::Worker.allowed_env_vars())
        .cloned()
        .collect();
    for (keyword, rest) in instructions
        .iter()
        .filter(|(k, _)| k == "ENV" || k == "ARG")
    {
        let names: Vec<&str> = if rest.contains('=') {
            rest.split_whitespace()
                .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
                .collect()
        } else {
            rest.split_whitespace().take(1).collect()
        };
        for name in names {
            let upper = name.to_ascii_uppercase();
            if ["TOKEN", "SECRET", "PASSWORD", "AMQP_URL", "DATABASE_URL"]
                .iter()
                .any(|s| upper.contains(s))
            {
                problems.push(format!(
                    "Dockerfile: {keyword} {name} bakes a secret into the image"
                ));
            } else if keyword == "ENV" && !shared_vars.contains(name) {
                problems.push(format!(
                    "Dockerfile: ENV {name} applies to both programs, but not both read it"
                ));
            }
        }
    }

    // The build context keeps out the build output and the repository.
    match read(&root.join(".dockerignore")) {
        Ok(ignore) => {
            let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
            for needed in ["target", ".git"] {
                if !lines.iter().any(|l| l.trim_matches('/') == needed) {
                    problems.push(format!(".dockerignore: does not exclude {needed}"));
                }
            }
        }
        Err(e) => problems.push(e),
    }

    problems.assert_none("Dockerfile does not match the code");
}

// ---------------------------------------------------------------------------
// Monitoring: Prometheus and Grafana files

/// Metric names the code records, with whether each is a histogram.
fn recorded_metrics() -> BTreeMap<String, bool> {
    let mut metrics = BTreeMap::new();
    for dir in [
        "ingest/src",
        "worker/src",
        "twilio-protocol/src",
        "queue-wire/src",
        "service-kit/src",
    ] {
        for path in files_under(&repo_root().join(dir), &["rs"]) {
            let Ok(source) = read(&path) else { continue };
            for (macro_name, histogram) in [
                ("counter!(", false),
                ("gauge!(", false),
                ("histogram!(", true),
            ] {
                for (at, _) in source.match_indices(macro_name) {
                    let rest = source[at + macro_name.len()..].trim_start();
                    if let Some(name) = rest
                        .strip_prefix('"')
                        .and_then(|r| r.split_once('"'))
                        .map(|(name, _)| name)
                    {
                        metrics.insert(name.to_owned(), histogram);
                    }
                }
            }
        }
    }
    metrics
}

/// Metric names a PromQL expression uses from this project's families.
fn metrics_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| {
            ["ingest_", "worker_", "rabbitmq_"]
                .iter()
                .any(|prefix| token.starts_with(prefix))
        })
        .map(str::to_owned)
        .collect()
}

fn is_recorded(name: &str, recorded: &BTreeMap<String, bool>) -> bool {
    if recorded.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| recorded.get(base) == Some(&true))
    })
}

fn json_exprs(node: &serde_json::Value, out: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                    _ => json_exprs(value, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| json_exprs(item, out)),
        _ => {}
    }
}

fn json_datasource_uids(node: &serde_json::Value, out: &mut BTreeSet<String>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(uid) = map
                .get("datasource")
                .and_then(|ds| ds.get("uid"))
                .and_then(|uid| uid.as_str())
            {
                out.insert(uid.to_owned());
            }
            map.values()
                .for_each(|value| json_datasource_uids(value, out));
        }
        serde_json::Value::Array(items) => items
            .iter()
            .for_each(|item| json_datasource_uids(item, out)),
        _ => {}
    }
}

#[test]
fn monitoring_files_parse_and_use_the_metrics_and_ports_the_code_has() {
    let mut problems = Problems::default();
    let ops = repo_root().join("ops");
    let recorded = recorded_metrics();
    if recorded.is_empty() {
        problems
            .push("found no metrics!/counter!/gauge!/histogram! calls in the sources".to_owned());
    }

    // Every YAML file parses; alert expressions use recorded metrics.
    let yaml_files = files_under(&ops, &["yml", "yaml"]);
    if yaml_files.is_empty() {
        problems.push("ops/ has no YAML files".to_owned());
    }
    let mut provisioned_uids = BTreeSet::new();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for path in &yaml_files {
        let docs = match load_yaml(path) {
            Ok(docs) => docs,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for doc in &docs {
            for group in doc["groups"].as_vec().into_iter().flatten() {
                for rule in group["rules"].as_vec().into_iter().flatten() {
                    if let Some(expr) = scalar(&rule["expr"]) {
                        exprs.push((relative(path), expr));
                    }
                }
            }
            for source in doc["datasources"].as_vec().into_iter().flatten() {
                if let Some(uid) = scalar(&source["uid"]) {
                    provisioned_uids.insert(uid);
                }
            }
        }
    }

    // Every dashboard parses; its queries use recorded metrics and the
    // provisioned data source.
    let dashboards = files_under(&ops, &["json"]);
    if dashboards.is_empty() {
        problems.push("ops/ has no Grafana dashboard (JSON)".to_owned());
    }
    for path in &dashboards {
        let parsed = read(path).and_then(|text| {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| format!("{} is not valid JSON: {e}", relative(path)))
        });
        let dashboard = match parsed {
            Ok(dashboard) => dashboard,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let mut found = Vec::new();
        json_exprs(&dashboard, &mut found);
        if found.is_empty() {
            problems.push(format!("{}: no queries", relative(path)));
        }
        exprs.extend(found.into_iter().map(|e| (relative(path), e)));
        let mut uids = BTreeSet::new();
        json_datasource_uids(&dashboard, &mut uids);
        for uid in uids.difference(&provisioned_uids) {
            if !uid.starts_with("${") {
                problems.push(format!(
                    "{}: uses data source uid {uid:?}, but ops/ provisions {provisioned_uids:?}",
                    relative(path)
                ));
            }
        }
    }
    for (file, expr) in &exprs {
        for metric in metrics_in(expr) {
            if !is_recorded(&metric, &recorded) {
                problems.push(format!(
                    "{file}: {metric} is not recorded by the code (it records {})",
                    recorded.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }

    // Prometheus scrapes each serving program of the compose file on its port.
    let mut compose_problems = Problems::default();
    let services = check_compose(&mut compose_problems);
    let prometheus = ops.join("prometheus/prometheus.yml");
    let config = load_yaml(&prometheus)
        .map(|docs| docs.into_iter().next().unwrap_or(Yaml::Null))
        .unwrap_or_else(|e| {
            problems.push(e);
            Yaml::Null
        });
    let mut scraped = BTreeSet::new();
    for job in config["scrape_configs"].as_vec().into_iter().flatten() {
        let path = scalar(&job["metrics_path"]).unwrap_or_else(|| "/metrics".to_owned());
        for target in job["static_configs"]
            .as_vec()
            .into_iter()
            .flatten()
            .flat_map(|c| strings(&c["targets"]))
        {
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
            let expected = role.program.default_port_or_record(&mut problems);
            if port.parse::<u16>().ok() != Some(expected) || path != "/metrics" {
                problems.push(format!(
                    "{}: scrapes {target}{path}, but {} serves /metrics on port {expected}",
                    relative(&prometheus),
                    role.program
                ));
            }
            scraped.insert(role.program);
        }
    }
    for program in Program::ALL {
        if !scraped.contains(&program) {
            problems.push(format!(
                "{}: no scrape target for the compose service running {program}",
                relative(&prometheus)
            ));
        }
    }
    for path in strings(&config["rule_files"]) {
        let dir = prometheus.parent().unwrap_or(&ops);
        if !dir.join(&path).exists() {
            problems.push(format!(
                "{}: rule file {path} does not exist",
                relative(&prometheus)
            ));
        }
    }

    problems.assert_none("ops/ does not match the code");
}
