//! What the code defines, so that the ops files are compared with the real
//! thing. Taken from the code at run time: the two programs' binaries, the
//! environment variables their clap definitions read (plus the standard
//! `RUST_LOG` / `OTEL_*` ones) and their default listen ports. Written here:
//! the probe paths (as `service_kit::probes::mount` routes them) and the
//! roles (`ingest`, `worker`, `worker migrate`) every deployment runs.

use crate::problems::Problems;
use clap::CommandFactory;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;

/// Standard OpenTelemetry variables that the SDK and `service_kit::telemetry`
/// honour; allowed on both programs besides their own.
pub const OTEL_VARS: &[&str] = &[
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
pub const LOG_VARS: &[&str] = &["RUST_LOG"];

/// Where both programs answer liveness: ingest and worker both mount
/// `service_kit::probes::mount`, which routes `/healthz`, `/readyz` and
/// `/metrics`.
pub const LIVENESS_PATH: &str = "/healthz";
/// Where both programs answer readiness (the same mount).
pub const READINESS_PATH: &str = "/readyz";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Program {
    Ingest,
    Worker,
}

impl Program {
    pub const ALL: [Program; 2] = [Program::Ingest, Program::Worker];

    pub fn command(self) -> clap::Command {
        match self {
            Program::Ingest => ingest::config::IngestArgs::command(),
            Program::Worker => worker::config::WorkerCli::command(),
        }
    }

    /// The binary's name, as its command line names itself.
    pub fn binary(self) -> String {
        self.command().get_name().to_owned()
    }

    /// The program a command's first word runs: `/usr/local/bin/worker`
    /// names the same program as `worker`.
    pub fn from_binary(name: &str) -> Option<Program> {
        let name = name.rsplit('/').next().unwrap_or(name);
        Program::ALL.into_iter().find(|p| p.binary() == name)
    }

    /// The variable holding the listen address.
    pub fn addr_var(self) -> &'static str {
        match self {
            Program::Ingest => "INGEST_ADDR",
            Program::Worker => "WORKER_ADDR",
        }
    }

    /// Every variable the program's command line reads, in every subcommand.
    pub fn clap_env_vars(self) -> BTreeSet<String> {
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
    pub fn allowed_env_vars(self) -> BTreeSet<String> {
        let mut vars = self.clap_env_vars();
        vars.extend(OTEL_VARS.iter().chain(LOG_VARS).map(|v| (*v).to_owned()));
        vars
    }

    /// The variables both programs read: all an image-wide `ENV` may set.
    pub fn shared_env_vars() -> BTreeSet<String> {
        Program::Ingest
            .allowed_env_vars()
            .intersection(&Program::Worker.allowed_env_vars())
            .cloned()
            .collect()
    }

    /// The long flag of the top-level argument read from `var`.
    pub fn long_flag_of(self, var: &str) -> Option<String> {
        self.command()
            .get_arguments()
            .find(|arg| arg.get_env() == Some(OsStr::new(var)))
            .and_then(|arg| arg.get_long())
            .map(str::to_owned)
    }

    /// The port of the clap default of `INGEST_ADDR` / `WORKER_ADDR`.
    pub fn default_port(self) -> Result<u16, String> {
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

    /// The default port, or 0 with the reason recorded.
    pub fn default_port_or_record(self, problems: &mut Problems) -> u16 {
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

/// The binaries of the image, as their command lines name them.
pub fn binaries() -> Vec<String> {
    Program::ALL.iter().map(|p| p.binary()).collect()
}

/// What a container runs: a program and its subcommand path (`[]` serves,
/// `["migrate"]` is `worker migrate`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Role {
    pub program: Program,
    pub subcommands: Vec<String>,
}

impl Role {
    pub fn serves(&self) -> bool {
        self.subcommands.is_empty()
    }

    pub fn is_migration(&self) -> bool {
        self.program == Program::Worker && self.subcommands == ["migrate"]
    }

    /// A serving `worker`: the one that must not migrate by itself.
    pub fn is_serving_worker(&self) -> bool {
        self.program == Program::Worker && self.serves()
    }

    /// The roles every deployment must have.
    pub fn required() -> Vec<Role> {
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

/// Records each required role that nothing in `origin` runs.
pub fn check_roles_present(origin: &str, roles: &BTreeSet<Role>, problems: &mut Problems) {
    for role in Role::required() {
        if !roles.contains(&role) {
            problems.push(format!("{origin}: nothing runs {role}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_defines_what_the_checks_rely_on() {
        for program in Program::ALL {
            assert_eq!(program.binary(), program.to_string());
            assert_eq!(Program::from_binary(&program.binary()), Some(program));
            let path = format!("/usr/local/bin/{}", program.binary());
            assert_eq!(Program::from_binary(&path), Some(program));
            assert!(
                program.default_port().is_ok(),
                "{:?}",
                program.default_port()
            );
            assert!(program.clap_env_vars().contains(program.addr_var()));
            assert!(program.long_flag_of(program.addr_var()).is_some());
        }
        assert_eq!(Program::from_binary("postgres"), None);
        assert_ne!(
            Program::Ingest.default_port().ok(),
            Program::Worker.default_port().ok()
        );
        assert!(Program::shared_env_vars().contains("RUST_LOG"));
        assert!(!Program::shared_env_vars().contains("WORKER_ADDR"));
    }

    #[test]
    fn a_missing_role_is_reported() {
        let mut problems = Problems::default();
        let roles: BTreeSet<Role> = Role::required().into_iter().skip(1).collect();
        check_roles_present("x.yml", &roles, &mut problems);
        assert!(problems.mentions(&["x.yml: nothing runs `ingest`"]));
        assert_eq!(problems.iter().count(), 1);
    }
}
