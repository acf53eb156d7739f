//! The native Gemini pass-through, end to end: a real proxy in front of the scripted mock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const MODEL_PATH: &str = "/v1beta/models/gemini-2.5-flash";

#[test]
fn generate_content_goes_out_with_a_real_key_and_comes_back_untouched() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body());
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert!(v["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap().contains("gemini-2.5-flash"));
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert!(KEYS.contains(&r.key.as_deref().unwrap()), "a pool key went upstream");
    assert_eq!(r.header("x-goog-api-key"), r.key.as_deref());
    assert_eq!(r.json().unwrap(), generate_body());
    assert!(r.headers.iter().all(|(_, v)| !v.contains(TOKEN)), "the client token never goes upstream");
    assert!(!r.query.contains(TOKEN));
}

#[test]
fn all_three_token_styles_are_accepted_and_the_token_is_stripped() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let url = format!("{}{MODEL_PATH}:countTokens", proxy.url);
    let body = generate_body().to_string();
    let bearer = format!("Bearer {TOKEN}");
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        (url.clone(), vec![("x-goog-api-key", TOKEN)]),
        (format!("{url}?key={TOKEN}&alt=json"), vec![]),
        (url.clone(), vec![("authorization", bearer.as_str())]),
    ];
    for (u, headers) in &cases {
        let a = send("POST", u, headers, body.as_bytes());
        assert_eq!(a.status, 200, "{u} {headers:?}: {}", a.text());
        assert!(a.json()["totalTokens"].is_number());
    }
    let seen = mock.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].query, "alt=json", "key= removed, the rest of the query kept");
    for r in &seen {
        assert!(r.header("authorization").is_none(), "the client's Authorization is not forwarded");
        assert!(KEYS.contains(&r.header("x-goog-api-key").unwrap()));
    }
}

#[test]
fn wrong_or_missing_tokens_get_401_in_googles_shape_and_nothing_goes_upstream() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let url = format!("{}{MODEL_PATH}:generateContent", proxy.url);
    for headers in [vec![], vec![("x-goog-api-key", "wrong")], vec![("authorization", "Bearer wrong")]] {
        let a = send("POST", &url, &headers, b"{}");
        assert_eq!(a.status, 401);
        let v = a.json();
        assert_eq!(v["error"]["code"], 401);
        assert_eq!(v["error"]["status"], "UNAUTHENTICATED");
    }
    // A real key is not a client token either.
    assert_eq!(send("POST", &format!("{url}?key={}", KEYS[0]), &[], b"{}").status, 401);
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn the_token_is_checked_before_the_body_is_read() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    // Announce a large body, send none of it: the 401 must come anyway.
    let req = format!(
        "POST {MODEL_PATH}:generateContent HTTP/1.1\r\nHost: x\r\nx-goog-api-key: wrong\r\nContent-Length: 50000000\r\n\r\n"
    );
    let started = Instant::now();
    let answer = raw(proxy.handle.addr(), req.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[test]
fn keys_are_used_round_robin() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    for _ in 0..6 {
        assert_eq!(
            post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body()).status,
            200
        );
    }
    let keys: Vec<String> = mock.requests().iter().map(|r| r.key.clone().unwrap()).collect();
    for k in KEYS {
        assert_eq!(keys.iter().filter(|x| *x == k).count(), 2, "{keys:?}");
    }
}

#[test]
fn unknown_routes_get_404_in_googles_shape() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    for path in ["/", "/v2/models", "/v1betax/models", "//evil.example/v1beta/models"] {
        let a = send("GET", &format!("{}{path}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
        assert_eq!(a.status, 404, "{path}");
        assert_eq!(a.json()["error"]["status"], "NOT_FOUND");
    }
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn oversized_bodies_get_413_and_the_proxy_keeps_serving() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.max_body_bytes = 1000);
    let url = format!("{}{MODEL_PATH}:generateContent", proxy.url);
    let big = vec![b'x'; 5000];
    let a = send("POST", &url, &[("x-goog-api-key", TOKEN)], &big);
    assert_eq!(a.status, 413);
    assert_eq!(a.json()["error"]["code"], 413);
    // A chunked body (no Content-Length) over the limit, too.
    let mut s = TcpStream::connect(proxy.handle.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {MODEL_PATH}:generateContent HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    // The proxy answers as soon as the limit is passed (after the first chunk) and closes: a
    // later write may meet a closed socket (EPIPE), which is the proxy doing its job.
    for _ in 0..3 {
        let mut chunk = b"400\r\n".to_vec();
        chunk.extend_from_slice(&[b'y'; 0x400]);
        chunk.extend_from_slice(b"\r\n");
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 413"), "{line}");
    assert_eq!(mock.request_count(), 0);
    assert_eq!(post_json(&url, &generate_body()).status, 200);
}

/// Regression: tiny_http allocated `vec![0; Content-Length]` when dropping an unread body, so
/// this request aborted the whole process.
#[test]
fn regression_huge_content_length_does_not_abort_the_process() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let req = format!(
        "POST {MODEL_PATH}:generateContent HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nContent-Length: 1000000000000000000\r\n\r\nabc"
    );
    let answer = raw(proxy.handle.addr(), req.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(
        post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body()).status,
        200
    );
}

#[test]
fn oversized_headers_are_refused() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let req = format!("GET /v1beta/models HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(100_000));
    let answer = raw(proxy.handle.addr(), req.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 431"), "{}", &answer[..answer.len().min(100)]);
    assert_eq!(mock.request_count(), 0);
}

#[test]
fn only_the_configured_upstream_is_contacted_whatever_the_request_line_says() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let body = generate_body().to_string();
    let req = format!(
        "POST http://evil.example:9/v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\nHost: evil.example\r\n\
         x-goog-api-key: {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = raw(proxy.handle.addr(), req.as_bytes(), Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen[0].header("host"), Some(mock.addr().to_string().as_str()));
}

#[test]
fn hop_by_hop_and_credential_headers_are_not_forwarded() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = send(
        "POST",
        &format!("{}{MODEL_PATH}:generateContent", proxy.url),
        &[
            ("x-goog-api-key", TOKEN),
            ("content-type", "application/json"),
            ("x-goog-api-client", "genai-py/1.0"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic abc"),
            ("cookie", "session=1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("upgrade", "h2c"),
        ],
        generate_body().to_string().as_bytes(),
    );
    assert_eq!(a.status, 200);
    let r = &mock.requests()[0];
    for gone in
        ["te", "proxy-authorization", "cookie", "x-forwarded-for", "upgrade", "keep-alive", "authorization"]
    {
        assert!(r.header(gone).is_none(), "{gone} was forwarded");
    }
    assert_eq!(r.header("x-goog-api-client"), Some("genai-py/1.0"));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn body_bytes_are_forwarded_untouched_whatever_they_are() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let a = send(
        "POST",
        &format!("{}/upload/v1beta/files?uploadType=media", proxy.url),
        &[("x-goog-api-key", TOKEN), ("content-type", "application/octet-stream")],
        &bytes,
    );
    assert!(a.status < 500, "{}", a.status);
    let seen = mock.requests();
    assert_eq!(seen[0].body, bytes);
    assert_eq!(seen[0].query, "uploadType=media");
}

#[test]
fn any_method_passes_through() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        (r.method == "DELETE" || r.method == "PATCH")
            .then(|| Reply::json(200, json!({"method": r.method, "path": r.path})))
    });
    let proxy = Proxy::start(&mock);
    for m in ["DELETE", "PATCH"] {
        let a =
            send(m, &format!("{}/v1beta/cachedContents/abc", proxy.url), &[("x-goog-api-key", TOKEN)], b"{}");
        assert_eq!(a.status, 200);
        assert_eq!(a.json()["method"], m);
    }
}

#[test]
fn v1_paths_pass_through_like_v1beta() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = send("GET", &format!("{}/v1/models", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(a.status, 200);
    assert!(a.json()["models"].is_array());
    assert_eq!(mock.requests()[0].path, "/v1/models");
}

/// Read a streamed answer line by line, noting when each non-empty line arrived.
fn timed_lines(url: &str, body: &str) -> (u16, Vec<(Duration, String)>) {
    let started = Instant::now();
    let resp = open_stream(url, ("x-goog-api-key", TOKEN), body);
    let status = resp.status().as_u16();
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut lines = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if !line.trim().is_empty() {
            lines.push((started.elapsed(), line));
        }
    }
    (status, lines)
}

#[test]
fn sse_streams_reach_the_client_event_by_event() {
    let mock = MockUpstream::start(&KEYS);
    let delay = Duration::from_millis(300);
    mock.set_stream_delay(delay);
    mock.set_stream_events(4);
    let proxy = Proxy::start(&mock);
    let (status, lines) = timed_lines(
        &format!("{}{MODEL_PATH}:streamGenerateContent?alt=sse", proxy.url),
        &generate_body().to_string(),
    );
    assert_eq!(status, 200);
    let events: Vec<&(Duration, String)> = lines.iter().filter(|(_, l)| l.starts_with("data:")).collect();
    assert_eq!(events.len(), 4);
    let (first, last) = (events[0].0, events[3].0);
    assert!(first < delay, "the first event came after {first:?}, not before the second was even sent");
    assert!(last >= delay * 3, "the last event came after {last:?}");
    let last_event: serde_json::Value =
        serde_json::from_str(events[3].1.trim_start_matches("data:").trim()).unwrap();
    assert!(last_event["usageMetadata"]["totalTokenCount"].is_number());
}

#[test]
fn json_array_streams_reach_the_client_chunk_by_chunk() {
    let mock = MockUpstream::start(&KEYS);
    let delay = Duration::from_millis(300);
    mock.set_stream_delay(delay);
    mock.set_stream_events(3);
    let proxy = Proxy::start(&mock);
    let (status, lines) = timed_lines(
        &format!("{}{MODEL_PATH}:streamGenerateContent", proxy.url),
        &generate_body().to_string(),
    );
    assert_eq!(status, 200);
    let first = lines.first().unwrap().0;
    let last = lines.last().unwrap().0;
    assert!(first < delay, "first piece after {first:?}");
    assert!(last >= delay * 2, "last piece after {last:?}");
    let whole: String = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
    let v: serde_json::Value = serde_json::from_str(&whole).expect("the array arrives whole and valid");
    assert_eq!(v.as_array().unwrap().len(), 3);
}

#[test]
fn a_client_that_leaves_mid_stream_frees_its_worker_and_drops_the_upstream() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(200));
    mock.set_stream_events(50);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.workers = 1;
        c.queue_size = 0;
    });
    {
        let mut s = TcpStream::connect(proxy.handle.addr()).unwrap();
        let body = generate_body().to_string();
        let req = format!(
            "POST {MODEL_PATH}:streamGenerateContent?alt=sse HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    } // the client hangs up here, 49 events early
    assert!(mock.wait_connections_closed(Duration::from_secs(10)), "the upstream connection was dropped");
    // The only worker is free again: a normal request is served, not shed.
    eventually(Duration::from_secs(10), "the worker comes back", || {
        let a = post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body());
        if a.status != 200 {
            assert_eq!(a.status, 503, "{}", a.text());
        }
        a.status == 200
    });
    // The answer goes out before the worker's books are closed: allow it a moment.
    eventually(Duration::from_secs(5), "no worker stays busy", || {
        proxy.handle.stats().busy_workers.load(std::sync::atomic::Ordering::SeqCst) == 0
    });
}

#[test]
fn upstream_errors_that_are_the_requests_fault_come_back_as_they_are() {
    let mock = MockUpstream::start(&KEYS);
    let body = json!({"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}});
    let b2 = body.clone();
    mock.set_script(move |_| Some(Reply::json(400, b2.clone())));
    let proxy = Proxy::start(&mock);
    let a = post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body());
    assert_eq!(a.status, 400);
    assert_eq!(a.json(), body);
    assert_eq!(mock.request_count(), 1, "a 400 is not retried on other keys");
}

#[test]
fn an_unreachable_upstream_is_a_502_after_trying_each_key_once() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = Proxy::start_with(&format!("http://127.0.0.1:{port}"), &KEYS, |_| {});
    let a = post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body());
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["status"], "UNAVAILABLE");
    let h = send("GET", &format!("{}/healthz", proxy.url), &[], b"");
    assert_eq!(h.json()["keys_usable"], 3, "connection errors disable no key");
}

#[test]
fn a_silent_upstream_is_a_504_after_the_read_timeout() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|_| Some(Reply::Hang));
    let proxy = Proxy::start_with(&mock.url(), &KEYS[..1], |c| c.read_timeout = Duration::from_secs(1));
    let started = Instant::now();
    let a = post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body());
    assert_eq!(a.status, 504, "{}", a.text());
    assert_eq!(a.json()["error"]["status"], "DEADLINE_EXCEEDED");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn when_every_worker_is_busy_and_the_queue_is_full_the_answer_is_503_at_once() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| r.path.contains("hang").then_some(Reply::Hang));
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.workers = 1;
        c.queue_size = 0;
    });
    let url = proxy.url.clone();
    let hanging = std::thread::spawn(move || {
        send(
            "POST",
            &format!("{url}/v1beta/models/hang:generateContent"),
            &[("x-goog-api-key", TOKEN)],
            b"{}",
        )
    });
    mock.wait_for_requests(1, Duration::from_secs(10));
    let started = Instant::now();
    let a = post_json(&format!("{}{MODEL_PATH}:generateContent", proxy.url), &generate_body());
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(2));
    let h = send("GET", &format!("{}/healthz", proxy.url), &[], b"");
    assert_eq!(h.status, 200, "/healthz is answered even now");
    assert_eq!(h.json(), json!({"status": "ok", "keys_usable": 3, "keys_total": 3}));
    drop(mock); // lets the hanging request end
    let _ = hanging.join();
}

/// Answers are formatted by the proxy itself (head and body in one write): on one keep-alive
/// connection a 204 carries no body and no length, a 200 exactly its `Content-Length`, so the
/// next answer starts where it should.
#[test]
fn answers_on_one_keep_alive_connection_are_framed_exactly() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        (r.method == "DELETE").then(|| Reply::Http { status: 204, headers: vec![], body: vec![] })
    });
    let proxy = Proxy::start(&mock);
    let mut s = TcpStream::connect(proxy.handle.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let head = |r: &mut BufReader<TcpStream>| -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.ends_with("\r\n"), "every head line ends with CRLF: {line:?}");
            if line == "\r\n" {
                return lines;
            }
            lines.push(line.trim_end().to_string());
        }
    };
    let length = |h: &[String]| {
        h.iter().find_map(|l| {
            l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.parse::<usize>().unwrap())
        })
    };

    write!(s, "DELETE /v1beta/cachedContents/abc HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\n\r\n")
        .unwrap();
    let h = head(&mut r);
    assert_eq!(h[0], "HTTP/1.1 204 No Content");
    assert_eq!(length(&h), None, "{h:?}");
    assert!(h.iter().any(|l| l.starts_with("Date: ") && l.ends_with(" GMT")), "{h:?}");

    for _ in 0..2 {
        write!(s, "GET /v1beta/models HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\n\r\n").unwrap();
        let h = head(&mut r);
        assert_eq!(h[0], "HTTP/1.1 200 OK");
        let mut body = vec![0u8; length(&h).expect("a Content-Length")];
        r.read_exact(&mut body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["models"].is_array());
    }

    // The proxy's own answers (an unknown path) too, and a HEAD gets the length without the body.
    write!(s, "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let h = head(&mut r);
    assert_eq!(h[0], "HTTP/1.1 404 Not Found");
    let mut body = vec![0u8; length(&h).unwrap()];
    r.read_exact(&mut body).unwrap();
    assert!(String::from_utf8_lossy(&body).contains("NOT_FOUND"), "{}", String::from_utf8_lossy(&body));
    write!(s, "HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let h = head(&mut r);
    assert_eq!(h[0], "HTTP/1.1 404 Not Found");
    assert!(length(&h).is_some_and(|n| n > 0), "HEAD gets the length of the body it would have had: {h:?}");
    write!(s, "GET /v1beta/models HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\n\r\n").unwrap();
    assert_eq!(head(&mut r)[0], "HTTP/1.1 200 OK", "no body bytes after the HEAD answer");
}
