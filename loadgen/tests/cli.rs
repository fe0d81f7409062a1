//! loadgen refuses what cannot work before sending anything.

use std::process::Command;

#[test]
fn an_empty_token_is_refused() {
    for token in ["", "  "] {
        let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .env_clear()
            .args([
                "send",
                "--token",
                token,
                "--sid",
                "SM0123456789abcdef0123456789abcdef",
            ])
            .args(["--status", "sent"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run loadgen: {e}"));
        assert_eq!(output.status.code(), Some(2), "{output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("auth token is empty"), "{stderr}");
    }
}

#[test]
fn a_search_with_an_unknown_placeholder_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .env_clear()
        .args(["search", "--query", "to={recipient}"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run loadgen: {e}"));
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown placeholder {recipient}"),
        "{stderr}"
    );
}
