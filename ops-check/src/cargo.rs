//! The programs' packages build the binaries the Dockerfile copies and the
//! manifests run: each program's package, in the directory of the program's
//! name, is named after it and builds one default binary of that name. Read
//! from cargo itself (`cargo metadata`), i.e. what `cargo build` really
//! produces, rather than from the manifests' text.

use crate::files::{read, relative};
use crate::problems::Problems;
use crate::programs::Program;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A workspace package and its binary targets.
#[derive(Debug)]
pub struct Package {
    pub name: String,
    pub manifest_path: PathBuf,
    /// Each binary target's name and main source file.
    pub binaries: Vec<(String, PathBuf)>,
}

/// The packages of the workspace at `root`. Reads manifests only: no
/// dependency resolution, no network, no build.
pub fn workspace_packages(root: &Path) -> Result<Vec<Package>, String> {
    // Under `cargo test` this is the cargo that runs the tests.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cargo metadata printed no JSON: {e}"))?;
    Ok(parse_packages(&metadata))
}

fn parse_packages(metadata: &Value) -> Vec<Package> {
    let text = |node: &Value| node.as_str().unwrap_or_default().to_owned();
    let list = |node: &Value| node.as_array().cloned().unwrap_or_default();
    list(&metadata["packages"])
        .iter()
        .map(|package| Package {
            name: text(&package["name"]),
            manifest_path: PathBuf::from(text(&package["manifest_path"])),
            binaries: list(&package["targets"])
                .iter()
                .filter(|target| list(&target["kind"]).iter().any(|k| k == "bin"))
                .map(|target| {
                    (
                        text(&target["name"]),
                        PathBuf::from(text(&target["src_path"])),
                    )
                })
                .collect(),
        })
        .collect()
}

/// Each program's package, in the directory of the program's name, is named
/// after the program and builds its one default binary of that name, as
/// cargo itself reports (`cargo metadata`).
pub fn check_program_packages(root: &Path, problems: &mut Problems) {
    let packages = match workspace_packages(root) {
        Ok(packages) => packages,
        Err(e) => {
            problems.push(e);
            return;
        }
    };
    for program in Program::ALL {
        let manifest = root.join(program.to_string()).join("Cargo.toml");
        let package = packages.iter().find(|p| p.manifest_path == manifest);
        match read(&manifest) {
            Ok(text) => check_package(program, package, &manifest, &text, problems),
            Err(e) => problems.push(e),
        }
    }
}

/// `package` is what cargo reports for `manifest`, whose text is `text`.
fn check_package(
    program: Program,
    package: Option<&Package>,
    manifest: &Path,
    text: &str,
    problems: &mut Problems,
) {
    let binary = program.binary();
    let Some(package) = package else {
        problems.push(format!("{}: not a workspace package", relative(manifest)));
        return;
    };
    let main = manifest.with_file_name("src").join("main.rs");
    let default_binary = [(binary.clone(), main)];
    if package.name != binary || package.binaries != default_binary || text.contains("[[bin]]") {
        problems.push(format!(
            "{}: expected package `{binary}` with its one default binary of the same name \
             (cargo reports package `{}` with binaries {:?})",
            relative(manifest),
            package.name,
            package.binaries
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn binary_targets_are_read_from_the_metadata() {
        let metadata = json!({"packages": [{
            "name": "worker",
            "manifest_path": "/r/worker/Cargo.toml",
            "targets": [
                {"kind": ["lib"], "name": "worker", "src_path": "/r/worker/src/lib.rs"},
                {"kind": ["bin"], "name": "worker", "src_path": "/r/worker/src/main.rs"},
                {"kind": ["test"], "name": "cli", "src_path": "/r/worker/tests/cli.rs"}
            ]
        }]});
        let packages = parse_packages(&metadata);
        assert_eq!(packages.len(), 1);
        assert_eq!(packages[0].manifest_path, Path::new("/r/worker/Cargo.toml"));
        assert_eq!(
            packages[0].binaries,
            [("worker".to_owned(), PathBuf::from("/r/worker/src/main.rs"))]
        );
    }

    #[test]
    fn a_program_package_must_build_its_default_binary() {
        let dir = crate::files::repo_root().join("worker");
        let manifest = dir.join("Cargo.toml");
        let main = dir.join("src").join("main.rs");
        let package = |name: &str, binaries: Vec<(String, PathBuf)>| Package {
            name: name.to_owned(),
            manifest_path: manifest.clone(),
            binaries,
        };
        let check = |package: Option<&Package>, text: &str| {
            let mut problems = Problems::default();
            check_package(Program::Worker, package, &manifest, text, &mut problems);
            problems
        };
        let good = package("worker", vec![("worker".to_owned(), main.clone())]);
        assert!(check(Some(&good), "[package]\nname = \"worker\"\n").is_empty());
        assert!(check(Some(&good), "[[bin]]\nname = \"worker\"\n").mentions(&["expected package"]));
        assert!(check(None, "").mentions(&["not a workspace package"]));
        let renamed = package("worker", vec![("consumer".to_owned(), main.clone())]);
        assert!(check(Some(&renamed), "").mentions(&["expected package `worker`"]));
        let other = package(
            "worker",
            vec![("worker".to_owned(), main.with_file_name("bin.rs"))],
        );
        assert!(check(Some(&other), "").mentions(&["expected package `worker`"]));
    }
}
