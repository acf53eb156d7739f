//! Hardening (SPEC §4 "Nothing the upstream says leaks a key", §5 retry budget, RFC 9112
//! framing): the mock echoes keys as Google does, and no pool key or client token may reach a
//! client, a log line or a state file; one request may not walk the pool without bounds; framing
//! the proxy cannot trust is answered before any upstream attempt; no stall holds a worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use support::mock_upstream::{
    internal_500_echoing, key_invalid_400_echoing, rate_limited_429_no_details, suspended_403_echoing,
};
use support::*;

const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const SSE: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";

/// No pool key (nor its part after `AIza`) and no client token in `text`.
fn assert_clean(what: &str, text: &str) {
    for k in KEYS {
        assert!(!text.contains(k), "{what} carries a pool key: {text}");
        assert!(!text.contains(&k[4..]), "{what} carries the part of a key after AIza: {text}");
    }
    assert!(!text.contains(TOKEN), "{what} carries the client token: {text}");
}

fn answer_text(a: &Answer) -> String {
    let headers: Vec<String> = a.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
    format!("{}\n\n{}", headers.join("\n"), a.text())
}

fn post_openai(url: &str, body: &serde_json::Value) -> Answer {
    send(
        "POST",
        url,
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn chat_body(stream: bool) -> serde_json::Value {
    json!({"model": "gemini-2.5-flash", "stream": stream, "messages": [{"role": "user", "content": "Hi"}]})
}

/// Every key answers with an error body that echoes it; whatever the proxy returns must not.
#[test]
fn upstream_error_bodies_that_echo_the_key_reach_clients_masked_on_every_surface() {
    let mock = MockUpstream::start(&KEYS);
    for k in KEYS {
        mock.set_key_reply(k, internal_500_echoing(k));
    }
    let proxy = Proxy::start(&mock);
    // Native: the last 500 is returned (after the retry budget), its key masked.
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 500, "{}", a.text());
    assert_clean("native 500", &answer_text(&a));
    assert!(a.text().contains("api_key:AIza…"), "the key's masked form stands in its place: {}", a.text());
    // OpenAI: the translated message.
    let a = post_openai(&format!("{}/v1/chat/completions", proxy.url), &chat_body(false));
    assert_eq!(a.status, 500, "{}", a.text());
    assert_clean("openai 500", &answer_text(&a));
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("AIza…"), "{}", a.text());
    // A 4xx that is the request's own fault is returned as is, but masked.
    mock.set_script(|r| {
        let key = r.key.clone().unwrap_or_default();
        Some(Reply::json(
            400,
            mock_upstream::google_error(400, "INVALID_ARGUMENT", &format!("bad field for {key}")),
        ))
    });
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 400);
    assert_clean("native 400", &answer_text(&a));
    let a = post_openai(&format!("{}/v1/chat/completions", proxy.url), &chat_body(false));
    assert_eq!(a.status, 400);
    assert_clean("openai 400", &answer_text(&a));
}

/// The scenario: a cache made through the proxy, its key then suspended; the request
/// naming the cache gets Google's 403, which echoes the key three times.
#[test]
fn regression_a_suspended_keys_403_for_a_pinned_cache_reaches_the_client_masked() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let created = post_json(
        &format!("{}/v1beta/cachedContents", proxy.url),
        &json!({"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": "doc"}]}]}),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let name = created.json()["name"].as_str().unwrap().to_string();
    let owner = mock.requests()[0].key.clone().unwrap();
    mock.set_key_reply(&owner, suspended_403_echoing(&owner));
    let body =
        json!({"cachedContent": name, "contents": [{"role": "user", "parts": [{"text": "summarize"}]}]});
    let a = post_json(&format!("{}{GEN}", proxy.url), &body);
    assert_eq!(a.status, 403, "{}", a.text());
    assert_clean("403 of a suspended key", &answer_text(&a));
    let v = a.json();
    assert_eq!(
        v["error"]["details"][0]["reason"], "CONSUMER_SUSPENDED",
        "the rest of the body is Google's: {v}"
    );
    assert!(
        v["error"]["details"][0]["metadata"]["containerInfo"].as_str().unwrap().starts_with("api_key:AIza…")
    );
    let seen = mock.requests();
    assert_eq!(
        seen.last().unwrap().key.as_deref(),
        Some(owner.as_str()),
        "the upstream did get the real key"
    );
}

/// A stream whose error event echoes the key, the key split across two HTTP chunks.
#[test]
fn a_key_in_a_stream_error_event_is_masked_even_split_across_chunks() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        let key = r.key.clone().unwrap_or_default();
        let first = "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hel\"}],\"role\": \"model\"}}]}\r\n\r\n";
        let error = format!(
            "data: {{\"error\": {{\"code\": 500,\"message\": \"stream failed for api_key:{key}\",\"status\": \"INTERNAL\"}}}}\r\n\r\n"
        );
        let cut = error.find("AIza").unwrap() + 11;
        Some(Reply::Chunked {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            chunks: vec![first.as_bytes().to_vec(), error.as_bytes()[..cut].to_vec(), error.as_bytes()[cut..].to_vec()],
            delay: Duration::from_millis(20),
            then: StreamEnd::Finish,
        })
    });
    let proxy = Proxy::start(&mock);
    let a = post_json(&format!("{}{SSE}", proxy.url), &generate_body());
    assert_eq!(a.status, 200);
    assert_clean("native stream", &answer_text(&a));
    assert!(a.text().contains("Hel") && a.text().contains("api_key:AIza…"), "{}", a.text());
    let a = post_openai(&format!("{}/v1/chat/completions", proxy.url), &chat_body(true));
    assert_eq!(a.status, 200);
    assert_clean("openai stream", &answer_text(&a));
    assert!(a.text().contains("AIza…"), "the error event says what failed, masked: {}", a.text());
}

#[test]
fn a_key_echoed_in_an_upstream_header_is_masked() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        let key = r.key.clone().unwrap_or_default();
        Some(
            // Not an empty answer (SPEC §14 would retry that on another key).
            Reply::json(200, json!({"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}))
                .with_header("Server-Timing", &format!("desc=\"{key}\"")),
        )
    });
    let proxy = Proxy::start(&mock);
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 200);
    let timing = a.header("server-timing").unwrap();
    assert!(timing.starts_with("desc=\"AIza...") && timing.ends_with("000A\""), "{timing}");
    assert_clean("answer headers", &answer_text(&a));
}

/// The real binary at trace level, through every echo above: the log file, its console, the
/// usage file, `/status`, `/metrics` and `/dashboard` hold no key and no token.
#[test]
fn no_key_or_token_in_logs_at_trace_or_in_any_state_or_admin_page() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], suspended_403_echoing(KEYS[0]));
    mock.set_key_reply(KEYS[1], internal_500_echoing(KEYS[1]));
    let dir = temp_dir("leak-process");
    let (mut child, addr, stderr) = spawn(&mock, &dir, &["--log-level", "trace"]);
    let url = format!("http://{addr}");
    for _ in 0..4 {
        post_json(&format!("{url}{GEN}"), &generate_body());
        post_openai(&format!("{url}/v1/chat/completions"), &chat_body(false));
    }
    mock.set_key_reply(KEYS[2], key_invalid_400_echoing(KEYS[2]));
    for _ in 0..2 {
        let a = post_json(&format!("{url}{GEN}"), &generate_body());
        assert_clean("answer", &answer_text(&a));
        let a = post_openai(&format!("{url}/v1/chat/completions"), &chat_body(true));
        assert_clean("answer", &answer_text(&a));
    }
    let auth = [("x-goog-api-key", TOKEN)];
    let mut pages = String::new();
    for page in ["/status", "/metrics", "/dashboard"] {
        let a = send("GET", &format!("{url}{page}"), &auth, b"");
        assert_eq!(a.status, 200, "{page}");
        pages.push_str(&answer_text(&a));
    }
    assert_clean("admin pages", &pages);
    assert!(pages.contains("CONSUMER_SUSPENDED"), "the suspended key is shown disabled");
    assert!(pages.contains("API_KEY_INVALID"), "the invalid key is shown disabled");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let console = stderr.join().unwrap().join("\n");
    assert!(console.contains("TRACE") || console.contains("DEBUG"), "trace logging was on");
    assert_clean("console log", &console);
    let file = std::fs::read_to_string(dir.join("gemini-key-manager.log")).unwrap();
    assert!(file.lines().count() > 10);
    assert_clean("log file", &file);
    assert_clean("usage file", &std::fs::read_to_string(dir.join("usage.json")).unwrap());
}

#[test]
fn a_percent_encoded_key_parameter_is_the_token_and_never_reaches_google() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    for query in ["k%65y", "%6B%65%79", "%6b%65%79"] {
        let a = send("GET", &format!("{}/v1beta/models?{query}={TOKEN}&pageSize=5", proxy.url), &[], b"");
        assert_eq!(a.status, 200, "{query}: {}", a.text());
    }
    for r in mock.requests() {
        assert!(!r.query.contains(TOKEN), "the token went upstream: {}", r.query);
        assert_eq!(r.query, "pageSize=5");
        assert!(KEYS.contains(&r.header("x-goog-api-key").unwrap()));
    }
}

fn many_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("AIzaSyMANYKEYS{i:025}")).collect()
}

#[test]
fn a_300_key_pool_with_an_always_503_upstream_answers_after_max_attempts() {
    let keys = many_keys(300);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(&refs);
    mock.set_script(|_| Some(mock_upstream::overloaded_503()));
    let proxy = Proxy::start_with(&mock.url(), &refs, |_| {});
    let t = Instant::now();
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(a.header("retry-after").is_some());
    assert_eq!(mock.request_count(), 3, "the default --max-attempts is 3");
    assert!(t.elapsed() < Duration::from_secs(5));
    let proxy = Proxy::start_with(&mock.url(), &refs, |c| c.max_attempts = 5);
    let before = mock.request_count();
    post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(mock.request_count() - before, 5);
}

#[test]
fn a_silent_upstream_is_cut_at_the_request_deadline() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|_| Some(Reply::Hang));
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.request_deadline = Duration::from_secs(2));
    let t = Instant::now();
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    let took = t.elapsed();
    assert_eq!(a.status, 504, "{}", a.text());
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(4), "{took:?}");
    assert_eq!(mock.request_count(), 1, "the attempt in flight at the deadline is the last one");
}

#[test]
fn a_quota_walk_stops_at_the_deadline_with_503_and_retry_after() {
    let keys = many_keys(50);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(&refs);
    mock.set_script(|_| {
        std::thread::sleep(Duration::from_millis(300));
        Some(rate_limited_429_no_details())
    });
    let proxy = Proxy::start_with(&mock.url(), &refs, |c| c.request_deadline = Duration::from_secs(1));
    let t = Instant::now();
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(a.header("retry-after").is_some());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let n = mock.request_count();
    assert!((2..=6).contains(&n), "quota errors walk on, within the deadline: {n} attempts");
}

#[test]
fn the_walk_stops_when_the_client_has_gone() {
    let keys = many_keys(20);
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(&refs);
    mock.set_script(|_| {
        std::thread::sleep(Duration::from_millis(400));
        Some(rate_limited_429_no_details())
    });
    let proxy = Proxy::start_with(&mock.url(), &refs, |_| {});
    let body = generate_body().to_string();
    let mut s = TcpStream::connect(proxy.handle.addr()).unwrap();
    write!(
        s,
        "POST {GEN} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    mock.wait_for_requests(1, Duration::from_secs(5));
    drop(s);
    let busy = || proxy.handle.stats().busy_workers.load(Ordering::SeqCst);
    eventually(Duration::from_secs(3), "the worker is free once the client left", || busy() == 0);
    let n = mock.request_count();
    assert!(n <= 3, "the walk went on after the client left: {n} of 20 keys tried");
}

// ---- Framing (RFC 9112) ------------------------------------------------------------------------

/// Everything the proxy writes on one connection until it closes it (or `timeout`).
fn exchange(addr: std::net::SocketAddr, request: &[u8], timeout: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn statuses(text: &str) -> Vec<&str> {
    text.match_indices("HTTP/1.1 ").map(|(i, _)| &text[i + 9..i + 12]).collect()
}

#[test]
fn ambiguous_framing_is_refused_before_any_upstream_attempt_and_the_connection_closed() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let addr = proxy.handle.addr();
    let head = format!("POST {GEN} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\n");
    let smuggled = format!("GET /status HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\n\r\n");
    let cases: Vec<(String, &str)> = vec![
        (format!("{head}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"), "400"),
        (format!("{head}Content-Length: 5\r\nContent-Length: 6\r\n\r\n{{}}xxx{smuggled}"), "400"),
        (format!("{head}Content-Length: 2, 3\r\n\r\n{{}}{smuggled}"), "400"),
        (format!("{head}Content-Length: abc\r\n\r\n{smuggled}"), "400"),
        (format!("{head}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{smuggled}"), "400"),
        (
            format!(
                "{head}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
            "400",
        ),
        (format!("{head}Transfer-Encoding: gzip\r\n\r\n{smuggled}"), "501"),
        (format!("{head}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{smuggled}"), "501"),
    ];
    for (request, status) in &cases {
        let (text, closed) = exchange(addr, request.as_bytes(), Duration::from_secs(5));
        assert_eq!(statuses(&text), vec![*status], "one answer only, the smuggled request unserved: {text}");
        assert!(closed, "the connection closes after a refused framing: {text}");
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"].as_u64().unwrap().to_string(), *status, "Google's shape: {body}");
    }
    // Equal repeated lengths are one length (RFC 9110 §8.6).
    let ok = format!(
        "{head}Content-Type: application/json\r\nContent-Length: 2, 2\r\nConnection: close\r\n\r\n{{}}"
    );
    let (text, _) = exchange(addr, ok.as_bytes(), Duration::from_secs(5));
    assert_eq!(statuses(&text), vec!["200"], "{text}");
    assert_eq!(mock.request_count(), 1, "no refused request reached the upstream");
    // On an OpenAI route the refusal is in OpenAI's shape.
    let openai = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    let (text, closed) = exchange(addr, openai.as_bytes(), Duration::from_secs(5));
    assert!(closed && statuses(&text) == vec!["400"], "{text}");
    let v: serde_json::Value = serde_json::from_str(text.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
}

#[test]
fn a_request_line_over_16_kib_is_414_at_once_without_an_upstream_call() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let long = "a".repeat(17 * 1024);
    let request = format!("GET /v1beta/models/{long}?key={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n");
    let t = Instant::now();
    let (text, closed) = exchange(proxy.handle.addr(), request.as_bytes(), Duration::from_secs(5));
    assert_eq!(statuses(&text), vec!["414"], "{text}");
    assert!(closed && t.elapsed() < Duration::from_secs(2));
    assert_clean("414", &text);
    assert_eq!(mock.request_count(), 0);
    // Just under the limit is served.
    let path = format!("/v1beta/models/{}", "b".repeat(15 * 1024));
    let a = send("GET", &format!("{}{path}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_ne!(a.status, 414);
    assert_eq!(mock.request_count(), 1);
}

#[test]
fn connection_upgrade_on_a_plain_route_is_served_as_http_1_1() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let one = format!(
        "GET /v1beta/models HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
    );
    let two = format!(
        "GET /v1beta/models HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let t = Instant::now();
    let (text, closed) =
        exchange(proxy.handle.addr(), format!("{one}{two}").as_bytes(), Duration::from_secs(10));
    assert_eq!(statuses(&text), vec!["200", "200"], "both answered on the same connection: {text}");
    assert!(closed && t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

#[test]
fn a_body_that_stops_arriving_is_408_and_frees_the_worker() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.workers = 1;
        c.body_timeout = Duration::from_secs(1);
    });
    let addr = proxy.handle.addr();
    let heads = [
        format!(
            "POST {GEN} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{{\"a\":"
        ),
        format!(
            "POST {GEN} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nContent-Length: 5000\r\n\r\n{{\"a\":"
        ),
    ];
    for head in &heads {
        let t = Instant::now();
        let (text, closed) = exchange(addr, head.as_bytes(), Duration::from_secs(10));
        assert_eq!(statuses(&text), vec!["408"], "{text}");
        assert!(closed, "{text}");
        assert!(t.elapsed() < Duration::from_secs(3), "cut after the body timeout: {:?}", t.elapsed());
        // The one worker is free again.
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        assert_eq!(a.status, 200);
    }
    assert_eq!(mock.request_count(), 2);
}

#[test]
fn load_shedding_on_an_openai_route_answers_in_openais_shape() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| r.path.contains("gemini-2.5-pro").then_some(Reply::Hang));
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.workers = 1;
        c.queue_size = 0;
        c.request_deadline = Duration::from_secs(30);
    });
    let url = proxy.url.clone();
    let hold = std::thread::spawn(move || {
        post_json(&format!("{url}/v1beta/models/gemini-2.5-pro:generateContent"), &generate_body()).status
    });
    mock.wait_for_requests(1, Duration::from_secs(5));
    let a = post_openai(&format!("{}/v1/chat/completions", proxy.url), &chat_body(false));
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("1"));
    let v = a.json();
    assert!(v["error"]["type"].is_string() && v["error"]["status"].is_null(), "OpenAI's shape: {v}");
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(
        (a.status, &a.json()["error"]["status"]),
        (503, &json!("UNAVAILABLE")),
        "native stays Google's"
    );
    drop(mock);
    assert_ne!(hold.join().unwrap(), 200);
}
