//! The model of a request (SPEC §5): from the path, else from the body (`model` of the
//! Interactions API, `agent`, `voice.model`, `baseModel`), and for a 429's effect the model of
//! Google's `QuotaFailure` first; "all models" only when nothing names one, and a key so blocked
//! is used by no request until the block ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::mock_upstream::{quota_per_day_429, rate_limited_429_no_details};
use support::*;

fn key_status<'a>(st: &'a Value, key: &str) -> &'a Value {
    let id = gemini_key_manager::keyfile::fingerprint(key);
    st["keys"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap()
}

#[test]
fn a_per_day_429_on_an_interaction_parks_exactly_its_project_and_model() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        if !r.path.ends_with("/interactions") {
            return None;
        }
        if r.key.as_deref() == Some(KEYS[0]) {
            return Some(quota_per_day_429("gemini-3-flash"));
        }
        Some(Reply::json(
            200,
            json!({"id": "v1_abc", "status": "completed", "outputs": [],
            "usage": {"total_input_tokens": 30, "total_output_tokens": 12, "total_tokens": 42}}),
        ))
    });
    let proxy = Proxy::start(&mock);
    let body = json!({"model": "gemini-3-flash", "input": "Hello"});
    for _ in 0..3 {
        let a = post_json(&format!("{}/v1beta/interactions", proxy.url), &body);
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let st = status(&proxy);
    let parked = key_status(&st, KEYS[0]);
    assert_eq!(parked["state"], "parked");
    assert!(parked["models"]["gemini-3-flash"]["parked_until"].is_string(), "{parked}");
    assert!(parked["models"].get("*").is_none(), "not all models: {parked}");
    // Books under the model, with the Interactions usage.
    let booked: u64 = st["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["models"]["gemini-3-flash"]["tokens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(booked, 3 * 42);
    let interactions_to_k0 = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/interactions") && r.key.as_deref() == Some(KEYS[0]))
        .count();
    assert_eq!(interactions_to_k0, 1, "the parked key is not called again for that model");
    // Other models still use that project.
    for _ in 0..3 {
        assert_eq!(
            post_json(
                &format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url),
                &generate_body()
            )
            .status,
            200
        );
    }
    let generate_k0 = mock
        .requests()
        .iter()
        .filter(|r| r.path.contains(":generateContent") && r.key.as_deref() == Some(KEYS[0]))
        .count();
    assert_eq!(generate_k0, 1, "round robin still gives the parked key its turn for other models");
}

#[test]
fn the_model_a_quota_failure_names_wins_over_the_request_model() {
    let mock = MockUpstream::start(&KEYS);
    // Google counts this request against another model's quota (an agent on a base model).
    mock.set_script(|r| {
        if !r.path.ends_with("/interactions") {
            return None;
        }
        Some(if r.key.as_deref() == Some(KEYS[0]) {
            quota_per_day_429("gemini-3-pro")
        } else {
            Reply::json(200, json!({"id": "v1_x", "status": "in_progress"}))
        })
    });
    let proxy = Proxy::start(&mock);
    let a = post_json(
        &format!("{}/v1beta/interactions", proxy.url),
        &json!({"agent": "deep-research-pro", "input": "x"}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let st = status(&proxy);
    let k0 = key_status(&st, KEYS[0]);
    assert!(k0["models"]["gemini-3-pro"]["parked_until"].is_string(), "{k0}");
    assert!(k0["models"].get("deep-research-pro").is_none_or(|m| m["parked_until"].is_null()), "{k0}");
}

#[test]
fn a_key_blocked_for_all_models_is_used_by_no_request_until_the_block_ends() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        (r.key.as_deref() == Some(KEYS[0]) && r.path.ends_with("/operations"))
            .then(rate_limited_429_no_details)
    });
    let proxy = Proxy::start(&mock);
    // A model-less request that gets a bare 429: the key cools for all models.
    let a = send("GET", &format!("{}/v1beta/operations", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_ne!(a.status, 429, "retried on the next key: {}", a.text());
    let before = mock.request_count();
    for _ in 0..4 {
        send("GET", &format!("{}/v1beta/models", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
        post_json(&format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url), &generate_body());
    }
    let later = &mock.requests()[before..];
    assert_eq!(later.len(), 8);
    assert!(later.iter().all(|r| r.key.as_deref() != Some(KEYS[0])), "the cooled key was used again");
    assert_eq!(key_status(&status(&proxy), KEYS[0])["state"], "cooling");
}
