//! The real operations files checked against the code: `cargo test` fails,
//! listing every problem, when they drift apart.

use ops_check::{compose, dockerfile, grafana, kubernetes, ops, prometheus, readme, Problems};

#[test]
fn compose_runs_the_programs_as_the_code_defines_them() {
    let mut problems = Problems::default();
    compose::check(&mut problems);
    problems.assert_none("docker-compose.yml does not match the code");
}

#[test]
fn kubernetes_manifests_run_the_programs_as_the_code_defines_them() {
    let mut problems = Problems::default();
    kubernetes::check(&mut problems);
    problems.assert_none("deploy/ does not match the code");
}

#[test]
fn the_dockerfile_builds_and_ships_exactly_the_two_programs() {
    let mut problems = Problems::default();
    dockerfile::check(&mut problems);
    problems.assert_none("Dockerfile does not match the code");
}

#[test]
fn monitoring_files_parse_and_use_the_metrics_and_ports_the_code_has() {
    let mut problems = Problems::default();
    let ops_yaml = ops::load_yaml(&mut problems);
    let dashboards = ops::load_dashboards(&mut problems);
    prometheus::check(&ops_yaml, &mut problems);
    grafana::check(&ops_yaml, &dashboards, &mut problems);
    problems.assert_none("ops/ does not match the code");
}

#[test]
fn the_readme_documents_every_variable_once_as_the_code_reads_it() {
    let mut problems = Problems::default();
    readme::check(&mut problems);
    problems.assert_none("README.md's configuration table does not match the code");
}
