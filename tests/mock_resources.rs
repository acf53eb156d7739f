//! The mock upstream itself, over loopback (no proxy): its server-side resources belong to Cloud
//! projects as Google's do, so the proxy's tests can rely on it. Keys A and B share project P,
//! key C is project Q.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};
use support::*;

const A: &str = KEYS[0];
const B: &str = KEYS[1];
const C: &str = KEYS[2];
const FLASH: &str = "gemini-2.5-flash";

fn mock() -> MockUpstream {
    let mock = MockUpstream::start(&KEYS);
    mock.set_projects(&[(A, "P"), (B, "P"), (C, "Q")]);
    mock
}

/// One request to the mock with `key`; `body` is sent as JSON unless it is null.
fn call(mock: &MockUpstream, method: &str, key: &str, path: &str, body: Value) -> Answer {
    let bytes = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    let headers = [("x-goog-api-key", key), ("content-type", "application/json")];
    send(method, &format!("{}{path}", mock.url()), &headers, &bytes)
}

fn ok(answer: Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

fn refused(answer: &Answer, status: u16, kind: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.json()["error"]["status"], kind, "{}", answer.text());
}

/// A resumable upload like the SDKs do it: start with `key`, one final chunk without a key.
fn upload(mock: &MockUpstream, key: &str, version: &str, bytes: &[u8]) -> Value {
    let start = send(
        "POST",
        &format!("{}/upload/{version}/files", mock.url()),
        &[
            ("x-goog-api-key", key),
            ("x-goog-upload-protocol", "resumable"),
            ("x-goog-upload-command", "start"),
            ("x-goog-upload-header-content-type", "application/jsonl"),
            ("content-type", "application/json"),
        ],
        br#"{"file":{"display_name":"input"}}"#,
    );
    assert_eq!(start.status, 200, "{}", start.text());
    let url = start.header("x-goog-upload-url").unwrap().to_string();
    assert!(url.contains(&format!("/upload/{version}/files?upload_id=")), "keeps its version: {url}");
    let done = send(
        "POST",
        &url,
        &[("x-goog-upload-command", "upload, finalize"), ("x-goog-upload-offset", "0")],
        bytes,
    );
    ok(done)["file"].clone()
}

fn interaction(mock: &MockUpstream, key: &str, body: Value) -> Answer {
    call(mock, "POST", key, "/v1beta/interactions", body)
}

fn text_of(interaction: &Value) -> String {
    interaction["steps"][0]["content"][0]["text"].as_str().unwrap_or_default().to_string()
}

#[test]
fn projects_group_keys_and_default_to_the_key() {
    let mock = MockUpstream::start(&KEYS);
    assert_eq!(mock.project_of(A), A);
    mock.set_projects(&[(A, "P"), (B, "P")]);
    assert_eq!(
        (mock.project_of(A), mock.project_of(B), mock.project_of(C)),
        ("P".into(), "P".into(), C.into())
    );
}

#[test]
fn a_resource_serves_every_key_of_its_project_and_no_other_project() {
    let mock = mock();
    // Files and cached contents: 403 PERMISSION_DENIED for another project.
    let file = upload(&mock, A, "v1beta", b"hello");
    let name = file["name"].as_str().unwrap();
    assert_eq!(mock.owner_of(name).as_deref(), Some("P"));
    assert_eq!(ok(call(&mock, "GET", B, &format!("/v1beta/{name}"), Value::Null))["name"], name);
    refused(&call(&mock, "GET", C, &format!("/v1/{name}"), Value::Null), 403, "PERMISSION_DENIED");
    let uses_file = json!({"contents": [{"parts": [{"fileData": {"fileUri": file["uri"]}}]}]});
    ok(call(&mock, "POST", B, &format!("/v1beta/models/{FLASH}:generateContent"), uses_file.clone()));
    let denied = call(&mock, "POST", C, &format!("/v1beta/models/{FLASH}:generateContent"), uses_file);
    refused(&denied, 403, "PERMISSION_DENIED");
    let cache =
        ok(call(&mock, "POST", A, "/v1beta/cachedContents", json!({"model": "models/gemini-2.5-flash"})));
    let cache = cache["name"].as_str().unwrap();
    ok(call(&mock, "GET", B, &format!("/v1beta/{cache}"), Value::Null));
    refused(&call(&mock, "GET", C, &format!("/v1beta/{cache}"), Value::Null), 403, "PERMISSION_DENIED");
    let with_cache = json!({"cachedContent": cache, "contents": [{"parts": [{"text": "hi"}]}]});
    let denied = call(&mock, "POST", C, &format!("/v1beta/models/{FLASH}:generateContent"), with_cache);
    refused(&denied, 403, "PERMISSION_DENIED");
    // Everything else: 404 NOT_FOUND.
    let store = ok(call(&mock, "POST", A, "/v1beta/fileSearchStores", json!({"displayName": "docs"})));
    let store = store["name"].as_str().unwrap();
    ok(call(&mock, "GET", B, &format!("/v1beta/{store}"), Value::Null));
    refused(&call(&mock, "GET", C, &format!("/v1beta/{store}"), Value::Null), 404, "NOT_FOUND");
    let id =
        ok(interaction(&mock, A, json!({"model": FLASH, "input": "hi"})))["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("v1_"), "{id}");
    ok(call(&mock, "GET", B, &format!("/v1beta/interactions/{id}?stream=false"), Value::Null));
    refused(&call(&mock, "GET", C, &format!("/v1beta/interactions/{id}"), Value::Null), 404, "NOT_FOUND");
    refused(&call(&mock, "DELETE", C, &format!("/v1beta/interactions/{id}"), Value::Null), 404, "NOT_FOUND");
    for (collection, prefix) in [("agents", "agent_"), ("webhooks", "webhook_"), ("voices", "voice_")] {
        let item = ok(call(&mock, "POST", A, &format!("/v1beta/{collection}"), json!({"display_name": "x"})));
        let item_id = item["id"].as_str().unwrap();
        assert!(item_id.starts_with(prefix) && item["display_name"] == "x", "{item}");
        ok(call(&mock, "GET", B, &format!("/v1beta/{collection}/{item_id}"), Value::Null));
        let other = call(&mock, "GET", C, &format!("/v1beta/{collection}/{item_id}"), Value::Null);
        refused(&other, 404, "NOT_FOUND");
        ok(call(&mock, "DELETE", B, &format!("/v1beta/{collection}/{item_id}"), Value::Null));
        refused(
            &call(&mock, "GET", A, &format!("/v1beta/{collection}/{item_id}"), Value::Null),
            404,
            "NOT_FOUND",
        );
    }
    let token = ok(call(&mock, "POST", A, "/v1alpha/auth_tokens", json!({"uses": 1})));
    assert_eq!(mock.owner_of(token["name"].as_str().unwrap()).as_deref(), Some("P"));
    // The refused requests were recorded with their key: a test can tell which project sent them.
    let last = mock.requests().pop().unwrap();
    assert_eq!(mock.project_of(last.key.as_deref().unwrap()), "P");
    let refused_ones = mock.requests().into_iter().filter(|r| r.key.as_deref() == Some(C)).count();
    assert_eq!(refused_ones, 7 + 3);
}

#[test]
fn lists_show_only_the_callers_project_and_paginate_to_the_last_page() {
    let mock = mock();
    mock.set_list_page_size(3);
    let mine: Vec<String> = (0..7).map(|i| mock.add_file("P", &format!("p{i}"))).collect();
    mock.add_file("Q", "q0");
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = ok(call(
            &mock,
            "GET",
            if pages % 2 == 0 { A } else { B },
            &format!("/v1/files?pageToken={token}"),
            Value::Null,
        ));
        pages += 1;
        seen.extend(
            page["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_string()),
        );
        match page["nextPageToken"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!((pages, &seen), (3, &mine), "creation order, 3 + 3 + 1");
    let other = ok(call(&mock, "GET", C, "/v1beta/files?pageSize=50", Value::Null));
    assert_eq!(other, json!({"files": [mock_file_view(&mock, "q0")]}));
    refused(&call(&mock, "GET", A, "/v1beta/files?pageToken=bogus", Value::Null), 400, "INVALID_ARGUMENT");
    // The other lists, with an explicit page size.
    for i in 0..3 {
        mock.add_cache("P", &format!("c{i}"));
        mock.add_file_search_store("P", &format!("s{i}"));
        let batch =
            json!({"batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": []}}]}}}});
        ok(call(&mock, "POST", A, &format!("/v1beta/models/{FLASH}:batchGenerateContent"), batch));
        ok(call(&mock, "POST", A, "/v1beta/agents", json!({"i": i})));
    }
    for (path, field, next) in [
        ("cachedContents?pageSize=2", "cachedContents", "nextPageToken"),
        ("fileSearchStores?pageSize=2", "fileSearchStores", "nextPageToken"),
        ("batches?pageSize=2", "operations", "nextPageToken"),
        ("agents?page_size=2", "agents", "next_page_token"),
    ] {
        let first = ok(call(&mock, "GET", B, &format!("/v1beta/{path}"), Value::Null));
        assert_eq!(first[field].as_array().unwrap().len(), 2, "{path}: {first}");
        let token = first[next].as_str().unwrap();
        let sep = if next == "next_page_token" { "page_token" } else { "pageToken" };
        let last = ok(call(&mock, "GET", B, &format!("/v1beta/{path}&{sep}={token}"), Value::Null));
        assert_eq!(last[field].as_array().unwrap().len(), 1, "{path}: {last}");
        assert!(last.get(next).is_none(), "{path}: no token on the last page: {last}");
        assert_eq!(ok(call(&mock, "GET", C, &format!("/v1beta/{path}"), Value::Null)), json!({}), "{path}");
    }
}

fn mock_file_view(mock: &MockUpstream, id: &str) -> Value {
    let url = mock.url();
    json!({"name": format!("files/{id}"), "mimeType": "text/plain", "sizeBytes": "0",
        "createTime": "2025-01-01T00:00:00.000000Z", "updateTime": "2025-01-01T00:00:00.000000Z",
        "expirationTime": "2025-01-03T00:00:00.000000Z", "uri": format!("{url}/v1beta/files/{id}"),
        "state": "ACTIVE", "source": "UPLOADED"})
}

#[test]
fn interactions_are_strict_and_chain_through_previous_interaction_id() {
    let mock = mock();
    let first = ok(interaction(&mock, A, json!({"model": FLASH, "input": "Hello there"})));
    assert_eq!(
        (first["status"].as_str(), text_of(&first).as_str()),
        (Some("completed"), "Hello from gemini-2.5-flash")
    );
    assert_eq!(first["usage"], json!({"total_input_tokens": 2, "total_output_tokens": 3, "total_tokens": 5}));
    let id = first["id"].as_str().unwrap();
    let second =
        ok(interaction(&mock, B, json!({"model": FLASH, "input": "More", "previous_interaction_id": id})));
    assert_eq!(text_of(&second), "Hello from gemini-2.5-flash (turn 2)");
    assert_eq!(second["previous_interaction_id"], id);
    let third = json!({"model": FLASH, "input": "x", "previous_interaction_id": second["id"]});
    assert_eq!(text_of(&ok(interaction(&mock, A, third.clone()))), "Hello from gemini-2.5-flash (turn 3)");
    refused(&interaction(&mock, C, third), 404, "NOT_FOUND");
    // Not stored: no later turn can name it.
    let unstored = ok(interaction(&mock, A, json!({"model": FLASH, "input": "x", "store": false})));
    let later = json!({"model": FLASH, "input": "x", "previous_interaction_id": unstored["id"]});
    refused(&interaction(&mock, A, later), 404, "NOT_FOUND");
    // Strict like Google.
    let unknown = interaction(&mock, A, json!({"model": FLASH, "input": "x", "temperature": 1}));
    refused(&unknown, 400, "INVALID_ARGUMENT");
    assert!(unknown.text().contains("\\\"temperature\\\""), "{}", unknown.text());
    refused(&interaction(&mock, A, json!({"input": "x"})), 400, "INVALID_ARGUMENT");
    refused(
        &interaction(&mock, A, json!({"model": FLASH, "agent": "deep-research"})),
        400,
        "INVALID_ARGUMENT",
    );
    refused(&interaction(&mock, A, json!({"model": "gemini-9", "input": "x"})), 404, "NOT_FOUND");
    refused(&interaction(&mock, A, json!({"model": "text-embedding-004", "input": "x"})), 404, "NOT_FOUND");
    let agent = ok(interaction(&mock, A, json!({"agent": "deep-research-pro-preview", "input": "x"})));
    assert_eq!(agent["agent"], "deep-research-pro-preview");
    // Environments and file search stores named by a create must be the caller's.
    let env = ok(call(&mock, "POST", A, "/v1beta/environments", json!({})))["id"].clone();
    ok(interaction(&mock, B, json!({"model": FLASH, "input": "x", "environment": env})));
    let by_object = json!({"model": FLASH, "input": "x", "environment": {"environment_id": env}});
    refused(&interaction(&mock, C, by_object), 404, "NOT_FOUND");
    let store = mock.add_file_search_store("Q", "theirs");
    let tools = json!([{"type": "file_search", "file_search_store_names": [store]}]);
    refused(&interaction(&mock, A, json!({"model": FLASH, "input": "x", "tools": tools})), 404, "NOT_FOUND");
    let grounded = ok(interaction(&mock, C, json!({"model": FLASH, "input": "x", "tools": tools})));
    assert!(text_of(&grounded).contains("fileSearchStores/theirs"), "{grounded}");
    // Cancel, delete.
    let cancelled = ok(call(&mock, "POST", A, &format!("/v1beta/interactions/{id}/cancel"), json!({})));
    assert_eq!(cancelled["id"], id);
    assert_eq!(ok(call(&mock, "DELETE", B, &format!("/v1beta/interactions/{id}"), Value::Null)), json!({}));
    refused(&call(&mock, "GET", A, &format!("/v1beta/interactions/{id}"), Value::Null), 404, "NOT_FOUND");
}

#[test]
fn function_calls_take_two_turns() {
    let mock = mock();
    let tools = json!([{"type": "function", "name": "weather", "parameters": {"type": "object"}}]);
    let asked = ok(interaction(&mock, A, json!({"model": FLASH, "input": "Weather?", "tools": tools})));
    assert_eq!(asked["status"], "requires_action");
    let step = &asked["steps"][0];
    assert_eq!((step["type"].as_str(), step["name"].as_str()), (Some("function_call"), Some("weather")));
    let result =
        json!([{"type": "function_result", "call_id": step["id"], "name": "weather", "result": "sunny"}]);
    let body =
        json!({"model": FLASH, "input": result, "tools": tools, "previous_interaction_id": asked["id"]});
    let answered = ok(interaction(&mock, B, body));
    assert_eq!(
        (answered["status"].as_str(), text_of(&answered).as_str()),
        (Some("completed"), "The tool said: \"sunny\"")
    );
}

#[test]
fn continuation_hops_need_the_token_of_the_same_project_and_its_issuer() {
    let mock = mock();
    mock.set_interaction_hops(3);
    let mut hop = ok(interaction(&mock, A, json!({"model": FLASH, "input": "Write a long essay"})));
    let mut texts = vec![text_of(&hop)];
    for n in 1..3 {
        assert_eq!(hop["status"], "requires_continuation", "hop {n}: {hop}");
        assert_eq!(hop["usage"]["total_output_tokens"], 4, "only this hop's usage: {hop}");
        let token = hop["continuation_token"].as_str().unwrap().to_string();
        let next = json!({"model": FLASH, "continuation_token": token, "previous_interaction_id": hop["id"]});
        refused(&interaction(&mock, C, next.clone()), 404, "NOT_FOUND");
        let stateless = json!({"model": FLASH, "input": "x", "store": false, "continuation_token": token});
        refused(&interaction(&mock, C, stateless), 400, "INVALID_ARGUMENT");
        let wrong_issuer = json!({"model": FLASH, "continuation_token": token});
        refused(&interaction(&mock, A, wrong_issuer), 400, "INVALID_ARGUMENT");
        hop = ok(interaction(&mock, if n == 1 { B } else { A }, next));
        texts.push(text_of(&hop));
    }
    assert_eq!(hop["status"], "completed");
    assert!(hop.get("continuation_token").is_none(), "{hop}");
    assert_eq!(texts, ["Part 1 of 3. ", "Part 2 of 3. ", "Hello from gemini-2.5-flash"]);
    // With store=false the original input comes back with the token instead.
    let first = ok(interaction(&mock, A, json!({"model": FLASH, "input": "x", "store": false})));
    let body = json!({"model": FLASH, "input": "x", "store": false, "continuation_token": first["continuation_token"]});
    assert_eq!(text_of(&ok(interaction(&mock, B, body))), "Part 2 of 3. ");
    // Background interactions continue server-side.
    let background = ok(interaction(&mock, A, json!({"model": FLASH, "input": "x", "background": true})));
    let id = background["id"].as_str().unwrap();
    let done = ok(call(&mock, "GET", A, &format!("/v1beta/interactions/{id}"), Value::Null));
    assert_eq!(
        (done["status"].as_str(), text_of(&done).as_str()),
        (Some("completed"), "Hello from gemini-2.5-flash")
    );
}

/// The events of an SSE body: (the `event:` name, the data).
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let line = |prefix: &str| block.lines().find_map(|l| l.strip_prefix(prefix)).unwrap().to_string();
            (line("event: "), serde_json::from_str(&line("data: ")).unwrap())
        })
        .collect()
}

#[test]
fn a_streamed_interaction_sends_its_events_in_order_the_created_id_first() {
    let mock = mock();
    let delay = Duration::from_millis(100);
    mock.set_stream_delay(delay);
    mock.set_stream_events(3);
    let started = Instant::now();
    let url = format!("{}/v1beta/interactions", mock.url());
    let resp = open_stream(
        &url,
        ("x-goog-api-key", A),
        &json!({"model": FLASH, "input": "x", "stream": true}).to_string(),
    );
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut arrivals = Vec::new();
    let mut text = String::new();
    for line in BufReader::new(resp.into_body().into_reader()).lines() {
        let line = line.unwrap();
        if line.starts_with("event: ") {
            arrivals.push(started.elapsed());
        }
        text.push_str(&line);
        text.push('\n');
    }
    let events = sse_events(&text);
    let kinds: Vec<&str> = events.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "interaction.created",
            "interaction.status_update",
            "step.start",
            "step.delta",
            "step.delta",
            "step.delta",
            "step.stop",
            "interaction.completed"
        ]
    );
    assert!(events.iter().all(|(kind, data)| data["event_type"] == kind.as_str()));
    let id = events[0].1["interaction"]["id"].as_str().unwrap();
    assert!(id.starts_with("v1_"));
    let completed = &events[7].1["interaction"];
    assert_eq!((completed["id"].as_str(), completed["status"].as_str()), (Some(id), Some("completed")));
    assert_eq!(completed["model"], FLASH);
    assert!(completed["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let deltas: String = events.iter().filter_map(|(_, d)| d["delta"]["text"].as_str()).collect();
    assert_eq!(deltas, "Hello from gemini-2.5-flash");
    assert!(arrivals[0] < delay, "the created event comes at once: {arrivals:?}");
    assert!(arrivals[7] >= delay * 4, "deltas and the end are spaced by the stream delay: {arrivals:?}");
    // A stored interaction replays as a stream, resumable after an event id.
    let replay = call(
        &mock,
        "GET",
        B,
        &format!("/v1beta/interactions/{id}?stream=true&last_event_id=evt_5"),
        Value::Null,
    );
    let replayed = sse_events(&replay.text());
    let kinds: Vec<&str> = replayed.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["step.delta", "step.stop", "interaction.completed"]);
    assert_eq!(replayed[0].1["event_id"], "evt_6");
}

#[test]
fn a_background_interaction_answers_at_once_and_is_completed_by_a_later_get() {
    let mock = mock();
    let started = ok(interaction(&mock, A, json!({"model": FLASH, "input": "x", "background": true})));
    assert_eq!(started["status"], "in_progress");
    assert!(started.get("usage").is_none() && started.get("steps").is_none(), "{started}");
    let id = started["id"].as_str().unwrap();
    refused(&call(&mock, "GET", C, &format!("/v1beta/interactions/{id}"), Value::Null), 404, "NOT_FOUND");
    let done = ok(call(&mock, "GET", B, &format!("/v1beta/interactions/{id}?stream=false"), Value::Null));
    assert_eq!(done["status"], "completed");
    assert!(done["usage"]["total_tokens"].as_u64().unwrap() > 0, "{done}");
    // A background interaction cancelled before any read has no result.
    let other = ok(interaction(&mock, A, json!({"model": FLASH, "input": "x", "background": true})));
    let path = format!("/v1beta/interactions/{}/cancel", other["id"].as_str().unwrap());
    assert_eq!(ok(call(&mock, "POST", A, &path, json!({})))["status"], "cancelled");
    refused(
        &interaction(&mock, A, json!({"model": FLASH, "background": true, "store": false})),
        400,
        "INVALID_ARGUMENT",
    );
}

#[test]
fn batch_results_are_a_file_of_the_batchs_project() {
    let mock = mock();
    let lines = b"{\"key\":\"a\",\"request\":{\"contents\":[{\"parts\":[{\"text\":\"one\"}]}]}}\n\
                  {\"key\":\"b\",\"request\":{\"contents\":[{\"parts\":[{\"text\":\"two\"}]}]}}\n";
    let input = upload(&mock, A, "v1", lines);
    let body = json!({"batch": {"display_name": "nightly", "input_config": {"file_name": input["name"]}}});
    let created =
        ok(call(&mock, "POST", B, &format!("/v1/models/{FLASH}:batchGenerateContent"), body.clone()));
    let name = created["name"].as_str().unwrap();
    assert!(name.starts_with("batches/"), "{created}");
    let meta = &created["metadata"];
    assert_eq!(meta["@type"], "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch");
    assert_eq!(
        (meta["state"].as_str(), meta["displayName"].as_str()),
        (Some("BATCH_STATE_PENDING"), Some("nightly"))
    );
    assert_eq!(meta["model"], format!("models/{FLASH}"));
    let other = call(&mock, "POST", C, &format!("/v1/models/{FLASH}:batchGenerateContent"), body);
    refused(&other, 403, "PERMISSION_DENIED");
    refused(&call(&mock, "GET", C, &format!("/v1/{name}"), Value::Null), 404, "NOT_FOUND");
    let done = ok(call(&mock, "GET", A, &format!("/v1/{name}"), Value::Null));
    assert_eq!(
        (done["metadata"]["state"].as_str(), done["done"].as_bool()),
        (Some("BATCH_STATE_SUCCEEDED"), Some(true))
    );
    let results = done["metadata"]["output"]["responsesFile"].as_str().unwrap();
    assert_eq!(mock.owner_of(results).as_deref(), Some("P"));
    let id = results.trim_start_matches("files/");
    let bytes =
        call(&mock, "GET", B, &format!("/download/v1beta/files/{id}:download?alt=media"), Value::Null);
    assert_eq!(bytes.status, 200, "{}", bytes.text());
    let lines: Vec<Value> = bytes.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["key"], "b");
    assert!(lines[0]["response"]["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0, "{:?}", lines[0]);
    assert_eq!(
        call(&mock, "GET", A, &format!("/v1/files/{id}:download?alt=media"), Value::Null).body,
        bytes.body
    );
    let theirs = call(&mock, "GET", C, &format!("/v1/files/{id}:download?alt=media"), Value::Null);
    refused(&theirs, 403, "PERMISSION_DENIED");
    let uploaded = input["name"].as_str().unwrap().trim_start_matches("files/").to_string();
    let not_generated =
        call(&mock, "GET", A, &format!("/v1/files/{uploaded}:download?alt=media"), Value::Null);
    refused(&not_generated, 400, "INVALID_ARGUMENT");
    // Cancel and delete.
    assert_eq!(ok(call(&mock, "POST", A, &format!("/v1/{name}:cancel"), json!({}))), json!({}));
    assert_eq!(ok(call(&mock, "DELETE", B, &format!("/v1/{name}"), Value::Null)), json!({}));
    refused(&call(&mock, "GET", A, &format!("/v1/{name}"), Value::Null), 404, "NOT_FOUND");
}

#[test]
fn inline_batches_answer_inline_and_check_what_their_requests_name() {
    let mock = mock();
    let theirs = mock.add_file("Q", "qfile");
    let request =
        |text: &str| json!({"request": {"contents": [{"parts": [{"text": text}]}]}, "metadata": {"n": text}});
    let body = json!({"batch": {"displayName": "inline", "inputConfig": {"requests": {"requests": [request("one"), request("two")]}}}});
    let created = ok(call(&mock, "POST", A, &format!("/v1beta/models/{FLASH}:batchGenerateContent"), body));
    let done =
        ok(call(&mock, "GET", B, &format!("/v1beta/{}", created["name"].as_str().unwrap()), Value::Null));
    let inlined = done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"].as_array().unwrap();
    assert_eq!(inlined.len(), 2);
    assert_eq!(inlined[1]["metadata"]["n"], "two");
    assert!(inlined[0]["response"]["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
    let uses_theirs = json!({"request": {"contents": [{"parts": [{"fileData": {"fileUri": theirs}}]}]}});
    let body = json!({"batch": {"inputConfig": {"requests": {"requests": [uses_theirs]}}}});
    refused(
        &call(&mock, "POST", A, &format!("/v1beta/models/{FLASH}:batchGenerateContent"), body),
        403,
        "PERMISSION_DENIED",
    );
    // Embedding batches.
    let body = json!({"batch": {"inputConfig": {"requests": {"requests": [{"request": {"content": {"parts": [{"text": "x"}]}}}]}}}});
    let created =
        ok(call(&mock, "POST", A, "/v1beta/models/gemini-embedding-001:asyncBatchEmbedContent", body));
    let done =
        ok(call(&mock, "GET", A, &format!("/v1beta/{}", created["name"].as_str().unwrap()), Value::Null));
    assert!(
        done["metadata"]["output"]["inlinedResponses"]["inlinedResponses"][0]["response"]["embedding"]
            .is_object()
    );
}

#[test]
fn file_search_stores_their_documents_and_operations_follow_their_project() {
    let mock = mock();
    let store = mock.add_file_search_store("Q", "qstore");
    let tools = json!([{"fileSearch": {"fileSearchStoreNames": [store]}}]);
    let body = json!({"contents": [{"parts": [{"text": "What do the docs say?"}]}], "tools": tools});
    let path = format!("/v1beta/models/{FLASH}:generateContent");
    refused(&call(&mock, "POST", A, &path, body.clone()), 404, "NOT_FOUND");
    let grounded = ok(call(&mock, "POST", C, &path, body));
    let text = grounded["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap();
    assert_eq!(text, "Hello from gemini-2.5-flash (grounded in fileSearchStores/qstore)");
    let snake = json!({"contents": [], "tools": [{"file_search": {"file_search_store_names": [store]}}]});
    let stream = format!("/v1beta/models/{FLASH}:streamGenerateContent?alt=sse");
    refused(&call(&mock, "POST", B, &stream, snake.clone()), 404, "NOT_FOUND");
    assert!(call(&mock, "POST", C, &stream, snake).text().contains("grounded in fileSearchStores/qstore"));
    // importFile: the store and the file must both be the caller's.
    let mine = mock.add_file("P", "pfile");
    let theirs = mock.add_file("Q", "qfile");
    let import = format!("/v1beta/{store}:importFile");
    refused(&call(&mock, "POST", A, &import, json!({"fileName": theirs})), 404, "NOT_FOUND");
    refused(&call(&mock, "POST", C, &import, json!({"fileName": mine})), 403, "PERMISSION_DENIED");
    let op = ok(call(&mock, "POST", C, &import, json!({"file_name": theirs})));
    let op_name = op["name"].as_str().unwrap();
    assert!(op_name.starts_with(&format!("{store}/operations/")) && op["done"] == true, "{op}");
    let document = op["response"]["documentName"].as_str().unwrap();
    assert_eq!(op["response"]["parent"], store);
    assert_eq!(ok(call(&mock, "GET", C, &format!("/v1beta/{op_name}"), Value::Null)), op);
    refused(&call(&mock, "GET", A, &format!("/v1beta/{op_name}"), Value::Null), 404, "NOT_FOUND");
    let docs = ok(call(&mock, "GET", C, &format!("/v1beta/{store}/documents"), Value::Null));
    assert_eq!(docs["documents"][0]["name"], document);
    refused(&call(&mock, "GET", A, &format!("/v1beta/{store}/documents"), Value::Null), 404, "NOT_FOUND");
    assert_eq!(
        ok(call(&mock, "GET", C, &format!("/v1beta/{store}"), Value::Null))["activeDocumentsCount"],
        "1"
    );
    // Deleting a non-empty store needs force.
    refused(&call(&mock, "DELETE", C, &format!("/v1beta/{store}"), Value::Null), 400, "FAILED_PRECONDITION");
    refused(&call(&mock, "DELETE", A, &format!("/v1beta/{store}?force=true"), Value::Null), 404, "NOT_FOUND");
    ok(call(&mock, "DELETE", C, &format!("/v1beta/{store}?force=true"), Value::Null));
    refused(&call(&mock, "GET", C, &format!("/v1beta/{document}"), Value::Null), 404, "NOT_FOUND");
}

#[test]
fn every_route_exists_under_v1_v1beta_and_v1alpha() {
    let mock = mock();
    for version in ["v1", "v1beta", "v1alpha"] {
        let file = upload(&mock, A, version, b"x");
        let name = file["name"].as_str().unwrap();
        ok(call(&mock, "GET", B, &format!("/{version}/{name}"), Value::Null));
        ok(call(&mock, "GET", B, &format!("/{version}/files"), Value::Null));
        ok(call(
            &mock,
            "POST",
            B,
            &format!("/{version}/interactions"),
            json!({"model": FLASH, "input": "x"}),
        ));
        ok(call(&mock, "POST", B, &format!("/{version}/models/{FLASH}:generateContent"), generate_body()));
        ok(call(&mock, "GET", B, &format!("/{version}/models"), Value::Null));
    }
    let elsewhere = call(&mock, "POST", A, "/v1beta/auth_tokens", json!({}));
    assert_eq!(elsewhere.status, 404, "ephemeral tokens are v1alpha only");
    refused(&call(&mock, "GET", A, "/v2/files", Value::Null), 404, "NOT_FOUND");
}

#[test]
fn trigger_executions_make_interactions_of_the_triggers_project() {
    let mock = mock();
    let trigger =
        ok(call(&mock, "POST", A, "/v1beta/triggers", json!({"interaction": {"agent": "deep-research"}})));
    let path = format!("/v1beta/triggers/{}/executions", trigger["id"].as_str().unwrap());
    refused(&call(&mock, "POST", C, &path, json!({})), 404, "NOT_FOUND");
    let execution = ok(call(&mock, "POST", B, &path, json!({})));
    let id = execution["interaction_id"].as_str().unwrap();
    assert_eq!(mock.owner_of(&format!("interactions/{id}")).as_deref(), Some("P"));
    let made = ok(call(&mock, "GET", A, &format!("/v1beta/interactions/{id}"), Value::Null));
    assert_eq!((made["agent"].as_str(), made["status"].as_str()), (Some("deep-research"), Some("completed")));
    let listed = ok(call(&mock, "GET", A, &path, Value::Null));
    assert_eq!(listed["trigger_executions"][0]["interaction_id"], id);
    // Seeded interactions chain like any other.
    let seeded = mock.add_interaction("Q", FLASH);
    let next = json!({"model": FLASH, "input": "x", "previous_interaction_id": seeded});
    refused(&interaction(&mock, A, next.clone()), 404, "NOT_FOUND");
    assert_eq!(text_of(&ok(interaction(&mock, C, next))), "Hello from gemini-2.5-flash (turn 2)");
}
