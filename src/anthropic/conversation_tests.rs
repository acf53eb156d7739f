//! Whole-conversation fixtures: a request shaped like Claude Code's, and two-turn tool
//! conversations whose thought signature must come back to Google on the right part, through a
//! client that serializes the answer and sends it back parsed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::*;

/// Every object key anywhere in `v` (iteratively).
fn keys(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    out.push(k.clone());
                    stack.push(x);
                }
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    out
}

fn claude_code_request() -> Value {
    json!({
        "model": "gemini-2.5-flash",
        "max_tokens": 128000,
        "stream": true,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "metadata": {"user_id": "user_abc_account_def_session_123"},
        "service_tier": "auto",
        "container": "cntr_1",
        "mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}],
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.0"},
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "You are an interactive CLI tool...", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        ],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nAs you answer the user's questions, you can use the following context...\n</system-reminder>"},
                {"type": "text", "text": "list the files", "cache_control": {"type": "ephemeral"}}
            ]}
        ],
        "tools": [
            {"name": "Bash", "description": "Executes a given bash command",
             "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                 "properties": {"command": {"type": "string", "description": "The command to execute"},
                                "timeout": {"type": "number", "description": "Optional timeout"}},
                 "required": ["command"], "additionalProperties": false}},
            {"name": "Read", "description": "Reads a file", "cache_control": {"type": "ephemeral"},
             "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                 "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer", "exclusiveMinimum": 0}},
                 "required": ["file_path"], "additionalProperties": false}},
            {"name": "mcp__ide__getDiagnostics", "description": "Get diagnostics", "defer_loading": true,
             "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                 "properties": {"uri": {"type": "string"}}, "additionalProperties": false}}
        ]
    })
}

#[test]
fn claude_code_request_drops_everything_google_would_refuse() {
    let call = messages_request_to_gemini(&claude_code_request(), Some(65_536)).unwrap();
    assert!(call.stream);
    assert_eq!(call.max_tokens, 65_536);
    let found = keys(&call.body);
    for dropped in [
        "cache_control",
        "$schema",
        "additionalProperties",
        "defer_loading",
        "context_management",
        "output_config",
        "metadata",
        "service_tier",
        "container",
        "mcp_servers",
        "ttl",
        "exclusiveMinimum",
        "stream",
        "max_tokens",
    ] {
        assert!(!found.iter().any(|k| k == dropped), "{dropped} in {:#}", call.body);
    }
    let top: Vec<&String> = call.body.as_object().unwrap().keys().collect();
    assert_eq!(top, ["contents", "generationConfig", "systemInstruction", "tools"]);
    assert_eq!(call.body["systemInstruction"]["parts"].as_array().unwrap().len(), 3);
    assert_eq!(
        call.body["generationConfig"],
        json!({"maxOutputTokens": 65_536, "thinkingConfig": {"thinkingBudget": -1}})
    );
    assert_eq!(call.body["contents"][0]["parts"].as_array().unwrap().len(), 2);
    let declarations = call.body["tools"][0]["functionDeclarations"].as_array().unwrap();
    assert_eq!(declarations.len(), 3);
    assert_eq!(
        declarations[0]["parameters"],
        json!({"type": "OBJECT", "properties": {
            "command": {"type": "STRING", "description": "The command to execute"},
            "timeout": {"type": "NUMBER", "description": "Optional timeout"}}, "required": ["command"]})
    );
}

/// Turn 1's Gemini answer, as the client gets it, serialized and parsed back as the client would
/// send it in turn 2.
fn client_copy(v: &Value) -> Value {
    serde_json::from_str(&serde_json::to_string(v).unwrap()).unwrap()
}

fn turn_two(model: &str, assistant_content: Value, tool_use_id: &Value) -> Value {
    let request = json!({"model": model, "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
    "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
    "messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": assistant_content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use_id, "content": "21C, sunny"}]}
    ]});
    messages_request_to_gemini(&client_copy(&request), None).unwrap().body
}

const SIGNATURE: &str = "CiQBcsjafE+7Sb5wXJ1n2cV/K3vE8mJk0a1Zr0tq3yA8m0dUeQo=";

fn turn_one_answer() -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": [
        {"text": "**Looking up weather** I should call the tool.", "thought": true},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}]},
        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 10, "thoughtsTokenCount": 50}})
}

fn assert_signed_call(body: &Value) {
    let model_turn = &body["contents"][1];
    assert_eq!(model_turn["role"], "model");
    assert_eq!(
        model_turn["parts"],
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}]),
        "{body:#}"
    );
    assert_eq!(
        body["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"content": "21C, sunny"}}})
    );
}

#[test]
fn two_turn_tool_conversation_returns_the_signature_on_the_function_call() {
    for model in ["gemini-2.5-flash", "gemini-3-pro-preview"] {
        let message = client_copy(&gemini_response_to_message(&turn_one_answer(), model, "msg_turn1"));
        assert_eq!(message["stop_reason"], "tool_use");
        let content = message["content"].clone();
        let tool_use = content.as_array().unwrap().iter().find(|b| b["type"] == "tool_use").unwrap().clone();
        assert_signed_call(&turn_two(model, content.clone(), &tool_use["id"]));
        // A client that drops thinking blocks from its history still returns the signature.
        let without_thinking = json!([tool_use.clone()]);
        assert_signed_call(&turn_two(model, without_thinking, &tool_use["id"]));
    }
}

#[test]
fn two_turn_tool_conversation_through_a_stream() {
    let mut stream = MessagesStream::new("gemini-2.5-flash", "msg_turn1s");
    let answer = turn_one_answer();
    let parts = answer["candidates"][0]["content"]["parts"].as_array().unwrap();
    let mut events = Vec::new();
    for (k, part) in parts.iter().enumerate() {
        let mut event = json!({"candidates": [{"content": {"role": "model", "parts": [part]}}]});
        if k + 1 == parts.len() {
            event["candidates"][0]["finishReason"] = json!("STOP");
        }
        events.extend(stream.feed(&event));
    }
    events.extend(stream.finish());
    // The client rebuilds the blocks from the SSE bytes, as Anthropic's SDKs do.
    let mut content: Vec<Value> = Vec::new();
    let mut partial: Vec<String> = Vec::new();
    for (name, data) in &events {
        let wire = String::from_utf8(sse(name, data)).unwrap();
        let data: Value =
            serde_json::from_str(wire.lines().nth(1).unwrap().strip_prefix("data: ").unwrap()).unwrap();
        match name.as_str() {
            "content_block_start" => {
                content.push(data["content_block"].clone());
                partial.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let d = &data["delta"];
                match d["type"].as_str().unwrap() {
                    "thinking_delta" => {
                        let t = format!(
                            "{}{}",
                            content[i]["thinking"].as_str().unwrap(),
                            d["thinking"].as_str().unwrap()
                        );
                        content[i]["thinking"] = json!(t);
                    }
                    "signature_delta" => content[i]["signature"] = d["signature"].clone(),
                    "input_json_delta" => partial[i].push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("{other}"),
                }
            }
            "content_block_stop" => {
                let i = data["index"].as_u64().unwrap() as usize;
                if content[i]["type"] == "tool_use" {
                    content[i]["input"] = serde_json::from_str(&partial[i]).unwrap();
                }
            }
            _ => {}
        }
    }
    assert_eq!(content.len(), 2);
    assert_eq!(content[0]["type"], "thinking");
    let id = content[1]["id"].clone();
    assert_signed_call(&turn_two("gemini-2.5-flash", Value::Array(content), &id));
}

#[test]
fn a_text_answers_signature_comes_back_on_its_text_part() {
    let answer = json!({"candidates": [{"content": {"parts": [
        {"text": "thinking", "thought": true}, {"text": "Paris is sunny.", "thoughtSignature": "c2lnVA=="}]}, "finishReason": "STOP"}]});
    let message = client_copy(&gemini_response_to_message(&answer, "gemini-2.5-flash", "msg_t"));
    let request = json!({"model": "gemini-2.5-flash", "max_tokens": 100, "messages": [
        {"role": "user", "content": "Weather?"}, {"role": "assistant", "content": message["content"]},
        {"role": "user", "content": "Thanks"}]});
    let body = messages_request_to_gemini(&request, None).unwrap().body;
    assert_eq!(
        body["contents"][1]["parts"],
        json!([{"text": "Paris is sunny.", "thoughtSignature": "c2lnVA=="}])
    );
}

#[test]
fn signatures_on_a_thought_part_and_on_the_call_each_keep_the_calls_own() {
    let answer = json!({"candidates": [{"content": {"parts": [
        {"text": "plan", "thought": true, "thoughtSignature": "dGhvdWdodA=="},
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIGNATURE}]}}]});
    let message = client_copy(&gemini_response_to_message(&answer, "gemini-2.5-flash", "msg_two"));
    assert_eq!(
        message["content"][0],
        json!({"type": "thinking", "thinking": "plan", "signature": "dGhvdWdodA=="})
    );
    let id = message["content"][1]["id"].clone();
    assert_signed_call(&turn_two("gemini-2.5-flash", message["content"].clone(), &id));
}

#[test]
fn a_non_base64_call_signature_travels_in_a_thinking_block() {
    let answer = json!({"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "opaque/sig?"}]}}]});
    let message = client_copy(&gemini_response_to_message(&answer, "gemini-2.5-flash", "msg_nb"));
    assert_eq!(
        message["content"][0],
        json!({"type": "thinking", "thinking": "", "signature": "opaque/sig?"})
    );
    let id = message["content"][1]["id"].clone();
    let body = turn_two("gemini-2.5-flash", message["content"].clone(), &id);
    assert_eq!(body["contents"][1]["parts"][0]["thoughtSignature"], "opaque/sig?");
}
