//! The OpenAI-compatible routes end to end: real proxy, scripted mock upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::mock_upstream::quota_per_minute_429;
use support::*;

fn chat(proxy: &Proxy, body: &Value) -> Answer {
    send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn chat_raw(proxy: &Proxy, body: &[u8]) -> Answer {
    send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        body,
    )
}

fn hello() -> Value {
    json!({"model": "gemini-2.5-flash", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"}]})
}

fn assert_openai_error(a: &Answer, status: u16) -> Value {
    assert_eq!(a.status, status, "{}", a.text());
    let v = a.json();
    let e = &v["error"];
    assert!(e["message"].is_string() && e["type"].is_string(), "{v}");
    assert!(
        e.as_object().unwrap().contains_key("param") && e.as_object().unwrap().contains_key("code"),
        "{v}"
    );
    v
}

#[test]
fn a_chat_completion_is_translated_both_ways() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = chat(&proxy, &hello());
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    let sent = r.json().unwrap();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.");
    assert_eq!(sent["contents"][0]["role"], "user");
    assert!(KEYS.contains(&r.key.as_deref().unwrap()));
}

#[test]
fn streamed_chat_deltas_arrive_as_the_upstream_sends_them() {
    let mock = MockUpstream::start(&KEYS);
    let delay = Duration::from_millis(300);
    mock.set_stream_delay(delay);
    mock.set_stream_events(4);
    let proxy = Proxy::start(&mock);
    let mut body = hello();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let started = Instant::now();
    let bearer = format!("Bearer {TOKEN}");
    let resp = open_stream(
        &format!("{}/v1/chat/completions", proxy.url),
        ("authorization", &bearer),
        &body.to_string(),
    );
    assert_eq!(resp.status(), 200);
    let ct = resp.headers().get("content-type").unwrap().to_str().unwrap().to_string();
    assert!(ct.starts_with("text/event-stream"), "{ct}");
    let mut events = Vec::new();
    for line in BufReader::new(resp.into_body().into_reader()).lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data: ") {
            events.push((started.elapsed(), data.to_string()));
        }
    }
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<(Duration, Value)> =
        events[..events.len() - 1].iter().map(|(t, d)| (*t, serde_json::from_str(d).unwrap())).collect();
    let ids: std::collections::BTreeSet<String> =
        chunks.iter().map(|(_, c)| c["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 1, "one id for all chunks");
    assert_eq!(chunks[0].1["choices"][0]["delta"]["role"], "assistant");
    let first_content =
        chunks.iter().find(|(_, c)| c["choices"][0]["delta"]["content"].is_string()).unwrap().0;
    assert!(first_content < delay, "first delta after {first_content:?}");
    assert!(chunks.iter().any(|(_, c)| c["choices"][0]["finish_reason"] == "stop"));
    let usage = &chunks.last().unwrap().1;
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(mock.requests()[0].query.contains("alt=sse"));
}

#[test]
fn an_upstream_that_dies_mid_stream_ends_the_openai_stream_with_an_error_event() {
    let mock = MockUpstream::start(&KEYS);
    let first =
        json!({"candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}]});
    mock.set_script(move |r| {
        r.path.contains("streamGenerateContent").then(|| Reply::Sse {
            events: vec![first.clone()],
            delay: Duration::ZERO,
            then: StreamEnd::CloseAbruptly,
        })
    });
    let proxy = Proxy::start(&mock);
    let mut body = hello();
    body["stream"] = json!(true);
    let a = chat(&proxy, &body);
    assert_eq!(a.status, 200);
    let data: Vec<String> =
        a.text().lines().filter_map(|l| l.strip_prefix("data: ").map(str::to_string)).collect();
    assert_eq!(data.last().unwrap(), "[DONE]");
    let error: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert!(error["error"]["message"].as_str().unwrap().contains("mid-stream"), "{error}");
    assert!(data.iter().any(|d| d.contains("\"Hel\"")), "the delta before the break arrived");
    assert_eq!(mock.request_count(), 1, "no retry after the first byte");
    assert_eq!(chat(&proxy, &hello()).status, 200, "still serving");
}

#[test]
fn malformed_truncated_huge_and_deep_bodies_get_400_and_the_proxy_keeps_serving() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.max_body_bytes = 1 << 20);
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(
        "{{\"model\":\"gemini-2.5-flash\",\"messages\":[{{\"role\":\"user\",\"content\":{}\"x\"{}}}]}}",
        "{\"a\":".repeat(5000),
        "}".repeat(5000)
    );
    let cases: Vec<(Vec<u8>, u16, Option<&str>)> = vec![
        (b"{not json".to_vec(), 400, None),
        (br#"{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}"#.to_vec(), 400, None),
        (b"".to_vec(), 400, None),
        (b"[1,2,3]".to_vec(), 400, None),
        (br#"{"messages":[{"role":"user","content":"hi"}]}"#.to_vec(), 400, Some("model")),
        (br#"{"model":"gemini-2.5-flash"}"#.to_vec(), 400, Some("messages")),
        (br#"{"model":"gemini-2.5-flash","messages":"hi"}"#.to_vec(), 400, Some("messages")),
        (deep.into_bytes(), 400, None),
        (deep_obj.into_bytes(), 400, None),
        (vec![b' '; 2 << 20], 413, None),
    ];
    for (body, status, param) in &cases {
        let a = chat_raw(&proxy, body);
        let v = assert_openai_error(&a, *status);
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], *p, "{v}");
        }
    }
    assert_eq!(mock.request_count(), 0);
    assert_eq!(chat(&proxy, &hello()).status, 200);
}

#[test]
fn image_urls_other_than_data_urls_are_refused_and_never_fetched() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let body = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": format!("{}/secret.png", mock.url())}}]}]});
    let v = assert_openai_error(&chat(&proxy, &body), 400);
    assert!(v["error"]["param"].as_str().unwrap().contains("image_url"), "{v}");
    assert_eq!(mock.request_count(), 0, "the URL was not fetched");
}

#[test]
fn wrong_tokens_get_openais_401() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", "Bearer nope")],
        hello().to_string().as_bytes(),
    );
    let v = assert_openai_error(&a, 401);
    assert_eq!(v["error"]["code"], "invalid_api_key");
}

#[test]
fn upstream_errors_are_translated_to_openais_shape_with_the_same_status() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        r.path.contains("gemini-2.5-pro").then(|| {
            Reply::json(
                400,
                json!({"error": {"code": 400, "message": "Bad temperature", "status": "INVALID_ARGUMENT"}}),
            )
        })
    });
    let proxy = Proxy::start(&mock);
    let mut body = hello();
    body["model"] = json!("models/gemini-2.5-pro");
    let v = assert_openai_error(&chat(&proxy, &body), 400);
    assert_eq!(v["error"]["message"], "Bad temperature");
    body["model"] = json!("no-such-model");
    assert_openai_error(&chat(&proxy, &body), 404);
}

#[test]
fn rate_limits_on_every_key_are_a_503_with_retry_after() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        r.path.contains(":generateContent").then(|| quota_per_minute_429("gemini-2.5-flash", "26s"))
    });
    let proxy = Proxy::start(&mock);
    let a = chat(&proxy, &hello());
    let v = assert_openai_error(&a, 503);
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((20..=26).contains(&retry), "{retry}");
    assert!(v["error"]["message"].as_str().unwrap().contains("gemini-2.5-flash"));
}

#[test]
fn models_come_from_every_page_of_geminis_list() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_models_page_size(2);
    let proxy = Proxy::start(&mock);
    let bearer = format!("Bearer {TOKEN}");
    let a = send("GET", &format!("{}/v1/models", proxy.url), &[("authorization", &bearer)], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(
        ids.len() > 2 && ids.contains(&"gemini-2.5-flash") && ids.contains(&"text-embedding-004"),
        "{ids:?}"
    );
    assert!(
        v["data"].as_array().unwrap().iter().all(|m| m["object"] == "model" && m["owned_by"] == "google")
    );
    let one =
        send("GET", &format!("{}/v1/models/gemini-2.5-pro", proxy.url), &[("authorization", &bearer)], b"");
    assert_eq!(one.json()["id"], "gemini-2.5-pro");
    let none = send("GET", &format!("{}/v1/models/nope", proxy.url), &[("authorization", &bearer)], b"");
    assert_openai_error(&none, 404);
    // Without Bearer, /v1/models is Gemini's own v1 list.
    let native = send("GET", &format!("{}/v1/models", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert!(native.json()["models"].is_array());
}

#[test]
fn embeddings_go_through_batch_embed_contents() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = send(
        "POST",
        &format!("{}/v1/embeddings", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        json!({"model": "text-embedding-004", "input": ["one", "two"], "dimensions": 4})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["embedding"].as_array().unwrap().len(), 4);
    let r = &mock.requests()[0];
    assert_eq!(r.path, "/v1beta/models/text-embedding-004:batchEmbedContents");
    assert_eq!(r.json().unwrap()["requests"][0]["outputDimensionality"], 4);
}

#[test]
fn geminis_own_openai_layer_gets_the_real_key_as_bearer() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let a = send(
        "POST",
        &format!("{}/v1beta/openai/chat/completions", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        hello().to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let r = &mock.requests()[0];
    assert!(KEYS.contains(&r.bearer().unwrap().as_str()));
    assert!(r.header("x-goog-api-key").is_none());
}
