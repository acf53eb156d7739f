//! Test-only: request helpers shared by the tests, and validation of produced values against
//! OpenAI's published schemas (extracts of OpenAI's openapi.json, kept verbatim in the fixtures
//! `openai-subset.json` for chat and `openai-responses-subset.json` for Responses) with the
//! validator of `openapi.rs`.
//!
//! Never used outside tests; does no I/O at run time (the schemas are compiled in with `include_str!`).

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
    super::openapi::validate(document(), name, value)
}

/// The Responses subset (`Response`, every stream event, `ErrorResponse`).
pub fn responses_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::from_str(include_str!("../../tests/fixtures/openai/openai-responses-subset.json"))
            .expect("openai-responses-subset.json is valid JSON")
    })
}

/// Panics with every violation when `value` is not a valid Responses `name` (or, for a stream
/// event, `name` = "event": the schema its `type` names).
#[track_caller]
pub fn assert_valid_response(name: &str, value: &Value) {
    let doc = responses_document();
    let name = if name == "event" {
        super::openapi::event_schema(doc, value).unwrap_or_else(|| panic!("unknown event type: {value}"))
    } else {
        name
    };
    let errors = super::openapi::validate(doc, name, value);
    assert!(errors.is_empty(), "{name} violations: {errors:#?}\nvalue: {value:#}");
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

#[cfg(test)]
mod responses_schema_tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_responses_validator_is_not_vacuous() {
        let doc = responses_document();
        let ok = json!({"id": "resp_1", "object": "response", "created_at": 1, "status": "completed",
            "error": null, "incomplete_details": null, "instructions": null, "model": "m", "tools": [],
            "output": [], "parallel_tool_calls": true, "metadata": {}, "tool_choice": "auto",
            "temperature": null, "top_p": null});
        assert!(super::super::openapi::validate(doc, "Response", &ok).is_empty());
        for (k, v) in [
            ("output", json!(null)),
            ("usage", json!(null)),
            ("status", json!("done")),
            ("parallel_tool_calls", json!(null)),
        ] {
            let mut bad = ok.clone();
            bad[k] = v;
            assert!(!super::super::openapi::validate(doc, "Response", &bad).is_empty(), "{k}");
        }
        let mut bad = ok.clone();
        bad.as_object_mut().unwrap().remove("tools");
        assert!(!super::super::openapi::validate(doc, "Response", &bad).is_empty());
        let mut bad = ok;
        bad["output"] = json!([{"type": "message", "id": "m", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "x"}]}]);
        assert!(!super::super::openapi::validate(doc, "Response", &bad).is_empty(), "annotations missing");
    }
}
