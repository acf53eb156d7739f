//! Faults of the network, the upstream and the disk, each through the real proxy: what the
//! client gets, and that the proxy keeps serving afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::time::Duration;

use serde_json::json;
use support::mock_upstream::overloaded_503;
use support::*;

const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const SSE: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
const ARRAY: &str = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";

fn chunk(text: &str) -> serde_json::Value {
    json!({"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}]})
}

/// Read a streamed answer to its end; Err when the body ended broken.
fn read_stream(url: &str) -> (u16, Result<String, String>) {
    let resp = open_stream(url, ("x-goog-api-key", TOKEN), &generate_body().to_string());
    let status = resp.status().as_u16();
    let mut text = String::new();
    let r = resp.into_body().into_reader().read_to_string(&mut text);
    (status, r.map(|_| text.clone()).map_err(|e| format!("{e} after {text:?}")))
}

#[test]
fn an_upstream_that_closes_mid_stream_breaks_the_native_stream_without_retry() {
    for (path, reply) in [
        (
            SSE,
            Reply::Sse {
                events: vec![chunk("one"), chunk("two")],
                delay: Duration::ZERO,
                then: StreamEnd::CloseAbruptly,
            },
        ),
        (
            ARRAY,
            Reply::JsonArray {
                chunks: vec![chunk("one"), chunk("two")],
                delay: Duration::ZERO,
                then: StreamEnd::CloseAbruptly,
            },
        ),
    ] {
        let mock = MockUpstream::start(&KEYS);
        let r2 = reply.clone();
        mock.set_script(move |r| r.path.contains("streamGenerateContent").then(|| r2.clone()));
        let proxy = Proxy::start(&mock);
        let (status, body) = read_stream(&format!("{}{path}", proxy.url));
        assert_eq!(status, 200);
        let err = body.expect_err("the client must see that the body is incomplete");
        assert!(err.contains("one"), "what came before the break arrived: {err}");
        assert_eq!(mock.request_count(), 1, "no retry once bytes went out");
        assert_eq!(post_json(&format!("{}{GEN}", proxy.url), &generate_body()).status, 200, "still serving");
    }
}

#[test]
fn an_upstream_that_goes_silent_mid_stream_breaks_it_after_the_read_timeout() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        r.path.contains("streamGenerateContent").then(|| Reply::Chunked {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            chunks: vec![b"data: {\"candidates\":[]}\r\n\r\n".to_vec(), b"data: {}\r\n\r\n".to_vec()],
            delay: Duration::from_secs(30),
            then: StreamEnd::Finish,
        })
    });
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.read_timeout = Duration::from_secs(1));
    let started = std::time::Instant::now();
    let (status, body) = read_stream(&format!("{}{SSE}", proxy.url));
    assert_eq!(status, 200);
    assert!(body.is_err());
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn a_refusing_upstream_is_502_after_each_key_once_and_disables_nothing() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let proxy = Proxy::start_with(&format!("http://127.0.0.1:{port}"), &KEYS, |_| {});
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 502);
    let metrics = send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text();
    assert!(metrics.contains("gkm_upstream_attempts_total{outcome=\"network\"} 3"), "{metrics}");
    let status = send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", TOKEN)], b"").json();
    assert!(status["keys"].as_array().unwrap().iter().all(|k| k["state"] == "usable"));
}

#[test]
fn garbage_from_the_upstream_is_a_clear_error_and_the_proxy_keeps_serving() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    for (case, want_native, want_openai) in
        [("not-http", 502, 502), ("truncated", 502, 502), ("html", 200, 502), ("error-200", 200, 502)]
    {
        let reply = match case {
            "not-http" => Reply::Raw(b"SSH-2.0-OpenSSH_9.6\r\n".to_vec()),
            "truncated" => Reply::Raw(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"candidates\":[".to_vec(),
            ),
            "html" => Reply::Http {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: b"<html>captive portal</html>".to_vec(),
            },
            _ => Reply::json(200, json!({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}})),
        };
        for k in KEYS {
            mock.set_key_reply(k, reply.clone());
        }
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        assert_eq!(a.status, want_native, "native {case}: {}", a.text());
        if want_native == 502 {
            assert_eq!(a.json()["error"]["status"], "UNAVAILABLE");
        }
        let o = send(
            "POST",
            &format!("{}/v1/chat/completions", proxy.url),
            &[("authorization", &format!("Bearer {TOKEN}"))],
            json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(o.status, want_openai, "openai {case}: {}", o.text());
        assert!(o.json()["error"]["message"].is_string());
        for k in KEYS {
            mock.clear_key_reply(k);
        }
        assert_eq!(post_json(&format!("{}{GEN}", proxy.url), &generate_body()).status, 200, "after {case}");
    }
}

#[test]
fn a_storm_of_503s_is_retried_and_parks_or_disables_nothing() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], overloaded_503());
    mock.set_key_reply(KEYS[1], overloaded_503());
    let proxy = Proxy::start(&mock);
    for _ in 0..30 {
        assert_eq!(post_json(&format!("{}{GEN}", proxy.url), &generate_body()).status, 200);
    }
    let status = send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", TOKEN)], b"").json();
    assert!(status["keys"].as_array().unwrap().iter().all(|k| k["state"] == "usable"), "{status}");
    assert_eq!(status["totals"]["requests"], 30);
}

#[test]
fn a_usage_file_that_cannot_be_written_does_not_stop_serving_and_is_saved_again_later() {
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("disk");
    let books = dir.join("books");
    std::fs::create_dir_all(&books).unwrap();
    let usage = books.join("usage.json");
    let proxy = Proxy::start_in(dir.clone(), &mock.url(), &KEYS, |c| c.usage_file = usage);
    let (handle, url) = (proxy.handle, proxy.url);
    handle.flush().unwrap();
    // The directory disappears (a lost mount, a full or read-only disk: root ignores permission
    // bits, so this is how a test makes every write fail).
    std::fs::rename(&books, dir.join("books.away")).unwrap();
    for _ in 0..5 {
        assert_eq!(post_json(&format!("{url}{GEN}"), &generate_body()).status, 200, "still serving");
    }
    let err = handle.flush().unwrap_err();
    assert!(err.contains("cannot write usage file"), "{err}");
    std::fs::rename(dir.join("books.away"), &books).unwrap();
    handle.flush().unwrap();
    let total = requests_on_disk(&books);
    assert_eq!(total, 5, "nothing was lost while the disk was away");
    let _ = handle.shutdown();
}
