//! The README's configuration table agrees with the programs' command
//! lines: every variable a program reads is in it once, on the right
//! programs, with the default clap gives it, and nothing else is. The table
//! is the one place the variables are documented (`docs/contract.md`
//! points to it), so this check is what keeps the documentation true.

use crate::files::{read, repo_root};
use crate::problems::Problems;
use crate::programs::{Program, LOG_VARS};
use std::collections::{BTreeMap, BTreeSet};

/// Variables read outside clap that the table documents: the log filter and
/// the one OpenTelemetry variable the contract names (the other standard
/// `OTEL_*` ones are mentioned in its row, not listed).
const OUTSIDE_CLAP: &[&str] = &["OTEL_EXPORTER_OTLP_ENDPOINT"];

/// At most this many variables: each one is a question every operator
/// has to answer, so a new one has to displace an old one or a default.
pub const MOST_VARIABLES: usize = 30;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub variable: String,
    pub used_by: String,
    pub default: String,
}

/// What the code says about one variable.
#[derive(Debug, Default)]
struct Declared {
    programs: BTreeSet<Program>,
    defaults: BTreeSet<String>,
}

/// The rows of the table under `## Configuration` in `markdown`.
pub fn configuration_rows(markdown: &str) -> Vec<Row> {
    let section = markdown
        .split("\n## ")
        .find(|section| section.starts_with("Configuration\n"))
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().strip_prefix('|')?.split(" | ").collect();
            let variable = cells.first()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            Some(Row {
                variable: variable.to_owned(),
                used_by: cells.get(1)?.trim().to_owned(),
                default: cells.get(2)?.trim().to_owned(),
            })
        })
        .collect()
}

/// Checks README.md against both programs.
pub fn check(problems: &mut Problems) {
    let path = repo_root().join("README.md");
    match read(&path) {
        Ok(markdown) => check_rows(&configuration_rows(&markdown), problems),
        Err(e) => problems.push(e),
    }
}

/// Checks a table's rows against both programs.
pub fn check_rows(rows: &[Row], problems: &mut Problems) {
    let declared = declared();
    if rows.len() > MOST_VARIABLES {
        problems.push(format!(
            "README.md: {} configuration variables, more than {MOST_VARIABLES}",
            rows.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for row in rows {
        if !seen.insert(row.variable.as_str()) {
            problems.push(format!("README.md: {} is documented twice", row.variable));
        }
        match declared.get(&row.variable) {
            None => problems.push(format!(
                "README.md documents {}, which neither program reads",
                row.variable
            )),
            Some(code) => check_row(row, code, problems),
        }
    }
    for variable in declared.keys() {
        if !seen.contains(variable.as_str()) {
            problems.push(format!(
                "README.md: {variable} is read by the code but not in the configuration table"
            ));
        }
    }
}

fn check_row(row: &Row, code: &Declared, problems: &mut Problems) {
    let used_by = match code.programs.len() {
        2 => "both".to_owned(),
        _ => code.programs.iter().map(|p| p.to_string()).collect(),
    };
    if row.used_by != used_by {
        problems.push(format!(
            "README.md: {} is used by {used_by}, the table says {:?}",
            row.variable, row.used_by
        ));
    }
    for default in &code.defaults {
        if row.default != format!("`{default}`") {
            problems.push(format!(
                "README.md: the default of {} is `{default}`, the table says {:?}",
                row.variable, row.default
            ));
        }
    }
    if code.defaults.is_empty() && row.default.starts_with('`') {
        problems.push(format!(
            "README.md: {} has no default in the code, the table says {}",
            row.variable, row.default
        ));
    }
}

/// Every variable either program reads, with its programs and defaults.
fn declared() -> BTreeMap<String, Declared> {
    fn collect(program: Program, command: &clap::Command, into: &mut BTreeMap<String, Declared>) {
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let entry = into.entry(env.to_string_lossy().into_owned()).or_default();
            entry.programs.insert(program);
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() {
                let delimiter = arg.get_value_delimiter().unwrap_or(',');
                entry.defaults.insert(defaults.join(&delimiter.to_string()));
            }
        }
        for sub in command.get_subcommands() {
            collect(program, sub, into);
        }
    }
    let mut declared = BTreeMap::new();
    for program in Program::ALL {
        collect(program, &program.command(), &mut declared);
        for variable in LOG_VARS.iter().chain(OUTSIDE_CLAP) {
            let entry: &mut Declared = declared.entry((*variable).to_owned()).or_default();
            entry.programs.insert(program);
        }
    }
    // RUST_LOG's default is the telemetry module's, not clap's.
    if let Some(log) = declared.get_mut("RUST_LOG") {
        log.defaults.insert("info".to_owned());
    }
    declared
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "# T\n\n## Configuration\n\nText.\n\n| variable | used by | default | meaning |\n|---|---|---|---|\n| `INGEST_ADDR` | ingest | `127.0.0.1:8080` | listen |\n| `RUST_LOG` | both | `info` | filter |\n\n## HTTP\n\n| `NOT_A_ROW` | x | y | z |\n";

    #[test]
    fn reads_the_rows_of_the_configuration_section_only() {
        let rows = configuration_rows(TABLE);
        let names: Vec<&str> = rows.iter().map(|r| r.variable.as_str()).collect();
        assert_eq!(names, ["INGEST_ADDR", "RUST_LOG"]);
        assert_eq!(rows[0].default, "`127.0.0.1:8080`");
    }

    #[test]
    fn names_every_kind_of_disagreement() {
        let row = |variable: &str, used_by: &str, default: &str| Row {
            variable: variable.to_owned(),
            used_by: used_by.to_owned(),
            default: default.to_owned(),
        };
        let rows = vec![
            row("INGEST_ADDR", "worker", "`127.0.0.1:9`"),
            row("INGEST_ADDR", "ingest", "`127.0.0.1:8080`"),
            row("NO_SUCH_VARIABLE", "both", "unset"),
            row("PUBLIC_BASE_URL", "ingest", "`https://x`"),
        ];
        let mut problems = Problems::default();
        check_rows(&rows, &mut problems);
        assert!(problems.mentions(&["INGEST_ADDR is used by ingest", "\"worker\""]));
        assert!(problems.mentions(&["default of INGEST_ADDR is `127.0.0.1:8080`"]));
        assert!(problems.mentions(&["INGEST_ADDR is documented twice"]));
        assert!(problems.mentions(&["NO_SUCH_VARIABLE, which neither program reads"]));
        assert!(problems.mentions(&["PUBLIC_BASE_URL is used by both"]));
        assert!(problems.mentions(&["PUBLIC_BASE_URL has no default in the code"]));
        assert!(problems
            .mentions(&["DATABASE_URL is read by the code but not in the configuration table"]));
    }
}
