//! Server-side resources follow their project (SPEC §5, issue 12), through the real proxy and a
//! mock Gemini that scopes every resource to the Cloud project of the key that made it (another
//! project's key gets 403/404, as from Google): a pool of six keys in three projects; multi-turn,
//! streamed and background interactions; a batch and its results file; a file search store and
//! the generate call that uses it; merged lists with pagination; per-day 429s that park exactly
//! (project, model); pins that survive a restart; 503/409/400 when a resource cannot be served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};
use support::mock_upstream::{key_invalid_400, quota_per_day_429};
use support::*;

const POOL: [&str; 6] = [
    "AIzaSyRESOURCES000000000000000000000P1A",
    "AIzaSyRESOURCES000000000000000000000P1B",
    "AIzaSyRESOURCES000000000000000000000P2A",
    "AIzaSyRESOURCES000000000000000000000P2B",
    "AIzaSyRESOURCES000000000000000000000P3A",
    "AIzaSyRESOURCES000000000000000000000P3B",
];
const PROJECTS: [&str; 3] = ["proj-1", "proj-2", "proj-3"];
const FLASH: &str = "gemini-2.5-flash";
const PRO: &str = "gemini-2.5-pro";

fn project_of_index(i: usize) -> &'static str {
    PROJECTS[i / 2]
}

/// The mock with six keys in three projects, and the proxy in front of it (key file labelled the
/// same way), its files in `dir`.
fn setup_in(dir: std::path::PathBuf) -> (MockUpstream, Proxy) {
    let mock = MockUpstream::start(&POOL);
    mock.set_projects(&POOL.iter().enumerate().map(|(i, k)| (*k, project_of_index(i))).collect::<Vec<_>>());
    let proxy = start_proxy_in(dir, &mock);
    (mock, proxy)
}

fn start_proxy_in(dir: std::path::PathBuf, mock: &MockUpstream) -> Proxy {
    let lines: Vec<String> =
        POOL.iter().enumerate().map(|(i, k)| format!("{k} {}", project_of_index(i))).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    Proxy::start_in(dir, &mock.url(), &lines, |_| {})
}

fn setup() -> (MockUpstream, Proxy) {
    setup_in(temp_dir("resources"))
}

fn call(proxy: &Proxy, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let mut headers = vec![("x-goog-api-key", TOKEN)];
    if body.is_some() {
        headers.push(("content-type", "application/json"));
    }
    send(method, &format!("{}{path}", proxy.url), &headers, &bytes)
}

/// The projects of the keys the mock saw for requests whose path contains `part` (in order).
fn projects_seen(mock: &MockUpstream, part: &str) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.path.contains(part))
        .map(|r| mock.project_of(r.key.as_deref().unwrap_or_default()))
        .collect()
}

fn all_one(projects: &[String]) -> &str {
    let first = projects.first().expect("some requests");
    assert!(projects.iter().all(|p| p == first), "every call in one project: {projects:?}");
    first
}

/// Requests and tokens booked today for `model`, over every key.
fn booked(proxy: &Proxy, model: &str) -> (u64, u64) {
    let s = status(proxy);
    s["keys"].as_array().unwrap().iter().fold((0, 0), |(r, t), k| {
        let m = &k["models"][model];
        (r + m["requests"].as_u64().unwrap_or(0), t + m["tokens"].as_u64().unwrap_or(0))
    })
}

fn text_of(interaction: &Value) -> String {
    interaction.to_string()
}

#[test]
fn a_multi_turn_interaction_stays_in_the_project_that_made_it_on_every_api_version() {
    let (mock, proxy) = setup();
    for version in ["v1beta", "v1", "v1alpha"] {
        let first = call(
            &proxy,
            "POST",
            &format!("/{version}/interactions"),
            Some(&json!({"model": FLASH, "input": "Hello"})),
        );
        assert_eq!(first.status, 200, "{}", first.text());
        let mut id = first.json()["id"].as_str().unwrap().to_string();
        for turn in 2..=5 {
            let next = call(
                &proxy,
                "POST",
                &format!("/{version}/interactions"),
                Some(
                    &json!({"model": FLASH, "input": format!("turn {turn}"), "previous_interaction_id": id}),
                ),
            );
            assert_eq!(next.status, 200, "{version} turn {turn}: {}", next.text());
            assert!(text_of(&next.json()).contains(&format!("turn {turn}")), "{}", next.text());
            id = next.json()["id"].as_str().unwrap().to_string();
        }
        let got = call(&proxy, "GET", &format!("/{version}/interactions/{id}"), None);
        assert_eq!(got.status, 200, "{}", got.text());
    }
    let seen = projects_seen(&mock, "/interactions");
    // Each version's chain in one project (three chains, 6 calls each).
    for chain in seen.chunks(6) {
        all_one(chain);
    }
    // Booked under the model, not `unknown`.
    let (requests, tokens) = booked(&proxy, FLASH);
    assert_eq!(requests, 18, "every call booked under {FLASH}");
    assert!(tokens > 0);
}

/// Read an SSE answer to the end: the `data:` payloads, each with when it arrived.
fn sse_events(resp: ureq::http::Response<ureq::Body>) -> Vec<(Value, std::time::Instant)> {
    let reader = BufReader::new(resp.into_body().into_reader());
    let mut events = Vec::new();
    for line in reader.lines() {
        let line = line.unwrap();
        if let Some(data) = line.strip_prefix("data:")
            && let Ok(v) = serde_json::from_str::<Value>(data.trim())
        {
            events.push((v, std::time::Instant::now()));
        }
    }
    events
}

#[test]
fn a_streamed_interaction_is_pinned_from_its_created_event_and_its_tokens_booked() {
    let (mock, proxy) = setup();
    mock.set_stream_delay(Duration::from_millis(150));
    let body = json!({"model": FLASH, "input": "Hello", "stream": true});
    let resp = open_stream(
        &format!("{}/v1beta/interactions", proxy.url),
        ("x-goog-api-key", TOKEN),
        &body.to_string(),
    );
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp);
    assert!(events.len() >= 4, "{events:?}");
    assert_eq!(events[0].0["event_type"], "interaction.created");
    let id = events[0].0["interaction"]["id"].as_str().unwrap().to_string();
    let last = &events.last().unwrap().0;
    assert_eq!(last["event_type"], "interaction.completed");
    let stream_tokens = last["interaction"]["usage"]["total_tokens"].as_u64().unwrap();
    assert!(
        events.last().unwrap().1 - events[0].1 >= Duration::from_millis(300),
        "events arrive as the upstream sends them, not at the end"
    );
    // The next turn, streamed too, in the same project.
    let body = json!({"model": FLASH, "input": "again", "stream": true, "previous_interaction_id": id});
    let resp = open_stream(
        &format!("{}/v1beta/interactions", proxy.url),
        ("x-goog-api-key", TOKEN),
        &body.to_string(),
    );
    assert_eq!(resp.status(), 200);
    let events2 = sse_events(resp);
    let last2 = &events2.last().unwrap().0;
    assert_eq!(last2["event_type"], "interaction.completed", "{events2:?}");
    all_one(&projects_seen(&mock, "/interactions"));
    let tokens2 = last2["interaction"]["usage"]["total_tokens"].as_u64().unwrap();
    let (requests, tokens) = booked(&proxy, FLASH);
    assert_eq!((requests, tokens), (2, stream_tokens + tokens2), "tokens of interaction.completed");
    // The same in /metrics and on the dashboard, under the model.
    let metrics = call(&proxy, "GET", "/metrics", None).text();
    assert!(metrics.lines().any(|l| l.contains(FLASH) && l.contains("tokens")), "{metrics}");
    let dashboard = call(&proxy, "GET", "/dashboard", None).text();
    assert!(dashboard.contains(FLASH));
}

#[test]
fn a_background_interaction_is_polled_in_its_project_and_its_tokens_booked_once() {
    let (mock, proxy) = setup();
    let created = call(
        &proxy,
        "POST",
        "/v1beta/interactions",
        Some(&json!({"model": PRO, "input": "research", "background": true})),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    assert_eq!(created.json()["status"], "in_progress");
    let id = created.json()["id"].as_str().unwrap().to_string();
    let mut usage = 0;
    for _ in 0..4 {
        let polled = call(&proxy, "GET", &format!("/v1beta/interactions/{id}?stream=false"), None);
        assert_eq!(polled.status, 200, "{}", polled.text());
        assert_eq!(polled.json()["status"], "completed");
        usage = polled.json()["usage"]["total_tokens"].as_u64().unwrap();
    }
    all_one(&projects_seen(&mock, "/interactions"));
    assert_eq!(booked(&proxy, PRO), (5, usage), "five requests, the interaction's tokens once");
    // Cancel and delete are the project's too; a deleted interaction is forgotten.
    let deleted = call(&proxy, "DELETE", &format!("/v1beta/interactions/{id}"), None);
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    all_one(&projects_seen(&mock, "/interactions"));
}

/// Upload `bytes` through the proxy's resumable upload; the file's name.
fn upload(proxy: &Proxy, bytes: &[u8], mime: &str) -> (String, Value) {
    let start = send(
        "POST",
        &format!("{}/upload/v1beta/files", proxy.url),
        &[
            ("x-goog-api-key", TOKEN),
            ("x-goog-upload-protocol", "resumable"),
            ("x-goog-upload-command", "start"),
            ("x-goog-upload-header-content-type", mime),
            ("content-type", "application/json"),
        ],
        br#"{"file":{"display_name":"input"}}"#,
    );
    assert_eq!(start.status, 200, "{}", start.text());
    let url = start.header("x-goog-upload-url").unwrap().to_string();
    let done = send(
        "POST",
        &url,
        &[("x-goog-upload-command", "upload, finalize"), ("x-goog-upload-offset", "0")],
        bytes,
    );
    assert_eq!(done.status, 200, "{}", done.text());
    let file = done.json()["file"].clone();
    (file["name"].as_str().unwrap().to_string(), file)
}

#[test]
fn a_batch_and_its_results_file_stay_in_their_project() {
    let (mock, proxy) = setup();
    let input = b"{\"key\":\"r1\",\"request\":{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}}\n";
    let (file, _) = upload(&proxy, input, "application/jsonl");
    let created = call(
        &proxy,
        "POST",
        &format!("/v1beta/models/{FLASH}:batchGenerateContent"),
        Some(&json!({"batch": {"display_name": "b", "input_config": {"file_name": file}}})),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let batch = created.json()["name"].as_str().unwrap().to_string();
    let got = call(&proxy, "GET", &format!("/v1beta/{batch}"), None);
    assert_eq!(got.status, 200, "{}", got.text());
    let results =
        got.json().pointer("/metadata/output/responsesFile").and_then(Value::as_str).map(str::to_string);
    let results = results.or_else(|| {
        got.json().pointer("/response/responsesFile").and_then(Value::as_str).map(str::to_string)
    });
    let results = results.unwrap_or_else(|| panic!("a results file: {}", got.text()));
    for path in [
        format!("/download/v1beta/{results}:download?alt=media"),
        format!("/v1beta/{results}:download?alt=media"),
    ] {
        let bytes = call(&proxy, "GET", &path, None);
        assert_eq!(bytes.status, 200, "{path}: {}", bytes.text());
        assert!(bytes.text().contains("r1"), "{}", bytes.text());
    }
    let projects: Vec<String> = mock
        .requests()
        .iter()
        .filter(|r| r.key.is_some())
        .map(|r| mock.project_of(r.key.as_deref().unwrap()))
        .collect();
    all_one(&projects);
}

#[test]
fn a_file_search_store_and_the_generate_call_that_uses_it() {
    let (mock, proxy) = setup();
    let store = call(&proxy, "POST", "/v1beta/fileSearchStores", Some(&json!({"displayName": "docs"})));
    assert_eq!(store.status, 200, "{}", store.text());
    let store = store.json()["name"].as_str().unwrap().to_string();
    let owner = all_one(&projects_seen(&mock, "fileSearchStores")).to_string();
    // A file uploaded in whichever project, imported into the store: two projects → 400, or one.
    let (file, _) = upload(&proxy, b"some text", "text/plain");
    let import =
        call(&proxy, "POST", &format!("/v1beta/{store}:importFile"), Some(&json!({"fileName": file})));
    let file_project = projects_seen(&mock, "/upload/")[0].clone();
    if file_project == owner {
        assert_eq!(import.status, 200, "{}", import.text());
    } else {
        assert_eq!(import.status, 400, "resources of two projects: {}", import.text());
        assert!(import.text().contains("two projects"), "{}", import.text());
    }
    for spelling in [
        json!({"fileSearch": {"fileSearchStoreNames": [store]}}),
        json!({"file_search": {"file_search_store_names": [store]}}),
    ] {
        for _ in 0..3 {
            let body =
                json!({"contents": [{"parts": [{"text": "what do the docs say?"}]}], "tools": [spelling]});
            let a = call(&proxy, "POST", &format!("/v1beta/models/{FLASH}:generateContent"), Some(&body));
            assert_eq!(a.status, 200, "{}", a.text());
        }
    }
    let generated = projects_seen(&mock, ":generateContent");
    assert_eq!(all_one(&generated), owner);
}

#[test]
fn lists_merge_every_projects_items_and_paginate_to_the_last_page() {
    let (mock, proxy) = setup();
    mock.set_list_page_size(2);
    let mut made = BTreeSet::new();
    for (project, n) in [("proj-1", 3), ("proj-2", 2), ("proj-3", 0)] {
        for i in 0..n {
            made.insert(mock.add_file(project, &format!("{}f{i}", project.replace('-', ""))));
        }
    }
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("/v1beta/files?pageSize=2&pageToken={t}"),
            None => "/v1beta/files?pageSize=2".to_string(),
        };
        let page = call(&proxy, "GET", &path, None);
        assert_eq!(page.status, 200, "{}", page.text());
        let v = page.json();
        listed.extend(
            v["files"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|f| f["name"].as_str().unwrap().to_string()),
        );
        pages += 1;
        assert!(pages < 10, "pagination ends");
        match v["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(listed.len(), made.len(), "each file once: {listed:?}");
    assert_eq!(listed.iter().cloned().collect::<BTreeSet<_>>(), made);
    assert_eq!(pages, 2, "two pages: proj-1 needs two of size 2");
    // Files made outside the proxy, seen in a list, are then served by their project.
    for name in &made {
        let got = call(&proxy, "GET", &format!("/v1beta/{name}"), None);
        assert_eq!(got.status, 200, "{name}: {}", got.text());
    }
    // A page token the proxy did not issue is refused, with Google's shape.
    let bad = call(&proxy, "GET", "/v1beta/files?pageToken=forged", None);
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["error"]["status"], "INVALID_ARGUMENT");
}

#[test]
fn a_per_day_429_on_an_interaction_parks_exactly_that_project_and_model() {
    let (mock, proxy) = setup();
    const THREE: &str = "gemini-3-pro-preview";
    // proj-1's keys are out of today's quota for gemini-3-pro-preview (Interactions), nothing else.
    mock.set_script(|r| {
        let key = r.key.clone().unwrap_or_default();
        let p1 = key == POOL[0] || key == POOL[1];
        (p1 && r.path.ends_with("/interactions") && r.json().is_some_and(|b| b["model"] == THREE))
            .then(|| quota_per_day_429(THREE))
    });
    for _ in 0..6 {
        let a = call(&proxy, "POST", "/v1beta/interactions", Some(&json!({"model": THREE, "input": "hi"})));
        assert_eq!(a.status, 200, "{}", a.text());
    }
    let refused: Vec<&str> = vec![POOL[0], POOL[1]];
    let p1_calls =
        mock.requests().iter().filter(|r| refused.contains(&r.key.as_deref().unwrap_or_default())).count();
    assert_eq!(p1_calls, 1, "one 429 parks the whole project for the model; no parked key is called again");
    // Other models still use proj-1.
    for _ in 0..6 {
        let a =
            call(&proxy, "POST", &format!("/v1beta/models/{FLASH}:generateContent"), Some(&generate_body()));
        assert_eq!(a.status, 200);
    }
    assert!(
        projects_seen(&mock, ":generateContent").iter().any(|p| p == "proj-1"),
        "proj-1 still serves {FLASH}"
    );
    // /status: parked under gemini-3-pro-preview only.
    let s = status(&proxy);
    for k in s["keys"].as_array().unwrap() {
        let parked = &k["models"][THREE]["parked_until"];
        if k["project"] == "proj-1" {
            assert!(parked.is_string(), "{k}");
            assert_eq!(k["state"], "parked");
            assert!(k["models"][FLASH]["parked_until"].is_null(), "{k}");
        } else {
            assert!(parked.is_null(), "{k}");
        }
    }
}

#[test]
fn a_resource_whose_project_cannot_serve_it_gets_503_or_409_and_no_other_project_is_tried() {
    let (mock, proxy) = setup();
    let first =
        call(&proxy, "POST", "/v1beta/interactions", Some(&json!({"model": FLASH, "input": "Hello"})));
    assert_eq!(first.status, 200, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_string();
    let owner = projects_seen(&mock, "/interactions")[0].clone();
    let owner_keys: Vec<&str> =
        POOL.iter().enumerate().filter(|(i, _)| project_of_index(*i) == owner).map(|(_, k)| *k).collect();
    // The owner's keys run out of today's flash quota: 503 + Retry-After, no other project asked.
    for k in &owner_keys {
        mock.set_key_reply(k, quota_per_day_429(FLASH));
    }
    let before = mock.request_count();
    let next = json!({"model": FLASH, "input": "again", "previous_interaction_id": id});
    let a = call(&proxy, "POST", "/v1beta/interactions", Some(&next));
    assert_eq!(a.status, 503, "{}", a.text());
    assert!(a.header("retry-after").is_some());
    assert!(a.text().contains(&format!("interactions/{id}")), "names the resource: {}", a.text());
    let after = &mock.requests()[before..];
    assert!(
        after.iter().all(|r| owner_keys.contains(&r.key.as_deref().unwrap_or_default())),
        "only the owner's keys"
    );
    // Parked: the next try asks nobody.
    let before = mock.request_count();
    assert_eq!(call(&proxy, "POST", "/v1beta/interactions", Some(&next)).status, 503);
    assert_eq!(mock.request_count(), before, "a parked project is not called again");
    // Another model of that project still works on the chain (parks are per model).
    let pro = json!({"model": PRO, "input": "again", "previous_interaction_id": id});
    for k in &owner_keys {
        mock.clear_key_reply(k);
    }
    assert_eq!(call(&proxy, "POST", "/v1beta/interactions", Some(&pro)).status, 200);
    // The owner's keys disabled: 409 FAILED_PRECONDITION naming the resource and the key.
    for k in &owner_keys {
        mock.set_key_reply(k, key_invalid_400());
    }
    let _ = call(&proxy, "POST", "/v1beta/interactions", Some(&pro));
    let _ = call(&proxy, "POST", "/v1beta/interactions", Some(&pro));
    let before = mock.request_count();
    let a = call(&proxy, "POST", "/v1beta/interactions", Some(&pro));
    assert_eq!(a.status, 409, "{}", a.text());
    assert_eq!(a.json()["error"]["status"], "FAILED_PRECONDITION");
    let fp = gemini_key_manager::keyfile::fingerprint(owner_keys[0]);
    let fp2 = gemini_key_manager::keyfile::fingerprint(owner_keys[1]);
    let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(&format!("interactions/{id}")) || msg.contains("interactions/"), "{msg}");
    assert!(msg.contains(&fp) || msg.contains(&fp2), "names the key's fingerprint: {msg}");
    assert_eq!(mock.request_count(), before, "no other project is tried");
}

#[test]
fn resources_of_two_projects_in_one_request_are_refused_before_any_upstream_call() {
    let (mock, proxy) = setup();
    let a = mock.add_file("proj-1", "onefile");
    let b = mock.add_file("proj-2", "twofile");
    // The proxy learns where they live from a list.
    assert_eq!(call(&proxy, "GET", "/v1beta/files", None).status, 200);
    let before = mock.request_count();
    let body = json!({"contents": [{"parts": [
        {"fileData": {"fileUri": format!("{}/v1beta/{a}", mock.url()), "mimeType": "text/plain"}},
        {"file_data": {"file_uri": b, "mime_type": "text/plain"}}, {"text": "compare"}]}]});
    let r = call(&proxy, "POST", &format!("/v1beta/models/{FLASH}:generateContent"), Some(&body));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("proj-1") && r.text().contains("proj-2"), "{}", r.text());
    assert_eq!(mock.request_count(), before);
}

#[test]
fn a_restart_in_the_middle_of_a_multi_turn_interaction_keeps_the_pin() {
    let dir = temp_dir("resources-restart");
    let (mock, proxy) = setup_in(dir.clone());
    let first = call(&proxy, "POST", "/v1/interactions", Some(&json!({"model": FLASH, "input": "Hello"})));
    assert_eq!(first.status, 200, "{}", first.text());
    let id = first.json()["id"].as_str().unwrap().to_string();
    proxy.handle.shutdown().unwrap(); // flushes the usage file
    let usage = std::fs::read_to_string(dir.join("usage.json")).unwrap();
    assert!(usage.contains(&format!("interactions/{id}")), "the pin is on disk");
    assert!(!POOL.iter().any(|k| usage.contains(k)), "no raw key on disk");
    let proxy = start_proxy_in(dir, &mock);
    for turn in 2..=4 {
        let next = call(
            &proxy,
            "POST",
            "/v1/interactions",
            Some(&json!({"model": FLASH, "input": "more", "previous_interaction_id": id})),
        );
        assert_eq!(next.status, 200, "turn {turn} after the restart: {}", next.text());
    }
    all_one(&projects_seen(&mock, "/interactions"));
}
