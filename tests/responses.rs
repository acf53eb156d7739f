//! The OpenAI Responses API through the pool (SPEC §12): answers whole and streamed (every body
//! and event validated against OpenAI's published schema), what Codex CLI sends, tool calls over
//! two turns carrying Gemini's thought signature (stateless and with `previous_response_id`), the
//! response store (`GET`, `DELETE`, 404s, `/metrics`), and errors in OpenAI's shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use gemini_key_manager::openai::openapi;
use serde_json::{Value, json};
use support::mock_upstream::{StreamEnd, THOUGHT_SIGNATURE};
use support::*;

fn schema() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openai/openai-responses-subset.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    })
}

#[track_caller]
fn assert_valid(name: &str, v: &Value) {
    let name = if name == "event" {
        openapi::event_schema(schema(), v).unwrap_or_else(|| panic!("unknown event {v}"))
    } else {
        name
    };
    let errors = openapi::validate(schema(), name, v);
    assert!(errors.is_empty(), "{name} violations: {errors:#?}\n{v:#}");
}

fn proxy(mock: &MockUpstream) -> Proxy {
    Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.aliases = gemini_key_manager::alias::Aliases::parse("gpt-*=gemini-2.5-flash").unwrap();
        c.keepalive = Duration::from_secs(1);
    })
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn create(proxy: &Proxy, body: &Value) -> Answer {
    let auth = bearer();
    send(
        "POST",
        &format!("{}/v1/responses", proxy.url),
        &[("authorization", &auth), ("content-type", "application/json"), ("accept-encoding", "zstd,gzip")],
        body.to_string().as_bytes(),
    )
}

/// The data of every SSE event, each checked against the schema, numbered in order, its `event:`
/// line naming its type.
fn events(text: &str) -> Vec<Value> {
    let evs: Vec<Value> = text
        .split("\n\n")
        .filter(|e| e.lines().any(|l| l.starts_with("data: ")))
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("");
            let data: Value =
                serde_json::from_str(e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
            assert_eq!(data["type"], name, "{e}");
            data
        })
        .collect();
    for (n, e) in evs.iter().enumerate() {
        assert_valid("event", e);
        assert_valid("ResponseStreamEvent", e);
        assert_eq!(e["sequence_number"], n as u64, "{e}");
    }
    evs
}

fn kinds(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn last_generate(mock: &MockUpstream) -> support::mock_upstream::Recorded {
    mock.requests().into_iter().rev().find(|r| r.path.contains("enerateContent")).unwrap()
}

const WEATHER: &str = r#"[{"type": "function", "name": "get_weather", "description": "Weather of a city", "strict": true,
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}]"#;

fn weather() -> Value {
    serde_json::from_str(WEATHER).unwrap()
}

#[test]
fn a_plain_answer_is_a_valid_response_naming_the_model_asked_for() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let a = create(
        &proxy,
        &json!({"model": "gpt-5", "input": "Hello", "instructions": "Be brief.", "metadata": {"run": "1"}}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let r = a.json();
    assert_valid("Response", &r);
    assert_eq!(
        (r["object"].as_str(), r["status"].as_str(), r["model"].as_str()),
        (Some("response"), Some("completed"), Some("gpt-5"))
    );
    assert!(r["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(r["output"][0]["content"][0]["text"], "Hello from gemini-2.5-flash");
    assert_eq!(r["metadata"], json!({"run": "1"}));
    assert!(r["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let sent = last_generate(&mock);
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent", "aliased");
    assert_eq!(sent.json().unwrap()["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
}

/// What Codex CLI sends (observed against a stub): a developer message instead of instructions,
/// an environment_context message, strict:false functions, a namespace group, web_search,
/// reasoning.summary without an effort, store:false, include, prompt_cache_key, client_metadata.
#[test]
fn a_codex_shaped_request_is_answered_and_nothing_gemini_refuses_goes_upstream() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let body = json!({
        "model": "gpt-5-codex", "instructions": null, "stream": true, "store": false,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex. ".repeat(1000)}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context><cwd>/tmp</cwd></environment_context>"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Say hi"}]}],
        "tools": [
            {"type": "function", "name": "shell", "description": "Runs a command", "strict": false,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                            "required": ["command"], "additionalProperties": false}},
            {"type": "namespace", "name": "mcp__docs", "description": "Docs", "tools": [
                {"type": "function", "name": "lookup", "strict": false, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]},
            {"type": "web_search"}],
        "tool_choice": "auto", "parallel_tool_calls": false, "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"], "prompt_cache_key": "0199-abc", "client_metadata": {"x": "y"},
        "text": {"verbosity": "medium"}});
    let a = create(&proxy, &body);
    assert_eq!(a.status, 200, "{}", a.text());
    let evs = events(&a.text());
    assert_eq!(kinds(&evs)[..2], ["response.created", "response.in_progress"]);
    assert_eq!(*kinds(&evs).last().unwrap(), "response.completed");
    // Tools were offered: the mock answers with a signed call of the first function.
    let done = &evs.last().unwrap()["response"];
    let call = done["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").unwrap();
    assert_eq!(call["name"], "shell");
    let reasoning = done["output"].as_array().unwrap().iter().find(|i| i["type"] == "reasoning").unwrap();
    assert_eq!(reasoning["encrypted_content"], THOUGHT_SIGNATURE);
    let sent = last_generate(&mock).json().unwrap();
    let mut keys = Vec::new();
    keys_anywhere(&sent, &mut keys);
    for refused in [
        "prompt_cache_key",
        "client_metadata",
        "include",
        "store",
        "strict",
        "additionalProperties",
        "verbosity",
        "parallel_tool_calls",
        "namespace",
        "instructions",
        "googleSearch",
        "input",
    ] {
        assert!(!keys.iter().any(|k| k == refused), "{refused} went upstream: {:?}", sent["tools"]);
    }
    assert_eq!(sent["tools"][0]["functionDeclarations"][1]["name"], "mcp__docs.lookup");
    assert!(sent["systemInstruction"]["parts"][0]["text"].as_str().unwrap().starts_with("You are Codex."));
    assert_eq!(sent["generationConfig"]["thinkingConfig"], json!({"includeThoughts": true}));
    // store:false: nothing kept.
    let g = send(
        "GET",
        &format!("{}/v1/responses/{}", proxy.url, done["id"].as_str().unwrap()),
        &[("authorization", &bearer())],
        b"",
    );
    assert_eq!(g.status, 404);
}

#[test]
fn a_stream_arrives_event_by_event() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(400));
    mock.set_stream_events(4);
    let proxy = proxy(&mock);
    let body = json!({"model": "gemini-2.5-flash", "input": "Count", "stream": true});
    let resp =
        open_stream(&format!("{}/v1/responses", proxy.url), ("authorization", &bearer()), &body.to_string());
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream; charset=utf-8");
    let (text, first_delta, total) = read_timed(resp, "response.output_text.delta");
    assert!(
        first_delta.unwrap() + Duration::from_millis(900) < total,
        "first delta {first_delta:?} of {total:?}"
    );
    let evs = events(&text);
    let deltas = evs.iter().filter(|e| e["type"] == "response.output_text.delta").count();
    assert_eq!(deltas, 4, "{:?}", kinds(&evs));
    let done = evs.last().unwrap();
    assert_eq!(done["type"], "response.completed");
    assert_eq!(
        done["response"]["output"][0]["content"][0]["text"],
        "Part 1 of 4, Part 2 of 4, Part 3 of 4, Hello from gemini-2.5-flash."
    );
    assert!(done["response"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // Stored by default: GET gives the same object.
    let id = done["response"]["id"].as_str().unwrap();
    let g = send("GET", &format!("{}/v1/responses/{id}", proxy.url), &[("authorization", &bearer())], b"");
    assert_eq!(g.status, 200, "{}", g.text());
    assert_valid("Response", &g.json());
    assert_eq!(g.json(), done["response"]);
}

#[test]
fn a_stateless_two_turn_tool_call_brings_the_thought_signature_back() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    let first = create(
        &proxy,
        &json!({"model": "gemini-3-pro-preview", "input": input, "tools": weather(), "store": false,
        "include": ["reasoning.encrypted_content"]}),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    let r = first.json();
    assert_valid("Response", &r);
    let output = r["output"].as_array().unwrap().clone();
    let call = output.iter().find(|i| i["type"] == "function_call").unwrap().clone();
    assert_eq!(
        (call["name"].as_str(), call["arguments"].as_str()),
        (Some("get_weather"), Some("{\"city\":\"Paris\"}"))
    );
    input.extend(output);
    input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"}));
    let second = create(
        &proxy,
        &json!({"model": "gemini-3-pro-preview", "input": input, "tools": weather(), "store": false}),
    );
    assert_eq!(second.status, 200, "the mock refuses a call without its signature: {}", second.text());
    assert_valid("Response", &second.json());
    assert!(
        second.json()["output"][0]["content"][0]["text"].as_str().unwrap().contains("sunny"),
        "{}",
        second.text()
    );
    let sent = last_generate(&mock).json().unwrap();
    assert_eq!(sent["contents"][1]["parts"][0]["thoughtSignature"], THOUGHT_SIGNATURE, "{sent}");
}

#[test]
fn previous_response_id_continues_a_stored_conversation_streamed() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let a = create(
        &proxy,
        &json!({"model": "gpt-5", "input": "Weather in Paris?", "tools": weather(), "stream": true}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let evs = events(&a.text());
    assert!(kinds(&evs).contains(&"response.function_call_arguments.delta"), "{:?}", kinds(&evs));
    assert!(kinds(&evs).contains(&"response.function_call_arguments.done"));
    let done = &evs.last().unwrap()["response"];
    let id = done["id"].as_str().unwrap();
    let call_id =
        done["output"].as_array().unwrap().iter().find(|i| i["type"] == "function_call").unwrap()["call_id"]
            .clone();
    let b = create(
        &proxy,
        &json!({"model": "gpt-5", "previous_response_id": id, "tools": weather(),
        "input": [{"type": "function_call_output", "call_id": call_id, "output": "{\"sky\": \"clear\"}"}]}),
    );
    assert_eq!(b.status, 200, "{}", b.text());
    let r = b.json();
    assert_valid("Response", &r);
    assert_eq!(r["previous_response_id"], id);
    assert!(r["output"][0]["content"][0]["text"].as_str().unwrap().contains("clear"), "{r}");
    let sent = last_generate(&mock).json().unwrap();
    assert_eq!(sent["contents"][0]["parts"][0]["text"], "Weather in Paris?");
    assert_eq!(sent["contents"][1]["parts"][0]["thoughtSignature"], THOUGHT_SIGNATURE);
    let auth = bearer();
    // Its input items: the question, the first answer's items (the call) and the call's output.
    let items = send(
        "GET",
        &format!("{}/v1/responses/{}/input_items", proxy.url, r["id"].as_str().unwrap()),
        &[("authorization", &auth)],
        b"",
    );
    assert_eq!(items.status, 200, "{}", items.text());
    let items = items.json();
    assert_valid("ResponseItemList", &items);
    let kinds: Vec<&str> =
        items["data"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"function_call_output"), "{kinds:?}");
    assert!(kinds.contains(&"function_call"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"message"), "{kinds:?}");
    // DELETE, then GET and previous_response_id are 404 in OpenAI's shape.
    let d = send("DELETE", &format!("{}/v1/responses/{id}", proxy.url), &[("authorization", &auth)], b"");
    assert_eq!((d.status, d.json()["deleted"].as_bool()), (200, Some(true)), "{}", d.text());
    for a in [
        send("GET", &format!("{}/v1/responses/{id}", proxy.url), &[("authorization", &auth)], b""),
        send("DELETE", &format!("{}/v1/responses/{id}", proxy.url), &[("authorization", &auth)], b""),
        create(&proxy, &json!({"model": "gpt-5", "previous_response_id": id, "input": "again"})),
    ] {
        assert_eq!(a.status, 404, "{}", a.text());
        assert_valid("ErrorResponse", &a.json());
        assert_eq!(a.json()["error"]["type"], "invalid_request_error");
        assert!(a.json()["error"]["message"].as_str().unwrap().contains(id));
    }
    let m = send("GET", &format!("{}/metrics", proxy.url), &[("authorization", &auth)], b"");
    assert!(m.text().contains("gkm_responses_stored 1\n"), "one stored answer left: {}", m.text());
    assert!(m.text().contains("gkm_responses_stored_bytes "));
    assert!(m.text().contains("gkm_requests_total{route=\"responses\",surface=\"openai\",status=\"200\"}"));
}

#[test]
fn structured_output_and_reasoning_go_to_gemini() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let a = create(
        &proxy,
        &json!({"model": "gemini-2.5-flash", "input": "Answer in JSON", "reasoning": {"effort": "medium"},
        "max_output_tokens": 300, "text": {"format": {"type": "json_schema", "name": "answer", "strict": true,
        "schema": {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"], "additionalProperties": false}}}}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let r = a.json();
    assert_valid("Response", &r);
    let text = r["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(serde_json::from_str::<Value>(text).unwrap()["answer"].is_string(), "{text}");
    assert_eq!(r["text"]["format"]["name"], "answer");
    let gc = &last_generate(&mock).json().unwrap()["generationConfig"];
    assert_eq!(gc["responseMimeType"], "application/json");
    assert_eq!(gc["responseSchema"]["type"], "OBJECT");
    assert_eq!(gc["thinkingConfig"], json!({"thinkingBudget": 8192, "includeThoughts": true}));
    assert_eq!(gc["maxOutputTokens"], 300);
}

#[test]
fn errors_are_in_openais_shape() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let url = format!("{}/v1/responses", proxy.url);
    let auth = bearer();
    let check = |a: &Answer, status: u16| {
        assert_eq!(a.status, status, "{}", a.text());
        assert_valid("ErrorResponse", &a.json());
    };
    let a = send("POST", &url, &[("authorization", "Bearer wrong")], b"{}");
    check(&a, 401);
    assert_eq!(a.json()["error"]["code"], "invalid_api_key");
    let a = send("POST", &url, &[("authorization", &auth)], b"{not json");
    check(&a, 400);
    for (body, param) in [
        (json!({"input": "x"}), "model"),
        (json!({"model": "gpt-5"}), "input"),
        (
            json!({"model": "gpt-5", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://127.0.0.1:1/a.png"}]}]}),
            "input[0].content[0].image_url",
        ),
        (
            json!({"model": "gpt-5", "input": "x", "tools": [{"type": "computer_use_preview"}]}),
            "tools[0].type",
        ),
    ] {
        let a = create(&proxy, &body);
        check(&a, 400);
        assert_eq!(a.json()["error"]["param"], param, "{}", a.text());
    }
    let before = mock.request_count();
    let a = create(&proxy, &json!({"model": "exhausted-model", "input": "x"}));
    check(&a, 503);
    assert!(a.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert!(mock.request_count() > before, "the pool was walked");
    let a = create(&proxy, &json!({"model": "no-such-model", "input": "x"}));
    check(&a, 404);
    let a =
        send("GET", &format!("{}/v1/responses/resp_unknown", proxy.url), &[("authorization", &auth)], b"");
    check(&a, 404);
}

#[test]
fn an_upstream_that_breaks_mid_stream_ends_with_response_failed() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    mock.set_script(|rec| {
        rec.path.contains("streamGenerateContent").then(|| support::Reply::Sse {
            events: vec![
                json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Half"}]}}]}),
            ],
            delay: Duration::ZERO,
            then: StreamEnd::CloseAbruptly,
        })
    });
    let a = create(&proxy, &json!({"model": "gemini-2.5-flash", "input": "x", "stream": true}));
    assert_eq!(a.status, 200);
    let evs = events(&a.text());
    assert_eq!(kinds(&evs)[kinds(&evs).len() - 2..], ["error", "response.failed"], "{:?}", kinds(&evs));
    assert_eq!(evs.last().unwrap()["response"]["status"], "failed");
}

#[test]
fn input_items_lists_what_a_stored_response_was_made_from() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let auth = bearer();
    let list = |id: &str, query: &str| {
        send(
            "GET",
            &format!("{}/v1/responses/{id}/input_items{query}", proxy.url),
            &[("authorization", &auth)],
            b"",
        )
    };
    let a = create(
        &proxy,
        &json!({"model": "gemini-2.5-flash", "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let first = a.json()["id"].as_str().unwrap().to_string();
    let b = create(
        &proxy,
        &json!({"model": "gemini-2.5-flash", "previous_response_id": first, "input": "And now?"}),
    );
    assert_eq!(b.status, 200, "{}", b.text());
    let second = b.json()["id"].as_str().unwrap().to_string();
    let answer_text = a.json()["output"][0]["content"][0]["text"].clone();

    // Newest first by default; the earlier turn (its input and its answer) is part of the input.
    let page = list(&second, "");
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    assert_valid("ResponseItemList", &page);
    assert_eq!(page["object"], "list");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 4, "{page}");
    assert_eq!(data[0]["content"][0], json!({"type": "input_text", "text": "And now?"}));
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(data[1]["content"][0]["text"], answer_text);
    assert_eq!(data[3]["content"][0], json!({"type": "input_text", "text": "Be brief."}));
    for item in data {
        assert_eq!(item["type"], "message", "{item}");
        assert!(item["id"].as_str().is_some_and(|id| !id.is_empty()), "{item}");
    }
    assert_eq!(
        (page["first_id"].clone(), page["last_id"].clone()),
        (data[0]["id"].clone(), data[3]["id"].clone())
    );
    assert_eq!(page["has_more"], false);
    // The ids stay the same from one read to the next; pages in ascending order follow `after`.
    let asc = list(&second, "?order=asc&limit=3").json();
    assert_valid("ResponseItemList", &asc);
    let ids: Vec<&Value> = asc["data"].as_array().unwrap().iter().map(|i| &i["id"]).collect();
    assert_eq!(ids, [&data[3]["id"], &data[2]["id"], &data[1]["id"]]);
    assert_eq!(asc["has_more"], true);
    let rest =
        list(&second, &format!("?order=asc&limit=3&after={}", asc["last_id"].as_str().unwrap())).json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["data"][0]["id"], data[0]["id"]);
    assert_eq!(rest["has_more"], false);
    assert_valid("ResponseItemList", &rest);
    // Past the last item: an empty page, still a valid list.
    let empty = list(&second, &format!("?after={}", data[3]["id"].as_str().unwrap())).json();
    assert_eq!(empty["data"], json!([]));
    assert_valid("ResponseItemList", &empty);
    // The first response's own input: its two messages only.
    assert_eq!(list(&first, "").json()["data"].as_array().unwrap().len(), 2);
    // Bad parameters are 400, an unknown response 404, each in OpenAI's error shape.
    for (query, status) in [("?limit=0", 400), ("?limit=101", 400), ("?order=up", 400), ("?after=nope", 400)]
    {
        let a = list(&second, query);
        assert_eq!(a.status, status, "{query}: {}", a.text());
        assert_valid("ErrorResponse", &a.json());
    }
    let a = list("resp_unknown", "");
    assert_eq!(a.status, 404, "{}", a.text());
    assert_valid("ErrorResponse", &a.json());
    // The continued conversation still reaches Gemini as before.
    let sent = last_generate(&mock).json().unwrap();
    assert_eq!(sent["systemInstruction"]["parts"][0]["text"], "Be brief.", "{sent}");
    assert_eq!(sent["contents"].as_array().unwrap().len(), 3, "{sent}");
}

#[test]
fn a_response_is_kept_before_its_answer_reaches_the_client() {
    // A client may continue a response the moment it has it; the store must already hold it.
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy(&mock);
    let auth = bearer();
    for stream in [false, true] {
        for i in 0..40 {
            let a = create(
                &proxy,
                &json!({"model": "gemini-2.5-flash", "input": format!("hi {i}"), "stream": stream}),
            );
            assert_eq!(a.status, 200, "{}", a.text());
            let id = if stream {
                events(&a.text()).last().unwrap()["response"]["id"].as_str().unwrap().to_string()
            } else {
                a.json()["id"].as_str().unwrap().to_string()
            };
            let got =
                send("GET", &format!("{}/v1/responses/{id}", proxy.url), &[("authorization", &auth)], b"");
            assert_eq!(got.status, 200, "stream={stream} round {i}: {}", got.text());
        }
    }
}
