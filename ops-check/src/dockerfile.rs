//! The `Dockerfile` builds and ships exactly the two programs: each
//! `cargo build` builds the `ingest` and `worker` packages with `--release
//! --locked`; the runtime stage copies exactly those release binaries into
//! `/usr/local/bin/`, has no ENTRYPOINT (compose and Kubernetes name the
//! program), runs as a numeric non-root user, and bakes in no secrets and
//! no variable that only one program reads; `.dockerignore` keeps `target`
//! and `.git` out of the build context. The packages themselves must build
//! one default binary named after the program (checked in [`crate::cargo`]),
//! which is what the image copies and what the manifests run.
//!
//! Parsing is parse-dockerfile's (actively maintained, complete: every
//! instruction, parser directives, heredocs, stages). dockerfile-parser has
//! had no release in years (heredocs unsupported, snafu 0.6), and
//! dockerfile-parser-rs rejects valid instructions such as HEALTHCHECK.

use crate::cargo;
use crate::files::{read, repo_root};
use crate::problems::Problems;
use crate::programs::{binaries, Program};
use parse_dockerfile::{Command, Instruction, Source};
use std::collections::BTreeSet;

/// Checks the real Dockerfile, `.dockerignore` and the programs' packages.
pub fn check(problems: &mut Problems) {
    let root = repo_root();
    match read(&root.join("Dockerfile")) {
        Ok(text) => check_dockerfile(&text, problems),
        Err(e) => problems.push(e),
    }
    match read(&root.join(".dockerignore")) {
        Ok(text) => check_dockerignore(&text, problems),
        Err(e) => problems.push(e),
    }
    cargo::check_program_packages(&root, problems);
}

/// Checks the text of a Dockerfile.
pub fn check_dockerfile(text: &str, problems: &mut Problems) {
    let dockerfile = match parse_dockerfile::parse(text) {
        Ok(dockerfile) => dockerfile,
        Err(e) => {
            problems.push(format!("Dockerfile does not parse: {e}"));
            return;
        }
    };
    let escape = dockerfile
        .parser_directives
        .escape
        .as_ref()
        .map_or('\\', |e| e.value.value);
    let expected: BTreeSet<String> = binaries().into_iter().collect();

    let mut builds = 0;
    for instruction in &dockerfile.instructions {
        if let Instruction::Run(run) = instruction {
            let mut words = command_words(&run.arguments, escape);
            for here_doc in &run.here_docs {
                words.extend(shell_words(&here_doc.value, escape));
            }
            builds += check_cargo_builds(&words, &expected, problems);
        }
    }
    if builds == 0 {
        problems.push("Dockerfile: no `cargo build`".to_owned());
    }

    match dockerfile.stages().last() {
        Some(runtime) => check_runtime_stage(runtime.instructions, &expected, problems),
        None => problems.push("Dockerfile: no stage".to_owned()),
    }

    let shared_vars = Program::shared_env_vars();
    for instruction in &dockerfile.instructions {
        let (keyword, arguments) = match instruction {
            Instruction::Env(env) => ("ENV", &env.arguments.value),
            Instruction::Arg(arg) => ("ARG", &arg.arguments.value),
            _ => continue,
        };
        let names: Vec<&str> = if arguments.contains('=') {
            arguments
                .split_whitespace()
                .filter_map(|pair| pair.split_once('=').map(|(k, _)| k))
                .collect()
        } else {
            arguments.split_whitespace().take(1).collect()
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
}

/// The words of a RUN: the exec form's array, or the shell form split on
/// whitespace with line continuations joined and comment lines dropped.
fn command_words(command: &Command<'_>, escape: char) -> Vec<String> {
    match command {
        Command::Exec(args) => args.value.iter().map(|a| a.value.to_string()).collect(),
        Command::Shell(text) => shell_words(text.value, escape),
        _ => Vec::new(),
    }
}

fn shell_words(text: &str, escape: char) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(i, line)| *i == 0 || !line.trim_start().starts_with('#'))
        .flat_map(|(_, line)| {
            let line = line.trim_end();
            line.strip_suffix(escape).unwrap_or(line).split_whitespace()
        })
        .map(str::to_owned)
        .collect()
}

/// Every `cargo build` among `words` builds exactly the programs'
/// packages, reproducibly. Returns how many there are.
fn check_cargo_builds(
    words: &[String],
    expected: &BTreeSet<String>,
    problems: &mut Problems,
) -> usize {
    let mut builds = 0;
    for start in 0..words.len().saturating_sub(1) {
        if words[start] != "cargo" || words[start + 1] != "build" {
            continue;
        }
        builds += 1;
        let args: Vec<&str> = words[start + 2..]
            .iter()
            .map(String::as_str)
            .take_while(|t| !["&&", "||", ";", "|"].contains(t))
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
        if packages != *expected {
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
    builds
}

/// The final stage copies exactly the release binaries from the build
/// stage, lets compose/Kubernetes choose the program and runs as non-root.
fn check_runtime_stage(
    runtime: &[Instruction<'_>],
    expected: &BTreeSet<String>,
    problems: &mut Problems,
) {
    let mut shipped = BTreeSet::new();
    for instruction in runtime {
        let (options, sources, dest) = match instruction {
            Instruction::Copy(copy) => (&copy.options, &copy.src, &copy.dest),
            Instruction::Add(add) => (&add.options, &add.src, &add.dest),
            _ => continue,
        };
        let from_builder = options.iter().any(|flag| flag.name.value == "from");
        let dest = &dest.value;
        let paths = sources.iter().filter_map(|source| match source {
            Source::Path(path) => Some(path.value.as_ref()),
            _ => None,
        });
        for source in paths.filter(|s| s.contains("target/")) {
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
    if shipped != *expected {
        problems.push(format!(
            "Dockerfile: the runtime stage ships {shipped:?}, expected exactly {expected:?}"
        ));
    }
    let entrypoint = runtime.iter().find_map(|i| match i {
        Instruction::Entrypoint(entrypoint) => Some(command_words(&entrypoint.arguments, '\\')),
        _ => None,
    });
    if let Some(entrypoint) = entrypoint {
        problems.push(format!(
            "Dockerfile: ENTRYPOINT {} fixes one program; leave it unset so the command \
             names `ingest` or `worker`",
            entrypoint.join(" ")
        ));
    }
    let user = runtime.iter().rev().find_map(|i| match i {
        Instruction::User(user) => Some(user.arguments.value.as_ref()),
        _ => None,
    });
    match user {
        None => problems.push("Dockerfile: the runtime stage runs as root (no USER)".to_owned()),
        Some(user) => {
            let uid = user.split(':').next().unwrap_or_default();
            // Numeric, so that Kubernetes' runAsNonRoot can verify it.
            if !uid.parse::<u32>().is_ok_and(|uid| uid != 0) {
                problems.push(format!(
                    "Dockerfile: USER {user} is not a numeric non-root uid"
                ));
            }
        }
    }
}

/// The build context keeps out the build output and the repository.
pub fn check_dockerignore(text: &str, problems: &mut Problems) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for needed in ["target", ".git"] {
        if !lines.iter().any(|l| l.trim_matches('/') == needed) {
            problems.push(format!(".dockerignore: does not exclude {needed}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real Dockerfile with `from` replaced by `to`, checked.
    fn check_broken(from: &str, to: &str) -> Problems {
        let text = read(&repo_root().join("Dockerfile")).unwrap();
        assert!(text.contains(from), "the Dockerfile no longer has {from:?}");
        let mut problems = Problems::default();
        check_dockerfile(&text.replacen(from, to, 1), &mut problems);
        problems
    }

    #[test]
    fn a_broken_dockerfile_is_reported() {
        let build = "cargo build --release --locked -p ingest -p worker";
        let one = check_broken(build, "cargo build --release --locked -p ingest");
        assert!(one.mentions(&["builds {\"ingest\"}"]), "{one:?}");
        let unlocked = check_broken(build, "cargo build --release -p ingest -p worker");
        assert!(unlocked.mentions(&["lacks --locked"]), "{unlocked:?}");

        let user = check_broken("USER 10001:10001", "USER app");
        assert!(
            user.mentions(&["USER app is not a numeric non-root uid"]),
            "{user:?}"
        );
        let root = check_broken("USER 10001:10001", "USER 0");
        assert!(root.mentions(&["USER 0 is not"]), "{root:?}");
        let no_user = check_broken("USER 10001:10001", "");
        assert!(no_user.mentions(&["runs as root (no USER)"]), "{no_user:?}");

        let entrypoint = check_broken("USER 10001", "ENTRYPOINT [\"ingest\"]\nUSER 10001");
        assert!(
            entrypoint.mentions(&["ENTRYPOINT ingest fixes one program"]),
            "{entrypoint:?}"
        );

        let copy = "/src/target/release/worker /usr/local/bin/";
        let debug = check_broken(copy, "/src/target/debug/worker /usr/local/bin/");
        assert!(
            debug.mentions(&["copies /src/target/debug/worker, not a release"]),
            "{debug:?}"
        );
        let missing = check_broken(copy, "/usr/local/bin/");
        assert!(missing.mentions(&["ships {\"ingest\"}"]), "{missing:?}");
        let elsewhere = check_broken(copy, "/src/target/release/worker /opt/");
        assert!(
            elsewhere.mentions(&["copies worker to /opt/"]),
            "{elsewhere:?}"
        );

        let secret = check_broken("USER 10001", "ENV TWILIO_AUTH_TOKEN=x\nUSER 10001");
        assert!(
            secret.mentions(&["ENV TWILIO_AUTH_TOKEN bakes a secret"]),
            "{secret:?}"
        );
        let one_program = check_broken("USER 10001", "ENV WORKER_ADDR=0.0.0.0:8081\nUSER 10001");
        assert!(
            one_program.mentions(&["ENV WORKER_ADDR applies to both"]),
            "{one_program:?}"
        );
        let arg = check_broken("FROM debian", "ARG DATABASE_URL\nFROM debian");
        assert!(
            arg.mentions(&["ARG DATABASE_URL bakes a secret"]),
            "{arg:?}"
        );
    }

    #[test]
    fn run_commands_are_read_in_both_forms() {
        let mut problems = Problems::default();
        check_dockerfile(
            "FROM rust AS builder\n\
             RUN [\"cargo\", \"build\", \"--release\", \"-p\", \"ingest\"]\n\
             RUN echo \\\n# a comment inside the command\n  && cargo build --locked \\\n  -p worker\n\
             FROM debian\n",
            &mut problems,
        );
        assert!(problems.mentions(&["`cargo build --release -p ingest` lacks --locked"]));
        assert!(problems.mentions(&["`cargo build --locked -p worker` builds {\"worker\"}"]));
        assert!(problems.mentions(&["lacks --release"]));
        assert!(!problems.mentions(&["no `cargo build`"]));

        let mut problems = Problems::default();
        check_dockerfile("FROM debian\nRUN echo\n", &mut problems);
        assert!(problems.mentions(&["no `cargo build`"]));

        let mut problems = Problems::default();
        check_dockerfile("FROM debian\nFROBNICATE\n", &mut problems);
        assert!(
            problems.mentions(&["Dockerfile does not parse"]),
            "{problems:?}"
        );
    }

    #[test]
    fn a_broken_dockerignore_is_reported() {
        let mut problems = Problems::default();
        check_dockerignore("target/\n.gitignore\n", &mut problems);
        assert!(problems.mentions(&["does not exclude .git"]));
        assert!(!problems.mentions(&["does not exclude target"]));
    }
}
