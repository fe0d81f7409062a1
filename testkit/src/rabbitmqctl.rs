//! What only the broker's admin CLI (`rabbitmqctl`, on the machine's own
//! node) can do: close a client's connection from the broker's side.

/// Closes, from the broker's side, the connection whose client named itself
/// `connection_name`, as a broker restart or a network cut would.
pub fn close_broker_connection(connection_name: &str) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "-q"])
        .output()
        .expect("rabbitmqctl must be installed");
    let listing = String::from_utf8_lossy(&output.stdout);
    let needle = format!("{{\"connection_name\",\"{connection_name}\"}}");
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split('\t').next())
        .collect();
    assert_eq!(
        pids.len(),
        1,
        "expected one connection named {connection_name:?} in:\n{listing}"
    );
    let status = std::process::Command::new("rabbitmqctl")
        .args([
            "close_connection",
            pids[0],
            "test: simulated broker failure",
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
}
