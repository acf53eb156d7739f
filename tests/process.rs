//! The real binary as an operator runs it: logs, healthcheck, signals, secrets kept out of logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

/// Start the binary; returns the child and its address once it logged `listening on`.
fn spawn(
    mock: &MockUpstream,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Child, String, std::thread::JoinHandle<Vec<String>>) {
    std::fs::write(dir.join("key.txt"), KEYS.join("\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gemini-key-manager"))
        .args(["--host", "127.0.0.1", "--port", "0", "--token", TOKEN, "--upstream", &mock.url()])
        .arg("--key-file")
        .arg(dir.join("key.txt"))
        .arg("--usage-file")
        .arg(dir.join("usage.json"))
        .arg("--log-dir")
        .arg(dir)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
            }
            lines.push(line);
        }
        lines
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).expect("the proxy logs its address");
    (child, addr, reader)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
}

#[test]
fn sigterm_exits_0_and_no_log_line_holds_a_key_or_token() {
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("process");
    let (mut child, addr, reader) = spawn(&mock, &dir, &[]);
    let url = format!("http://{addr}");
    let port = addr.rsplit(':').next().unwrap();

    assert_eq!(
        post_json(&format!("{url}/v1beta/models/gemini-2.5-flash:generateContent"), &generate_body()).status,
        200
    );
    let q = format!("{url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={TOKEN}");
    assert_eq!(send("POST", &q, &[], generate_body().to_string().as_bytes()).status, 200);
    assert_eq!(send("GET", &format!("{url}/v1beta/models?key=wrong-{TOKEN}"), &[], b"").status, 401);
    let hc = Command::new(env!("CARGO_BIN_EXE_gemini-key-manager"))
        .args(["healthcheck", "--port", port])
        .output()
        .unwrap();
    assert_eq!(hc.status.code(), Some(0), "healthcheck against a live proxy");

    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
    let console = reader.join().unwrap().join("\n");
    let file = std::fs::read_to_string(dir.join("gemini-key-manager.log")).unwrap();
    for text in [&console, &file] {
        for k in KEYS {
            assert!(!text.contains(k), "a key leaked into the logs:\n{text}");
        }
        assert!(!text.contains(TOKEN), "the client token leaked into the logs:\n{text}");
    }
    // Exactly one info line per request, with status, attempts and the key's fingerprint.
    let request_lines: Vec<&str> =
        file.lines().filter(|l| l.contains(" INFO ") && l.contains(" status=")).collect();
    assert_eq!(request_lines.len(), 3, "{file}");
    assert!(request_lines[0].contains("model=gemini-2.5-flash") && request_lines[0].contains("attempts=1"));
    assert!(request_lines[1].contains("first_byte_ms="));
    assert!(request_lines[2].contains("status=401"));
}

#[test]
fn sigint_exits_0_too() {
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("sigint");
    let (mut child, _, _reader) = spawn(&mock, &dir, &["--log-dir", ""]);
    signal(&child, "-INT");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
