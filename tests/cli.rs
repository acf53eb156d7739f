//! The command line as a user meets it: the real binary, its exit statuses and messages.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gemini-key-manager"));
    // The test's own environment must not leak settings into the binary.
    for v in
        ["LISTEN_PORT", "API_KEY_FILE", "PLACEHOLDER_TOKEN", "LOG_LEVEL", "WORKERS", "GEMINI_API_BASE_URL"]
    {
        c.env_remove(v);
    }
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_option_with_its_variable() {
    let (code, out, _) = run(bin().arg("--help"));
    assert_eq!(code, 0);
    for v in [
        "LISTEN_HOST",
        "LISTEN_PORT",
        "API_KEY_FILE",
        "USAGE_DATA_FILE",
        "PLACEHOLDER_TOKEN",
        "GEMINI_API_BASE_URL",
        "LOG_DIRECTORY",
        "LOG_LEVEL",
        "WORKERS",
        "QUEUE_SIZE",
        "RESET_TIMEZONE",
        "MAX_BODY_BYTES",
        "UPSTREAM_CONNECT_TIMEOUT",
        "UPSTREAM_READ_TIMEOUT",
        "REPROBE_INTERVAL",
        "LOG_MAX_BYTES",
        "LOG_KEEP",
    ] {
        assert!(out.contains(v), "--help lacks {v}");
    }
}

#[test]
fn a_bad_value_exits_2_with_one_line_naming_the_option() {
    let (code, _, err) = run(bin().args(["--port", "seventy"]));
    assert_eq!(code, 2);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--port") && err.contains("seventy"), "{err}");
    let (code, _, err) = run(bin().env("RESET_TIMEZONE", "Pacific/Nowhere"));
    assert_eq!(code, 2);
    assert!(err.contains("RESET_TIMEZONE") && err.contains("Pacific/Nowhere"), "{err}");
}

#[test]
fn a_missing_or_empty_key_file_exits_2_with_a_clear_line() {
    let dir = support::temp_dir("cli");
    let empty = dir.join("keys.txt");
    std::fs::write(&empty, "# no keys yet\n\n").unwrap();
    for (file, says) in [(dir.join("missing.txt"), "cannot read key file"), (empty, "holds no keys")] {
        let (code, _, err) = run(bin().args(["--port", "0", "--log-dir", "", "--key-file"]).arg(&file));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
    }
}

#[test]
fn healthcheck_exits_1_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, out, _) = run(bin().args(["healthcheck", "--port", &port.to_string()]));
    assert_eq!(code, 1);
    assert!(out.contains("unhealthy"));
}

#[test]
fn usage_prints_todays_table_and_json() {
    use support::*;
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    for _ in 0..3 {
        post_json(&format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url), &generate_body());
    }
    proxy.handle.flush().unwrap();
    let usage_file = proxy.dir.join("usage.json");
    let (code, out, err) = run(bin().arg("usage").arg("--usage-file").arg(&usage_file));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gemini-2.5-flash") && out.contains("TOTAL"), "{out}");
    assert!(out.contains(&gemini_key_manager::keyfile::fingerprint(KEYS[0])));
    assert!(!out.contains(KEYS[0]));
    let (code, out, _) = run(bin().args(["usage", "--json", "--usage-file"]).arg(&usage_file));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["totals"]["requests"], 3);
    assert_eq!(v["keys"].as_array().unwrap().len(), 3);
    let (code, _, err) = run(bin().args(["usage", "--usage-file", "/nonexistent/usage.json"]));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read usage file"));
}

#[test]
fn check_keys_reports_each_key_and_exits_1_on_an_invalid_one() {
    use support::*;
    let mock = MockUpstream::start(&KEYS[1..]);
    let dir = temp_dir("check-keys");
    std::fs::write(dir.join("key.txt"), KEYS.join("\n")).unwrap();
    let mut cmd = bin();
    cmd.args(["check-keys", "--upstream", &mock.url(), "--log-dir", ""])
        .arg("--key-file")
        .arg(dir.join("key.txt"));
    let (code, out, _) = run(&mut cmd);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[1].contains("invalid"), "{out}");
    assert!(lines[2].contains("valid") && lines[3].contains("valid"), "{out}");
    assert!(!out.contains(KEYS[0]), "keys are masked");
    mock.set_valid_keys(&KEYS);
    let (code, out, _) = run(&mut cmd);
    assert_eq!(code, 0, "{out}");
}
