//! The Anthropic Messages API through the pool (SPEC §12): messages whole and streamed (with
//! `ping` during upstream silence), tool use over two turns carrying Gemini's thought signature,
//! count_tokens, the `max_tokens` clamp, aliases, and every error in Anthropic's shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::mock_upstream::THOUGHT_SIGNATURE;
use support::*;

fn proxy(mock: &MockUpstream) -> Proxy {
    Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.aliases = gemini_key_manager::alias::Aliases::parse("claude-*=gemini-2.5-flash").unwrap();
        c.keepalive = Duration::from_secs(1);
    })
}

fn messages(proxy: &Proxy, body: &Value) -> Answer {
    send(
        "POST",
        &format!("{}/v1/messages?beta=true", proxy.url),
        &[
            ("x-api-key", TOKEN),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// `(event name, data)` of every event of an SSE text.
fn events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("").to_string();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
            (name, serde_json::from_str(data).unwrap_or(Value::Null))
        })
        .collect()
}

/// What Claude Code sends (observed): beta query, adaptive thinking, cache_control, fields and
/// schema keywords Gemini refuses. None of them may reach Google; max_tokens is clamped.
#[test]
fn a_claude_code_shaped_request_is_answered_and_nothing_gemini_refuses_goes_upstream() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let body = json!({
        "model": "claude-sonnet-4-5-20250929", "max_tokens": 128000,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": []}, "output_config": {"effort": "high"},
        "system": [
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "Be brief."},
            {"type": "text", "text": "Env.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
            {"type": "text", "text": "Say hi", "cache_control": {"type": "ephemeral"}}]}],
        "metadata": {"user_id": "u1"},
    });
    let a = messages(&proxy, &body);
    assert_eq!(a.status, 200, "{}", a.text());
    let m = a.json();
    assert_eq!((m["type"].as_str(), m["role"].as_str()), (Some("message"), Some("assistant")));
    assert_eq!(m["model"], "claude-sonnet-4-5-20250929", "the answer names the model asked for");
    assert_eq!(m["stop_reason"], "end_turn");
    assert!(m["content"][0]["text"].as_str().unwrap().contains("Hello"), "{m}");
    assert!(m["usage"]["input_tokens"].as_u64().is_some() && m["usage"]["output_tokens"].as_u64().is_some());
    let sent = mock.requests().into_iter().rev().find(|r| r.path.contains(":generateContent")).unwrap();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent", "aliased");
    let sent = sent.json().unwrap();
    let mut keys = Vec::new();
    keys_anywhere(&sent, &mut keys);
    for refused in ["cache_control", "context_management", "output_config", "metadata", "thinking", "display"]
    {
        assert!(!keys.iter().any(|k| k == refused), "{refused} went upstream: {sent}");
    }
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 65536, "clamped to the model's limit: {sent}");
}

#[test]
fn tool_use_over_two_turns_brings_the_thought_signature_back() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let tools = json!([{"name": "get_weather", "description": "Weather of a city",
        "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
        {"name": "later", "description": "deferred", "defer_loading": true,
         "input_schema": {"type": "object", "properties": {}}}]);
    let first = json!({"model": "gemini-2.5-flash", "max_tokens": 1024, "tools": tools,
        "messages": [{"role": "user", "content": "Weather in Paris?"}]});
    let a = messages(&proxy, &first);
    assert_eq!(a.status, 200, "{}", a.text());
    let m = a.json();
    assert_eq!(m["stop_reason"], "tool_use", "{m}");
    let content = m["content"].as_array().unwrap().clone();
    let tool_use = content.iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(
        (tool_use["name"].as_str(), &tool_use["input"]),
        (Some("get_weather"), &json!({"city": "Paris"}))
    );
    let sent = mock.requests().last().unwrap().json().unwrap();
    let mut keys = Vec::new();
    keys_anywhere(&sent, &mut keys);
    for refused in ["$schema", "additionalProperties", "defer_loading"] {
        assert!(!keys.iter().any(|k| k == refused), "{refused} went upstream: {sent}");
    }
    // The client sends the assistant turn back as it got it, then the tool result.
    let second = json!({"model": "gemini-2.5-flash", "max_tokens": 1024, "tools": tools, "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "sunny"}]}]});
    let a = messages(&proxy, &second);
    assert_eq!(a.status, 200, "the mock refuses a function call without its signature: {}", a.text());
    assert!(a.json()["content"][0]["text"].as_str().unwrap().contains("sunny"), "{}", a.text());
    let sent = mock.requests().last().unwrap().json().unwrap();
    assert!(sent.to_string().contains(THOUGHT_SIGNATURE), "{sent}");
}

#[test]
fn a_stream_arrives_in_pieces_with_pings_while_the_upstream_is_silent() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(1600));
    mock.set_stream_events(3);
    let proxy = proxy(&mock);
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 200, "stream": true,
        "messages": [{"role": "user", "content": "Hi"}]});
    let resp = open_stream(&format!("{}/v1/messages", proxy.url), ("x-api-key", TOKEN), &body.to_string());
    assert_eq!(resp.status(), 200);
    let (text, first_delta, total) = read_timed(resp, "content_block_delta");
    assert!(
        first_delta.unwrap() + Duration::from_millis(2000) < total,
        "the first delta came early: {first_delta:?} of {total:?}"
    );
    let evs = events(&text);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert!(names.contains(&"ping"), "a ping during 1.6 s of silence (keep-alive 1 s): {names:?}");
    assert!(names.contains(&"content_block_start") && names.contains(&"content_block_stop"));
    let delta = evs.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "end_turn");
    assert_eq!(evs[0].1["message"]["model"], "claude-haiku-4-5");
    let text_out: String = evs
        .iter()
        .filter(|(n, v)| n == "content_block_delta" && v["delta"]["type"] == "text_delta")
        .map(|(_, v)| v["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert!(!text_out.is_empty());
}

#[test]
fn count_tokens_goes_to_gemini_count_tokens() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let a = send(
        "POST",
        &format!("{}/v1/messages/count_tokens", proxy.url),
        &[("x-api-key", TOKEN), ("content-type", "application/json")],
        json!({"model": "claude-sonnet-4-5", "system": "Be brief.", "messages": [{"role": "user", "content": "Hello there"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.json()["input_tokens"].as_u64().unwrap() > 0, "{}", a.text());
    assert_eq!(mock.requests().last().unwrap().path, "/v1beta/models/gemini-2.5-flash:countTokens");
}

#[test]
fn errors_are_in_anthropics_shape() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let kind = |a: &Answer| {
        (
            a.status,
            a.json()["type"].as_str().map(str::to_string),
            a.json()["error"]["type"].as_str().map(str::to_string),
        )
    };
    // Wrong token.
    let a = send("POST", &format!("{}/v1/messages", proxy.url), &[("x-api-key", "wrong")], b"{}");
    assert_eq!(kind(&a), (401, Some("error".into()), Some("authentication_error".into())));
    // Malformed JSON, missing fields.
    let a = messages(&proxy, &json!({"messages": []}));
    assert_eq!(kind(&a).2.as_deref(), Some("invalid_request_error"), "{}", a.text());
    assert!(a.text().contains("model"), "names the field: {}", a.text());
    let a = send("POST", &format!("{}/v1/messages", proxy.url), &[("x-api-key", TOKEN)], b"{not json");
    assert_eq!((a.status, kind(&a).2.as_deref()), (400, Some("invalid_request_error")));
    // A URL image is refused, never fetched.
    let before = mock.request_count();
    let a = messages(
        &proxy,
        &json!({"model": "gemini-2.5-flash", "max_tokens": 10, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": "http://127.0.0.1:1/cat.png"}}]}]}),
    );
    assert_eq!((a.status, kind(&a).2.as_deref()), (400, Some("invalid_request_error")), "{}", a.text());
    assert!(mock.requests()[before..].iter().all(|r| !r.path.contains("generateContent")));
    // Every key exhausted: 503 overloaded_error with Retry-After.
    let a = messages(
        &proxy,
        &json!({"model": "exhausted-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!((a.status, kind(&a).2.as_deref()), (503, Some("overloaded_error")), "{}", a.text());
    assert!(a.header("retry-after").is_some());
    // An upstream 4xx, translated.
    let a = messages(
        &proxy,
        &json!({"model": "no-such-model", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!((a.status, kind(&a).2.as_deref()), (404, Some("not_found_error")), "{}", a.text());
}
