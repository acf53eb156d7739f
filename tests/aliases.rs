//! Model aliases (SPEC §12): the Gemini model used upstream for a model a client names, on every
//! surface; answers name the model the client asked for; `/v1/models` lists alias names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::json;
use support::*;

fn proxy(mock: &MockUpstream) -> Proxy {
    Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.aliases = gemini_key_manager::alias::Aliases::parse(
            "claude-*=gemini-2.5-pro,gpt-4o-mini=gemini-2.5-flash-lite,gpt-*=gemini-2.5-flash",
        )
        .unwrap();
    })
}

#[test]
fn an_aliased_model_goes_upstream_as_its_gemini_model_on_every_surface() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    // Native path.
    let a =
        post_json(&format!("{}/v1beta/models/claude-opus-4-1:generateContent", proxy.url), &generate_body());
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(mock.requests().last().unwrap().path, "/v1beta/models/gemini-2.5-pro:generateContent");
    // OpenAI chat, whole and streamed: the answer names the model asked for.
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["model"], "gpt-4o");
    assert_eq!(mock.requests().last().unwrap().model().as_deref(), Some("gemini-2.5-flash"));
    let body =
        json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let a = send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", &format!("Bearer {TOKEN}")), ("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert!(a.text().contains("\"model\":\"gpt-4o-mini\""), "{}", a.text());
    assert_eq!(
        mock.requests().last().unwrap().model().as_deref(),
        Some("gemini-2.5-flash-lite"),
        "first match wins"
    );
    // The books are kept under the Gemini model.
    let status = send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", TOKEN)], b"").json();
    let models: Vec<String> = status["keys"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|k| k["models"].as_object().unwrap().keys().cloned().collect::<Vec<_>>())
        .collect();
    assert!(models.iter().all(|m| m.starts_with("gemini-")), "{models:?}");
}

#[test]
fn the_openai_model_list_names_aliases_too() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let auth = [("authorization", format!("Bearer {TOKEN}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let list = send("GET", &format!("{}/v1/models", proxy.url), &auth, b"").json();
    let ids: Vec<&str> = list["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"gpt-4o-mini") && ids.contains(&"gemini-2.5-flash-lite"), "{ids:?}");
    let one = send("GET", &format!("{}/v1/models/gpt-4o-mini", proxy.url), &auth, b"");
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["id"], "gpt-4o-mini");
}
