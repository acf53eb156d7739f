//! Quota intelligence through the real proxy (SPEC §14): limits learned from Google's 429s and
//! configured with `--limits`, the 503 that saves a refused call, what `/status` and `/metrics`
//! show, pool-wide throttling, fallback models, the retry of empty answers, and keep-alives on
//! silent streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::mock_upstream::{quota_per_minute_429, rate_limited_429_no_details};
use support::*;

const FLASH: &str = "gemini-2.5-flash";
const PRO: &str = "gemini-2.5-pro";

fn metrics(proxy: &Proxy) -> String {
    send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text()
}

fn key_status(st: &Value, key: &str) -> Value {
    let fp = gemini_key_manager::keyfile::fingerprint(key);
    st["keys"].as_array().unwrap().iter().find(|k| k["id"] == fp).cloned().expect("key in /status")
}

/// Google's per-minute limit for every key and model: `limit` generate requests, then its 429 (which names
/// the limit as 10, what `quota_per_minute_429` says, and asks for a 1 s wait). Counts the 429s.
fn limit_each_key(mock: &MockUpstream, limit: usize) -> Arc<Mutex<(HashMap<String, usize>, usize)>> {
    let books = Arc::new(Mutex::new((HashMap::new(), 0usize)));
    let b = books.clone();
    mock.set_script(move |r| {
        if !r.path.contains("generateContent") {
            return None;
        }
        let mut b = b.lock().unwrap();
        let n = b.0.entry(format!("{:?} {:?}", r.key, r.model())).or_insert(0);
        if *n < limit {
            *n += 1;
            return None;
        }
        b.1 += 1;
        Some(quota_per_minute_429(&r.model().unwrap_or_default(), "1s"))
    });
    books
}

#[test]
fn after_one_429_a_learned_per_minute_limit_answers_503_instead_of_sending() {
    let mock = MockUpstream::start(&KEYS);
    let books = limit_each_key(&mock, 10);
    let proxy = Proxy::start(&mock);
    for _ in 0..30 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    // The 31st: each project's first 429 teaches its limit (10 a minute).
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(books.lock().unwrap().1, 3, "one 429 per project");
    // Google asked for a 1 s wait; once it is over, the window the proxy counted is still full.
    eventually(Duration::from_secs(5), "the 1 s cooldowns end", || {
        status(&proxy)["keys"].as_array().unwrap().iter().all(|k| k["state"] == "usable")
    });
    let sent = mock.request_count();
    for _ in 0..5 {
        let a = generate(&proxy, FLASH);
        assert_eq!(a.status, 503, "{}", a.text());
        let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
        assert!((50..=62).contains(&retry), "until the first request leaves the window: {retry}");
        assert!(a.json()["error"]["message"].as_str().unwrap().contains(FLASH));
    }
    assert_eq!(mock.request_count(), sent, "nothing a known limit refuses goes upstream");
    assert_eq!(books.lock().unwrap().1, 3);
    // Another model is not limited by it.
    assert_eq!(generate(&proxy, PRO).status, 200);
    // /status shows what was learned, per key and model.
    let st = status(&proxy);
    let m = &key_status(&st, KEYS[0])["models"][FLASH];
    assert_eq!(m["limits"], json!({"rpm": 10, "rpd": null, "tpm": null}), "{m}");
    assert_eq!(m["remaining_today"], Value::Null);
    assert_eq!(m["requests"], 10);
    let text = metrics(&proxy);
    let fp = gemini_key_manager::keyfile::fingerprint(KEYS[0]);
    assert!(
        text.contains(&format!("gkm_key_limit{{key=\"{fp}\",model=\"{FLASH}\",limit=\"rpm\"}} 10\n")),
        "{text}"
    );
}

#[test]
fn learned_limits_survive_a_restart() {
    let mock = MockUpstream::start(&KEYS);
    let books = limit_each_key(&mock, 2);
    let dir = temp_dir("learned");
    let proxy = Proxy::start_in(dir.clone(), &mock.url(), &KEYS[..1], |_| {});
    for _ in 0..2 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    assert_eq!(generate(&proxy, FLASH).status, 503);
    proxy.handle.shutdown().unwrap();
    let proxy = Proxy::start_in(dir, &mock.url(), &KEYS[..1], |_| {});
    let st = status(&proxy);
    assert_eq!(key_status(&st, KEYS[0])["models"][FLASH]["limits"]["rpm"], 10);
    // The window was not persisted, but today's count and the learned limit were.
    let saved = std::fs::read_to_string(proxy.dir.join("usage.json")).unwrap();
    let saved: Value = serde_json::from_str(&saved).unwrap();
    let record = &saved["limits"][0];
    assert_eq!(
        (record["model"].as_str(), record["rpm"].as_u64(), record["sent_today"].as_u64()),
        (Some(FLASH), Some(10), Some(2)),
        "{saved}"
    );
    assert_eq!(books.lock().unwrap().1, 1);
}

#[test]
fn configured_limits_cap_each_project_and_show_what_remains_today() {
    let mock = MockUpstream::start(&KEYS);
    let lines = [format!("{} proj-a", KEYS[0]), format!("{} proj-a", KEYS[1]), format!("{} proj-b", KEYS[2])];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let proxy = Proxy::start_with(&mock.url(), &lines, |c| {
        c.limits = gemini_key_manager::limits::Configured::parse("gemini-2.5-*=rpd:3/rpm:100").unwrap();
    });
    for _ in 0..6 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503, "{}", a.text());
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!(retry > 60, "until the reset: {retry}");
    assert_eq!(mock.request_count(), 6, "no request past a configured limit");
    let st = status(&proxy);
    let m = &key_status(&st, KEYS[0])["models"][FLASH];
    assert_eq!(m["limits"], json!({"rpm": 100, "rpd": 3, "tpm": null}));
    assert_eq!(m["remaining_today"], 0);
    assert_eq!(st["models"][FLASH], json!({"projects": 2, "rpd": 6, "remaining_today": 0}));
    assert!(metrics(&proxy).contains(&format!("gkm_model_remaining_today{{model=\"{FLASH}\"}} 0\n")));
    let page = send("GET", &format!("{}/dashboard", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text();
    assert!(page.contains("0 of 6 left today across 2 projects"), "the dashboard sums per model");
}

#[test]
fn bare_429s_from_three_projects_cool_the_model_pool_wide_without_blaming_keys() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| r.path.contains(":generateContent").then(rate_limited_429_no_details));
    let proxy = Proxy::start(&mock);
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503, "{}", a.text());
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "a pool-wide cooldown of 5 s: {retry}");
    assert_eq!(mock.request_count(), 3);
    // The next request does not walk the keys again.
    assert_eq!(generate(&proxy, FLASH).status, 503);
    assert_eq!(mock.request_count(), 3);
    // No key is cooled or parked for it, and other models are served.
    let st = status(&proxy);
    for k in st["keys"].as_array().unwrap() {
        assert_eq!(k["state"], "usable", "{k}");
    }
    mock.clear_script();
    assert_eq!(generate(&proxy, PRO).status, 200);
}

/// A streamed answer's status, headers and whole body.
fn stream_of(url: &str, auth: (&str, &str), body: &str) -> (u16, Vec<(String, String)>, String) {
    let resp = open_stream(url, auth, body);
    let status = resp.status().as_u16();
    let headers = headers_of(&resp);
    let text = resp.into_body().read_to_string().unwrap();
    (status, headers, text)
}

fn silent_upstream_proxy() -> (MockUpstream, Proxy) {
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(900));
    mock.set_stream_events(2);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.keepalive = Duration::from_millis(250));
    (mock, proxy)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn silent_streams_get_keep_alives_that_keep_their_framing() {
    let (_mock, proxy) = silent_upstream_proxy();
    let auth = ("x-goog-api-key", TOKEN);
    let body = generate_body().to_string();
    // Native SSE: comment lines between events.
    let url = format!("{}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse", proxy.url);
    let (status, headers, text) = stream_of(&url, auth, &body);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some("no-cache, no-transform"));
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    assert!(text.contains("\r\n\r\n: keep-alive\n\n"), "{text:?}");
    let events: Vec<Value> = text
        .split(['\r', '\n'])
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| serde_json::from_str(d.trim()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text:?}");
    // Native JSON array: whitespace between elements; the array stays valid JSON.
    let url = format!("{}/v1beta/models/{FLASH}:streamGenerateContent", proxy.url);
    let (status, headers, text) = stream_of(&url, auth, &body);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    assert!(text.contains("}\n\n"), "a newline after the first element: {text:?}");
    let v: Value = serde_json::from_str(&text).expect("still one valid array");
    assert_eq!(v.as_array().unwrap().len(), 2);
    // OpenAI chat: SSE comments too.
    let chat = json!({"model": FLASH, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let url = format!("{}/v1/chat/completions", proxy.url);
    let (status, headers, text) =
        stream_of(&url, ("authorization", &format!("Bearer {TOKEN}")), &chat.to_string());
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), Some("no-cache, no-transform"));
    assert!(text.contains("\n\n: keep-alive\n\n"), "{text:?}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    // Anthropic: ping events (its own keep-alive), not comments.
    let msg = json!({"model": FLASH, "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let url = format!("{}/v1/messages", proxy.url);
    let (status, headers, text) = stream_of(&url, ("x-api-key", TOKEN), &msg.to_string());
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    assert!(text.contains("event: ping"), "{text:?}");
    assert!(!text.contains(": keep-alive"), "{text:?}");
}

#[test]
fn keep_alives_can_be_turned_off() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(600));
    mock.set_stream_events(2);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.keepalive = Duration::ZERO);
    let url = format!("{}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse", proxy.url);
    let (status, headers, text) = stream_of(&url, ("x-goog-api-key", TOKEN), &generate_body().to_string());
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"), "the headers stay");
    assert!(!text.contains("keep-alive"), "{text:?}");
}

fn with_fallback(mock: &MockUpstream) -> Proxy {
    Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.fallbacks = gemini_key_manager::fallback::Fallbacks::parse(&format!("{PRO}>{FLASH}")).unwrap();
    })
}

fn pro_used_up(mock: &MockUpstream) {
    mock.set_script(|r| {
        (r.model().as_deref() == Some(PRO)).then(|| support::mock_upstream::quota_per_day_429(PRO))
    });
}

#[test]
fn a_native_request_falls_back_to_the_next_model_of_its_chain() {
    let mock = MockUpstream::start(&KEYS);
    pro_used_up(&mock);
    let proxy = with_fallback(&mock);
    // The request whose own attempts use the last key of the model up.
    let a = generate(&proxy, PRO);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-gemini-model-fallback"), Some(format!("{PRO}>{FLASH}").as_str()));
    assert_eq!(a.json()["modelVersion"], FLASH, "as Google sends it");
    let models: Vec<String> = mock.requests().iter().filter_map(|r| r.model()).collect();
    assert_eq!(models, [PRO, PRO, PRO, FLASH]);
    assert!(mock.requests()[3].path.ends_with(&format!("/models/{FLASH}:generateContent")));
    // Now every key is parked for it: straight to the fallback.
    let a = generate(&proxy, PRO);
    assert_eq!(a.header("x-gemini-model-fallback"), Some(format!("{PRO}>{FLASH}").as_str()));
    assert_eq!(mock.request_count(), 5);
    // Streams too.
    let url = format!("{}/v1beta/models/{PRO}:streamGenerateContent?alt=sse", proxy.url);
    let resp = open_stream(&url, ("x-goog-api-key", TOKEN), &generate_body().to_string());
    assert_eq!(resp.headers().get("x-gemini-model-fallback").unwrap(), &format!("{PRO}>{FLASH}"));
    assert!(resp.into_body().read_to_string().unwrap().contains(FLASH));
    // The usage is booked to the model that served it.
    let st = status(&proxy);
    let flash: u64 = st["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["models"][FLASH]["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(flash, 3);
    // A model of no chain, and a proxy without chains, answer 503 as before.
    mock.set_script(|r| {
        (r.model().as_deref() == Some(FLASH)).then(|| support::mock_upstream::quota_per_day_429(FLASH))
    });
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503);
    assert_eq!(a.header("x-gemini-model-fallback"), None);
}

#[test]
fn without_a_chain_there_is_no_fallback() {
    let mock = MockUpstream::start(&KEYS);
    pro_used_up(&mock);
    let proxy = Proxy::start(&mock);
    let a = generate(&proxy, PRO);
    assert_eq!(a.status, 503);
    assert_eq!(a.header("x-gemini-model-fallback"), None);
    assert_eq!(mock.request_count(), 3);
}

#[test]
fn translated_answers_name_the_model_that_served_them() {
    let mock = MockUpstream::start(&KEYS);
    pro_used_up(&mock);
    let proxy = with_fallback(&mock);
    let chat = json!({"model": PRO, "messages": [{"role": "user", "content": "Hi"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        chat.to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["model"], FLASH);
    assert_eq!(a.header("x-gemini-model-fallback"), Some(format!("{PRO}>{FLASH}").as_str()));
    let msg = json!({"model": PRO, "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]});
    let a = send(
        "POST",
        &format!("{}/v1/messages", proxy.url),
        &[("x-api-key", TOKEN), ("content-type", "application/json")],
        msg.to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["model"], FLASH);
    assert_eq!(a.header("x-gemini-model-fallback"), Some(format!("{PRO}>{FLASH}").as_str()));
}

fn empty_answer() -> Reply {
    Reply::json(
        200,
        json!({"candidates": [{"content": {"role": "model"}, "finishReason": "STOP", "index": 0}],
               "usageMetadata": {"promptTokenCount": 1, "totalTokenCount": 1}, "modelVersion": FLASH}),
    )
}

#[test]
fn an_empty_answer_is_retried_once_on_another_key() {
    let mock = MockUpstream::start(&KEYS);
    let first = Arc::new(Mutex::new(true));
    let f = first.clone();
    mock.set_script(move |r| {
        let mut first = f.lock().unwrap();
        (r.path.ends_with(":generateContent") && std::mem::replace(&mut *first, false)).then(empty_answer)
    });
    let proxy = Proxy::start(&mock);
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 200);
    assert!(a.json()["candidates"][0]["content"]["parts"][0]["text"].is_string(), "{}", a.text());
    let seen = mock.requests();
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].key, seen[1].key, "another key");
    assert_eq!(status(&proxy)["totals"]["requests"], 2, "both answers count");
    // Empty twice: the second empty answer is returned, no third attempt.
    mock.set_script(|r| r.path.ends_with(":generateContent").then(empty_answer));
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 200);
    assert!(a.json()["candidates"][0]["content"]["parts"].is_null());
    assert_eq!(mock.request_count(), 4);
    // A blocked prompt is no empty answer; streams are not retried.
    mock.set_script(|r| {
        r.path.ends_with(":generateContent").then(|| {
            Reply::json(200, json!({"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": FLASH}))
        })
    });
    assert_eq!(generate(&proxy, FLASH).json()["promptFeedback"]["blockReason"], "SAFETY");
    assert_eq!(mock.request_count(), 5);
}
