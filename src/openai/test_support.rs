//! Test-only: request helpers shared by the tests, and a small validator of produced values against OpenAI's published schemas (an extract of
//! OpenAI's openapi.json, kept verbatim in the fixture `openai-subset.json`).
//!
//! Never used outside tests; does no I/O at run time (the schema is compiled in with `include_str!`).
//! Understands exactly what those schemas use: `required`, `type` (string or list), `enum`, `items`,
//! `properties`, `$ref` to `#/components/schemas/*`, `anyOf` / `oneOf` (any branch passes),
//! OpenAPI 3.0's `nullable: true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::request::chat_request_to_gemini;
use super::types::{ChatCall, TranslateError};

/// The only path to adjust when the fixture moves (to `tests/fixtures/openai/` in the main crate).
const SUBSET: &str = include_str!("../../tests/fixtures/openai/openai-subset.json");

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(SUBSET).expect("openai-subset.json is valid JSON"))
}

/// Errors of `value` against `components.schemas[name]`; empty when it conforms.
pub fn validate(name: &str, value: &Value) -> Vec<String> {
    let doc = document();
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema named {name}");
    let mut errors = Vec::new();
    check(doc, schema, value, "$", &mut errors);
    errors
}

/// Panics with every violation when `value` does not conform to schema `name`.
#[track_caller]
pub fn assert_valid(name: &str, value: &Value) {
    let errors = validate(name, value);
    assert!(errors.is_empty(), "{name} violations: {errors:#?}\nvalue: {value:#}");
}

/// The translation of chat request `req`, which must succeed.
#[track_caller]
pub fn chat_ok(req: Value) -> ChatCall {
    chat_request_to_gemini(&req).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// The refusal of chat request `req`, asserting it is a 400 naming `param`.
#[track_caller]
pub fn chat_err(req: Value, param: Option<&str>) -> TranslateError {
    let e = chat_request_to_gemini(&req).expect_err("expected a 400");
    assert_eq!(e.status, 400, "{e}");
    assert_eq!(e.param.as_deref(), param, "{e}");
    e
}

/// A user message with text content.
pub fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
    let target = &doc["components"]["schemas"][name];
    assert!(target.is_object(), "dangling $ref {reference}");
    target
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unsupported type {other}"),
    }
}

fn check(doc: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) && value.is_null() {
        return;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        check(doc, resolve(doc, r), value, path, errors);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let ok = branches.iter().any(|b| {
                let mut sub = Vec::new();
                check(doc, b, value, path, &mut sub);
                sub.is_empty()
            });
            if !ok {
                errors.push(format!("{path}: matches no branch of {key}"));
            }
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            errors.push(format!("{path}: expected {t}, got {value}"));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_matches(t, value)) => {
            errors.push(format!("{path}: expected one of {ts:?}, got {value}"));
            return;
        }
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array).filter(|a| !a.contains(value)) {
        errors.push(format!("{path}: {value} not in enum {allowed:?}"));
    }
    if let Value::Object(map) = value {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    errors.push(format!("{path}: missing required property '{r}'"));
                }
            }
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, sub) in props {
                if let Some(v) = map.get(k) {
                    check(doc, sub, v, &format!("{path}.{k}"), errors);
                }
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn validator_is_not_vacuous() {
        // A well-formed model passes ...
        assert!(
            validate("Model", &json!({"id": "m", "object": "model", "created": 0, "owned_by": "g"}))
                .is_empty()
        );
        // ... a missing required property, a wrong type, a value outside an enum do not.
        assert!(!validate("Model", &json!({"id": "m", "object": "model", "created": 0})).is_empty());
        assert!(
            !validate("Model", &json!({"id": "m", "object": "model", "created": "0", "owned_by": "g"}))
                .is_empty()
        );
        assert!(
            !validate("Model", &json!({"id": "m", "object": "mdl", "created": 0, "owned_by": "g"}))
                .is_empty()
        );
        // $ref + items + anyOf: a choice whose content is a number fails.
        let bad = json!({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                         "message": {"role": "assistant", "content": 5, "refusal": null}}]});
        assert!(!validate("CreateChatCompletionResponse", &bad).is_empty());
        // nullable: finish_reason null is fine in a chunk, a number is not.
        let chunk = |fr: Value| {
            json!({"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": fr}]})
        };
        assert!(validate("CreateChatCompletionStreamResponse", &chunk(Value::Null)).is_empty());
        assert!(!validate("CreateChatCompletionStreamResponse", &chunk(json!(3))).is_empty());
        // usage: {$ref, nullable}
        let mut c = chunk(Value::Null);
        c["usage"] = Value::Null;
        assert!(validate("CreateChatCompletionStreamResponse", &c).is_empty());
        c["usage"] = json!({"prompt_tokens": 1});
        assert!(!validate("CreateChatCompletionStreamResponse", &c).is_empty());
    }
}
