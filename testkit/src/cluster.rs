//! A RabbitMQ cluster of its own for a test: three (or more) nodes of the
//! machine's RabbitMQ installation on private ports, node names and data
//! directories, joined into one cluster, stopped and deleted on drop. The
//! machine's own node (`rabbit@localhost`, port 5672) is never touched.
//!
//! Each node gets its own config file (the machine's pins port 5672), an
//! empty plugin list, and runs as the `rabbitmq` user, whose Erlang cookie
//! `rabbitmqctl` shares.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

pub struct ClusterNode {
    /// The Erlang node name, `name@localhost`.
    pub name: String,
    pub amqp_port: u16,
    dist_port: u16,
    dir: PathBuf,
}

impl ClusterNode {
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let dir = self.dir.display();
        vec![
            ("RABBITMQ_NODENAME", self.name.clone()),
            ("RABBITMQ_CONFIG_FILE", format!("{dir}/rabbitmq.conf")),
            ("RABBITMQ_CONF_ENV_FILE", "/dev/null".to_owned()),
            ("RABBITMQ_DIST_PORT", self.dist_port.to_string()),
            ("RABBITMQ_MNESIA_BASE", format!("{dir}/mnesia")),
            ("RABBITMQ_LOG_BASE", format!("{dir}/log")),
            ("RABBITMQ_PID_FILE", format!("{dir}/rabbit.pid")),
            (
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                format!("{dir}/enabled_plugins"),
            ),
        ]
    }

    fn start(&self) {
        let env: Vec<String> = self
            .env()
            .into_iter()
            .map(|(key, value)| format!("{key}='{value}'"))
            .collect();
        let script = format!("env {} {SERVER} -detached", env.join(" "));
        run("su", &["rabbitmq", "-s", "/bin/sh", "-c", &script]);
        // `-detached` returns before the Erlang VM is reachable, and
        // `await_startup` fails at once on a node it cannot reach yet.
        let deadline = Instant::now() + Duration::from_secs(120);
        while rabbitmqctl_output(&self.name, &["await_startup", "--timeout", "60"]).is_none() {
            assert!(Instant::now() < deadline, "{} did not start", self.name);
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("rabbit.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    base: PathBuf,
}

impl Cluster {
    /// Starts `size` nodes and joins them into one cluster (about 10 s for three).
    pub fn start(size: usize) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let base = std::env::temp_dir().join(format!("rabbitmq-cluster-{}", &id[..12]));
        let nodes: Vec<ClusterNode> = (0..size)
            .map(|n| {
                let dir = base.join(format!("node{n}"));
                std::fs::create_dir_all(dir.join("log")).unwrap();
                let amqp_port = free_port();
                std::fs::write(
                    dir.join("rabbitmq.conf"),
                    format!("listeners.tcp.local = 127.0.0.1:{amqp_port}\n"),
                )
                .unwrap();
                std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
                ClusterNode {
                    name: format!("t{}n{n}@localhost", &id[..8]),
                    amqp_port,
                    dist_port: free_port(),
                    dir,
                }
            })
            .collect();
        run(
            "chown",
            &["-R", "rabbitmq:rabbitmq", &base.display().to_string()],
        );
        let cluster = Self { nodes, base };
        for node in &cluster.nodes {
            node.start();
        }
        let first = cluster.nodes[0].name.clone();
        for node in &cluster.nodes[1..] {
            rabbitmqctl(&node.name, &["stop_app"]);
            rabbitmqctl(&node.name, &["join_cluster", &first]);
            rabbitmqctl(&node.name, &["start_app"]);
        }
        cluster
    }

    /// Every node's URL, comma-separated: an `AMQP_URL` for the cluster.
    pub fn amqp_urls(&self) -> String {
        self.nodes
            .iter()
            .map(ClusterNode::amqp_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, name: &str) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|node| node.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The node whose replica leads `queue` (a quorum queue), asked of any
    /// running node.
    pub fn leader_of(&self, queue: &str) -> String {
        for node in &self.nodes {
            let Some(output) = rabbitmqctl_output(
                &node.name,
                &[
                    "list_queues",
                    "name",
                    "leader",
                    "--quiet",
                    "--no-table-headers",
                ],
            ) else {
                continue;
            };
            for line in output.lines() {
                let mut columns = line.split_whitespace();
                if columns.next() == Some(queue) {
                    if let Some(leader) = columns.next() {
                        return leader.to_owned();
                    }
                }
            }
        }
        panic!("no running node knows the leader of {queue}");
    }

    /// A clean stop of one node (`rabbitmqctl stop`).
    pub fn stop(&self, name: &str) {
        rabbitmqctl(name, &["stop"]);
    }

    /// SIGKILL of one node's Erlang VM: no goodbye to clients or peers.
    pub fn kill(&self, name: &str) {
        let pid = self
            .node(name)
            .pid()
            .unwrap_or_else(|| panic!("no pid for {name}"));
        run("kill", &["-KILL", &pid.to_string()]);
        // Gone once its AMQP port refuses connections.
        let port = self.node(name).amqp_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{name} still listens after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a stopped or killed node again; it rejoins the cluster.
    pub fn restart(&self, name: &str) {
        self.node(name).start();
    }

    /// Messages ready in `queue`, asked of any running node.
    pub fn ready_messages(&self, queue: &str) -> Option<u64> {
        for node in &self.nodes {
            if let Some(output) = rabbitmqctl_output(
                &node.name,
                &[
                    "list_queues",
                    "name",
                    "messages_ready",
                    "--quiet",
                    "--no-table-headers",
                ],
            ) {
                return output.lines().find_map(|line| {
                    let mut columns = line.split_whitespace();
                    (columns.next() == Some(queue))
                        .then(|| columns.next()?.parse().ok())
                        .flatten()
                });
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pids: Vec<u32> = self.nodes.iter().filter_map(ClusterNode::pid).collect();
        for pid in &pids {
            // A node killed earlier left its pid file: quietly a no-op.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
        // Delete the data directories once no VM can write to them.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Whether process `pid` still runs (a zombie, dead but not yet reaped,
/// does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program).args(args).status().unwrap();
    assert!(status.success(), "{program} {args:?}");
}

fn rabbitmqctl(node: &str, args: &[&str]) {
    let mut all = vec!["-q", "-n", node];
    all.extend_from_slice(args);
    run("rabbitmqctl", &all);
}

fn rabbitmqctl_output(node: &str, args: &[&str]) -> Option<String> {
    let mut all = vec!["-q", "-n", node];
    all.extend_from_slice(args);
    let output = Command::new("rabbitmqctl").args(&all).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The harness itself: three nodes form one cluster and go away.
    #[test]
    #[ignore = "starts a three-node RabbitMQ cluster (about 15 s)"]
    fn three_nodes_form_one_cluster() {
        let cluster = Cluster::start(3);
        let status = rabbitmqctl_output(&cluster.nodes[0].name, &["cluster_status"]).unwrap();
        for node in &cluster.nodes {
            assert!(status.contains(&node.name), "{status}");
        }
        let base = cluster.base.clone();
        drop(cluster);
        assert!(!base.exists());
    }
}
