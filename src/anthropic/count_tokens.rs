//! Anthropic `POST /v1/messages/count_tokens` -> Gemini `countTokens`, and its answer back.
//!
//! The request is translated like a Messages request (same refusals, same dropped fields;
//! `max_tokens` is not needed) and wrapped as `{"generateContentRequest": {"model": "models/M",
//! contents, systemInstruction, tools}}`, so the system prompt and tools are counted too.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness.

use serde_json::{Value, json};

use super::request::{body_object, parse_model, prompt};
use crate::openai::TranslateError;
use crate::openai::fields::Obj;
use crate::openai::types::strip_models_prefix;

/// (the model as the client named it, the `countTokens` body naming that model).
pub fn count_tokens_request_to_gemini(req: &Value) -> Result<(String, Value), TranslateError> {
    translate(req, None)
}

/// Like [`count_tokens_request_to_gemini`], with the body naming `gemini_model` (after alias
/// resolution) and model-dependent choices made for it.
pub fn count_tokens_request_to_gemini_for_model(
    req: &Value,
    gemini_model: &str,
) -> Result<(String, Value), TranslateError> {
    translate(req, Some(gemini_model))
}

fn translate(req: &Value, gemini_model: Option<&str>) -> Result<(String, Value), TranslateError> {
    let obj = body_object(req)?;
    let model = parse_model(obj)?;
    let upstream = strip_models_prefix(gemini_model.unwrap_or(&model).trim()).to_owned();
    let prompt = prompt(obj, &upstream)?;
    let mut inner = Obj::new();
    inner.insert("model".into(), Value::String(format!("models/{upstream}")));
    for key in ["contents", "systemInstruction", "tools"] {
        if let Some(v) = prompt.get(key) {
            inner.insert(key.into(), v.clone());
        }
    }
    Ok((model, json!({ "generateContentRequest": inner })))
}

/// Gemini `CountTokensResponse` -> `{"input_tokens": totalTokens}`.
pub fn count_tokens_response(resp: &Value) -> Value {
    json!({ "input_tokens": resp.get("totalTokens").and_then(Value::as_u64).unwrap_or(0) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn count_tokens_wraps_the_prompt() {
        let req = json!({"model": "gemini-2.5-flash", "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "Hi"}], "thinking": {"type": "adaptive"},
            "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}}],
            "tool_choice": {"type": "auto"}});
        let (model, body) = count_tokens_request_to_gemini(&req).unwrap();
        assert_eq!(model, "gemini-2.5-flash");
        assert_eq!(
            body,
            json!({"generateContentRequest": {
                "model": "models/gemini-2.5-flash",
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}}}]}]
            }})
        );
        let (model, body) = count_tokens_request_to_gemini_for_model(
            &json!({"model": "claude-opus-4", "messages": [{"role": "user", "content": "x"}]}),
            "gemini-2.5-pro",
        )
        .unwrap();
        assert_eq!(model, "claude-opus-4");
        assert_eq!(body["generateContentRequest"]["model"], "models/gemini-2.5-pro");
        let (_, body) = count_tokens_request_to_gemini(
            &json!({"model": "models/gemini-2.5-pro", "messages": [{"role": "user", "content": "x"}]}),
        )
        .unwrap();
        assert_eq!(body["generateContentRequest"]["model"], "models/gemini-2.5-pro");
    }

    #[test]
    fn count_tokens_refusals_and_response() {
        let e = count_tokens_request_to_gemini(&json!({"model": "m"})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = count_tokens_request_to_gemini(&json!({"messages": [{"role": "user", "content": "x"}]}))
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        assert_eq!(
            count_tokens_response(&json!({"totalTokens": 31, "promptTokensDetails": []})),
            json!({"input_tokens": 31})
        );
        assert_eq!(count_tokens_response(&json!({})), json!({"input_tokens": 0}));
    }
}
