//! One container, whichever file described it (a compose service or a pod
//! template's container), and the checks every platform shares: the command
//! names a real program that accepts it, every variable set is one that
//! program reads, with a value its command line accepts, and a serving
//! container listens on the program's default port on every interface.

use crate::problems::Problems;
use crate::programs::{binaries, Program, Role};
use std::collections::BTreeMap;
use std::net::SocketAddr;

pub struct Container {
    /// Where it is described, for messages.
    pub origin: String,
    pub argv: Vec<String>,
    /// Variable → literal value when known (not from a Secret or the host).
    pub env: BTreeMap<String, Option<String>>,
    /// Ports inside the container.
    pub ports: Vec<u16>,
}

impl Container {
    /// Runs the shared checks; returns the role when the command is
    /// understood.
    pub fn check(&self, problems: &mut Problems) -> Option<Role> {
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

        let role = self.parse_command_line(program, first, problems)?;
        self.check_listening(program, &role, problems);
        Some(role)
    }

    /// The literal values go through clap as flags: a value the program
    /// would refuse at start is refused here. Returns the subcommand path.
    fn parse_command_line(
        &self,
        program: Program,
        first: &str,
        problems: &mut Problems,
    ) -> Option<Role> {
        let mut argv = vec![first.to_owned()];
        for (var, value) in &self.env {
            let Some(value) = value else { continue };
            if let Some(long) = program.long_flag_of(var) {
                argv.push(format!("--{long}={value}"));
            }
        }
        argv.extend(self.argv.iter().skip(1).cloned());
        let matches = match program.command().try_get_matches_from(&argv) {
            Ok(matches) => matches,
            Err(e) => {
                let message = e.to_string();
                problems.push(format!(
                    "{}: {program} would refuse to start with this command and environment: {}",
                    self.origin,
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
        Some(Role {
            program,
            subcommands,
        })
    }

    /// A serving role sets its address to the default port on every
    /// interface and declares that port; a one-shot role declares none.
    fn check_listening(&self, program: Program, role: &Role, problems: &mut Problems) {
        let origin = &self.origin;
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(argv: &[&str], env: &[(&str, Option<&str>)], ports: &[u16]) -> Problems {
        let container = Container {
            origin: "test".to_owned(),
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
            ports: ports.to_vec(),
        };
        let mut problems = Problems::default();
        container.check(&mut problems);
        problems
    }

    #[test]
    fn each_shared_rule_reports_a_problem() {
        let port = Program::Worker.default_port().unwrap();
        let addr = format!("0.0.0.0:{port}");
        assert!(worker(&["worker"], &[("WORKER_ADDR", Some(&addr))], &[port]).is_empty());

        assert!(worker(&[], &[], &[]).mentions(&["no command"]));
        assert!(worker(&["postgres"], &[], &[]).mentions(&["does not run one of"]));
        let unread = [("WORKER_ADDR", Some(addr.as_str())), ("INGEST_ADDR", None)];
        assert!(worker(&["worker"], &unread, &[port]).mentions(&["sets INGEST_ADDR"]));
        assert!(worker(&["worker", "no-such-subcommand"], &[], &[])
            .mentions(&["would refuse to start"]));
        let bad_value = [("WORKER_ADDR", Some("not an address"))];
        assert!(worker(&["worker"], &bad_value, &[port]).mentions(&["would refuse to start"]));
        assert!(worker(&["worker"], &[], &[port]).mentions(&["WORKER_ADDR is not set"]));
        let unknown = [("WORKER_ADDR", None)];
        assert!(worker(&["worker"], &unknown, &[port]).mentions(&["no literal value"]));
        let loopback = format!("127.0.0.1:{port}");
        let loopback = [("WORKER_ADDR", Some(loopback.as_str()))];
        assert!(worker(&["worker"], &loopback, &[port]).mentions(&["one address only"]));
        let other_port = [("WORKER_ADDR", Some("0.0.0.0:1"))];
        assert!(worker(&["worker"], &other_port, &[port]).mentions(&["uses port 1"]));
        let set = [("WORKER_ADDR", Some(addr.as_str()))];
        assert!(worker(&["worker"], &set, &[]).mentions(&["declares no port"]));
        assert!(worker(&["worker"], &set, &[port, 1]).mentions(&["container port 1"]));
        assert!(worker(&["worker", "migrate"], &[], &[port]).mentions(&["runs once"]));
    }
}
