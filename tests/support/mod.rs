//! Shared helpers of the integration tests: the scripted mock upstream, a proxy started
//! in-process against it, and a plain HTTP client. Everything listens on 127.0.0.1, port 0.
#![allow(dead_code, unused_imports)]

pub mod mock_live;
pub mod mock_upstream;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gemini_key_manager::config::Config;
pub use mock_upstream::{MockUpstream, Reply, StreamEnd};

pub const TOKEN: &str = "test-client-token-1234";
pub const KEYS: [&str; 3] = [
    "AIzaSyTESTKEY00000000000000000000000000A",
    "AIzaSyTESTKEY00000000000000000000000000B",
    "AIzaSyTESTKEY00000000000000000000000000C",
];

/// A fresh, empty directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gkm-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub struct Proxy {
    pub handle: gemini_key_manager::Handle,
    pub dir: PathBuf,
    pub url: String,
}

impl Proxy {
    /// Start a proxy in front of `upstream` with `keys` (one per line of the key file).
    pub fn start_with(upstream: &str, key_lines: &[&str], tweak: impl FnOnce(&mut Config)) -> Proxy {
        Proxy::start_in(temp_dir("proxy"), upstream, key_lines, tweak)
    }

    /// Start a proxy whose files live in `dir` (which may already hold a usage file).
    pub fn start_in(
        dir: PathBuf,
        upstream: &str,
        key_lines: &[&str],
        tweak: impl FnOnce(&mut Config),
    ) -> Proxy {
        let key_file = dir.join("key.txt");
        std::fs::write(&key_file, key_lines.join("\n")).expect("key file");
        let mut cfg = Config::for_tests(key_file, dir.join("usage.json"), upstream);
        cfg.tokens = vec![TOKEN.to_string()];
        tweak(&mut cfg);
        let handle = gemini_key_manager::start(cfg).expect("proxy starts");
        let url = handle.url();
        Proxy { handle, dir, url }
    }

    pub fn start(mock: &MockUpstream) -> Proxy {
        Proxy::start_with(&mock.url(), &KEYS, |_| {})
    }
}

/// Wait until `done` holds, checking every 10 ms; fails the test naming `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client that never treats a status as an error and never retries.
pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// Start a streamed POST and return the answer with its body unread.
pub fn open_stream(url: &str, auth: (&str, &str), body: &str) -> ureq::http::Response<ureq::Body> {
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(url)
        .header(auth.0, auth.1)
        .header("content-type", "application/json")
        .body(body.to_string())
        .expect("request");
    client().run(request).expect("the proxy answers")
}

/// The answer of a simple request: status, headers (lowercased names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send one request with ureq; `headers` as given.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    let resp = if body.is_empty() && method == "GET" {
        client().run(b.body(()).expect("request"))
    } else {
        client().run(b.body(body).expect("request"))
    }
    .expect("the proxy answers");
    let status = resp.status().as_u16();
    let headers = headers_of(&resp);
    let body = resp.into_body().with_config().limit(64 << 20).read_to_vec().expect("body");
    Answer { status, headers, body }
}

/// A response's headers as (name, value) pairs.
pub fn headers_of(resp: &ureq::http::Response<ureq::Body>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

pub fn post_json(url: &str, body: &serde_json::Value) -> Answer {
    send(
        "POST",
        url,
        &[("x-goog-api-key", TOKEN), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// `generateContent` of `model` through the proxy, with the test body.
pub fn generate(proxy: &Proxy, model: &str) -> Answer {
    post_json(&format!("{}/v1beta/models/{model}:generateContent", proxy.url), &generate_body())
}

/// The proxy's `/status` document (asserting it answered 200).
pub fn status(proxy: &Proxy) -> serde_json::Value {
    let a = send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

pub fn generate_body() -> serde_json::Value {
    serde_json::json!({"contents": [{"role": "user", "parts": [{"text": "Hello"}]}]})
}

/// Write raw bytes on a new connection and read the whole answer until the server closes or
/// `timeout` passes.
pub fn raw(addr: std::net::SocketAddr, request: &[u8], timeout: Duration) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // One complete answer with a Content-Length is enough.
                if let Some(text) = std::str::from_utf8(&out).ok()
                    && let Some((head, body)) = text.split_once("\r\n\r\n")
                    && let Some(len) = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                    && body.len() >= len
                {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- The real binary ----------------------------------------------------------------------------

/// Start the binary; returns the child and its address once it logged `listening on`.
pub fn spawn(
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

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
}

/// A usage file of today (UTC) with 30 days of history for `past_keys` keys not in the pool:
/// over 64 KiB from about 100 of them, so that the proxy writes it in journal mode.
pub fn large_usage_file(dir: &std::path::Path, past_keys: usize) {
    use serde_json::{Value, json};
    let today = chrono::Utc::now().date_naive();
    let mut history = serde_json::Map::new();
    for d in 1..=30 {
        let day = (today - chrono::Duration::days(d)).to_string();
        let per_key: serde_json::Map<String, Value> = (0..past_keys)
            .map(|i| (format!("{i:012x}"), json!({"requests": 100 + i, "tokens": 5000 + i})))
            .collect();
        history.insert(day, Value::Object(per_key));
    }
    let file = json!({"version": 1, "quota_day": today.to_string(), "timezone": "UTC", "keys": {},
                      "history": history});
    std::fs::write(dir.join("usage.json"), serde_json::to_vec(&file).unwrap()).unwrap();
}

/// Today's requests over every key as the real `usage --json` command reads them (the file and
/// its journal), `tz` the reset zone.
pub fn requests_by_usage_command(dir: &std::path::Path, tz: &str) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_gemini-key-manager"))
        .args(["usage", "--json", "--reset-timezone", tz, "--key-file"])
        .arg(dir.join("key.txt"))
        .arg("--usage-file")
        .arg(dir.join("usage.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["totals"]["requests"].as_u64().unwrap_or_else(|| panic!("no totals in {report}"))
}

pub fn requests_on_disk(dir: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("usage.json")).expect("usage file exists");
    let v: serde_json::Value = serde_json::from_str(&text).expect("the usage file is valid JSON");
    v["keys"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|k| k["models"].as_object().unwrap().values())
        .map(|m| m["requests"].as_u64().unwrap())
        .sum()
}

/// Read a streamed answer to its end: its text, when `marker` first appeared, and the whole time
/// (both from the start of reading).
pub fn read_timed(
    resp: ureq::http::Response<ureq::Body>,
    marker: &str,
) -> (String, Option<Duration>, Duration) {
    let started = std::time::Instant::now();
    let mut reader = resp.into_body().into_reader();
    let (mut text, mut buf, mut first) = (String::new(), [0u8; 4096], None);
    loop {
        let n = reader.read(&mut buf).expect("the stream reads");
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if first.is_none() && text.contains(marker) {
            first = Some(started.elapsed());
        }
    }
    (text, first, started.elapsed())
}

/// Every object key anywhere in a JSON value (to check what went upstream).
pub fn keys_anywhere(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys_anywhere(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| keys_anywhere(x, out)),
        _ => {}
    }
}
