//! Anthropic `POST /v1/messages` request body -> Gemini `generateContent` request body.
//!
//! Owns: the top level (model, stream, `max_tokens` and its clamp to the model's output limit),
//! sampling options -> `generationConfig`, and `thinking` -> `thinkingConfig`. Messages and system
//! are `content.rs`'s, tools and `tool_choice` are `tools.rs`'s.
//!
//! Only the fields below are read; everything else a client sends (`metadata`, `cache_control`,
//! `context_management`, `output_config`, `container`, `mcp_servers`, `service_tier`, ...) is
//! accepted and dropped, never forwarded: Google refuses unknown fields.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness. Every refusal is a
//! `TranslateError` (400) naming the offending field.

use serde_json::{Value, json};

use super::content::{contents, system_parts};
use super::tools::{gemini_tools, tool_config};
use super::types::MessagesCall;
use crate::openai::TranslateError;
use crate::openai::fields::{
    Obj, bad, field, opt_array, opt_bool, opt_number, opt_object, opt_str, opt_uint, req_str,
};
use crate::openai::types::{json_kind, strip_models_prefix};

/// Translates an Anthropic Messages request; model-dependent choices (thinking, Gemini 3's
/// signature placeholder) follow the model the client named. `output_limit` is the model's
/// `outputTokenLimit`, when known: `max_tokens` above it is clamped to it.
pub fn messages_request_to_gemini(
    req: &Value,
    output_limit: Option<u64>,
) -> Result<MessagesCall, TranslateError> {
    translate(req, output_limit, None)
}

/// Like [`messages_request_to_gemini`], with model-dependent choices made for `gemini_model`, the
/// model that will answer upstream (after alias resolution).
pub fn messages_request_to_gemini_for_model(
    req: &Value,
    output_limit: Option<u64>,
    gemini_model: &str,
) -> Result<MessagesCall, TranslateError> {
    translate(req, output_limit, Some(gemini_model))
}

fn translate(
    req: &Value,
    output_limit: Option<u64>,
    gemini_model: Option<&str>,
) -> Result<MessagesCall, TranslateError> {
    let obj = body_object(req)?;
    let model = parse_model(obj)?;
    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    let max_tokens =
        opt_uint(obj, "max_tokens", "max_tokens")?.ok_or_else(|| TranslateError::missing("max_tokens"))?;
    if max_tokens == 0 {
        return Err(bad("'max_tokens' must be at least 1.", "max_tokens"));
    }
    let max_tokens =
        output_limit.filter(|limit| *limit > 0).map_or(max_tokens, |limit| max_tokens.min(limit));
    let upstream = strip_models_prefix(gemini_model.unwrap_or(&model)).to_owned();

    let mut body = prompt(obj, &upstream)?;
    let mut gc = Obj::new();
    gc.insert("maxOutputTokens".into(), max_tokens.into());
    for (anthropic, gemini) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = opt_number(obj, anthropic)? {
            gc.insert(gemini.into(), v);
        }
    }
    if let Some(k) = opt_uint(obj, "top_k", "top_k")? {
        gc.insert("topK".into(), k.into());
    }
    let stops = opt_array(obj, "stop_sequences", "stop_sequences")?;
    for (k, s) in stops.iter().enumerate() {
        if !s.is_string() {
            return Err(TranslateError::wrong_type(&format!("stop_sequences[{k}]"), "a string", s));
        }
    }
    if !stops.is_empty() {
        gc.insert("stopSequences".into(), Value::Array(stops.to_vec()));
    }
    if let Some(thinking) = opt_object(obj, "thinking", "thinking")?
        && let Some(config) = thinking_config(thinking, &upstream)?
    {
        gc.insert("thinkingConfig".into(), config);
    }
    body.insert("generationConfig".into(), Value::Object(gc));
    // `metadata` is type-checked and dropped (Gemini has nowhere to put `user_id`).
    opt_object(obj, "metadata", "metadata")?;
    Ok(MessagesCall { model, stream, body: Value::Object(body), max_tokens })
}

pub(super) fn body_object(req: &Value) -> Result<&Obj, TranslateError> {
    req.as_object().ok_or_else(|| {
        TranslateError::bad_request(
            format!("The request body must be a JSON object, but got {}.", json_kind(req)),
            None,
        )
    })
}

/// The model as the client named it.
pub(super) fn parse_model(obj: &Obj) -> Result<String, TranslateError> {
    let model = req_str(obj, "model", "model")?;
    if strip_models_prefix(model.trim()).is_empty() {
        return Err(bad("'model' must not be empty.", "model"));
    }
    Ok(model.to_owned())
}

/// `contents`, `systemInstruction`, `tools` and `toolConfig`: what generateContent and
/// countTokens share.
pub(super) fn prompt(obj: &Obj, gemini_model: &str) -> Result<Obj, TranslateError> {
    let messages = crate::openai::fields::req_nonempty_array(obj, "messages")?;
    let system = system_parts(field(obj, "system"))?;
    let contents = contents(messages, gemini_model.starts_with("gemini-3"))?;
    if contents.is_empty() {
        return Err(bad("'messages' must contain at least one message with non-empty content.", "messages"));
    }
    let mut body = Obj::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let (tools, has_functions) = gemini_tools(obj)?;
    let config = tool_config(obj, has_functions)?;
    if let Some(tools) = tools {
        body.insert("tools".into(), tools);
    }
    if let Some(config) = config {
        body.insert("toolConfig".into(), config);
    }
    Ok(body)
}

/// `thinking` -> `thinkingConfig` (`None`: leave the model's default).
/// - `enabled` + `budget_tokens` N: `thinkingBudget` N (clamped into the range of Gemini 2.5
///   Flash, Flash-Lite and Pro), with thought summaries (`includeThoughts`).
/// - `adaptive`: a dynamic budget (`-1`; Gemini 3 models are dynamic by default and get no budget).
/// - `disabled`: budget 0, or the least the model allows (128 on 2.5 Pro; on Gemini 3, which
///   cannot stop thinking, `thinkingLevel` minimal, low on Pro).
///
/// `display: "omitted"` leaves thought summaries out (the signatures still come back).
fn thinking_config(thinking: &Obj, model: &str) -> Result<Option<Value>, TranslateError> {
    let gemini3 = model.starts_with("gemini-3");
    let pro = model.contains("-pro");
    let display = opt_str(thinking, "display", "thinking.display")?;
    let include_thoughts = display != Some("omitted");
    let mut config = match req_str(thinking, "type", "thinking.type")? {
        "enabled" => {
            let budget = opt_uint(thinking, "budget_tokens", "thinking.budget_tokens")?
                .ok_or_else(|| TranslateError::missing("thinking.budget_tokens"))?;
            json!({ "thinkingBudget": clamp_budget(budget, model) })
        }
        "adaptive" if gemini3 => json!({}),
        "adaptive" => json!({ "thinkingBudget": -1 }),
        "disabled" if gemini3 => {
            return Ok(Some(json!({ "thinkingLevel": if pro { "low" } else { "minimal" } })));
        }
        "disabled" => return Ok(Some(json!({ "thinkingBudget": if pro { 128 } else { 0 } }))),
        other => {
            return Err(bad(
                format!(
                    "Invalid value for 'thinking.type': '{other}'. Supported values are: 'enabled', 'adaptive' and 'disabled'."
                ),
                "thinking.type",
            ));
        }
    };
    if include_thoughts {
        config["includeThoughts"] = Value::Bool(true);
    }
    Ok(config.as_object().is_some_and(|o| !o.is_empty()).then_some(config))
}

/// A thinking budget within what Gemini 2.5 models accept (Pro 128–32768, Flash 0–24576,
/// Flash-Lite 512–24576); other models get it as asked.
fn clamp_budget(budget: u64, model: &str) -> u64 {
    if model.starts_with("gemini-3") {
        budget
    } else if model.contains("flash-lite") {
        budget.clamp(512, 24_576)
    } else if model.contains("flash") {
        budget.min(24_576)
    } else if model.contains("-pro") {
        budget.clamp(128, 32_768)
    } else {
        budget
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(super) mod tests {
    use super::*;

    /// A minimal valid request with `extra` merged in.
    pub(crate) fn req(extra: Value) -> Value {
        let mut r = json!({"model": "gemini-2.5-flash", "max_tokens": 1024,
                           "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            r[k] = v;
        }
        r
    }

    #[track_caller]
    pub(crate) fn ok(req: Value) -> MessagesCall {
        messages_request_to_gemini(&req, None).unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    #[track_caller]
    pub(crate) fn err(req: Value, param: &str) -> TranslateError {
        let e = messages_request_to_gemini(&req, None).expect_err("expected a 400");
        assert_eq!(e.status, 400, "{e}");
        assert_eq!(e.param.as_deref(), Some(param), "{e}");
        e
    }

    #[test]
    fn minimal_request() {
        let call = ok(req(json!({})));
        assert_eq!(call.model, "gemini-2.5-flash");
        assert!(!call.stream);
        assert_eq!(call.max_tokens, 1024);
        assert_eq!(
            call.body,
            json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                   "generationConfig": {"maxOutputTokens": 1024}})
        );
        assert!(ok(req(json!({"stream": true}))).stream);
    }

    #[test]
    fn sampling_options() {
        let call = ok(req(
            json!({"temperature": 0.2, "top_p": 0.9, "top_k": 40, "stop_sequences": ["END", "\n\nHuman:"],
            "metadata": {"user_id": "u-1"}}),
        ));
        assert_eq!(
            call.body["generationConfig"],
            json!({"maxOutputTokens": 1024, "temperature": 0.2, "topP": 0.9, "topK": 40, "stopSequences": ["END", "\n\nHuman:"]})
        );
        assert!(call.body.get("metadata").is_none());
        assert!(
            ok(req(json!({"stop_sequences": []}))).body["generationConfig"].get("stopSequences").is_none()
        );
    }

    #[test]
    fn max_tokens_is_required_and_clamped() {
        let mut r = req(json!({}));
        r.as_object_mut().unwrap().remove("max_tokens");
        let e = err(r, "max_tokens");
        assert!(e.message.contains("max_tokens"), "{}", e.message);
        err(req(json!({"max_tokens": 0})), "max_tokens");
        err(req(json!({"max_tokens": -5})), "max_tokens");
        err(req(json!({"max_tokens": "many"})), "max_tokens");
        let call = messages_request_to_gemini(&req(json!({"max_tokens": 128_000})), Some(65_536)).unwrap();
        assert_eq!(call.max_tokens, 65_536);
        assert_eq!(call.body["generationConfig"]["maxOutputTokens"], 65_536);
        let call = messages_request_to_gemini(&req(json!({"max_tokens": 4096})), Some(65_536)).unwrap();
        assert_eq!(call.max_tokens, 4096);
        let call = messages_request_to_gemini(&req(json!({"max_tokens": 128_000})), None).unwrap();
        assert_eq!(call.max_tokens, 128_000);
    }

    #[test]
    fn thinking_mapping() {
        let tc = |model: &str, thinking: Value| {
            ok(req(json!({"model": model, "thinking": thinking}))).body["generationConfig"]
                .get("thinkingConfig")
                .cloned()
        };
        let some = |v: Value| Some(v);
        assert_eq!(
            tc("gemini-2.5-flash", json!({"type": "enabled", "budget_tokens": 10_000})),
            some(json!({"thinkingBudget": 10_000, "includeThoughts": true}))
        );
        assert_eq!(
            tc("gemini-2.5-flash", json!({"type": "enabled", "budget_tokens": 31_999})),
            some(json!({"thinkingBudget": 24_576, "includeThoughts": true}))
        );
        assert_eq!(
            tc("gemini-2.5-pro", json!({"type": "enabled", "budget_tokens": 64_000, "display": "omitted"})),
            some(json!({"thinkingBudget": 32_768}))
        );
        assert_eq!(
            tc("gemini-3-pro-preview", json!({"type": "enabled", "budget_tokens": 50_000})),
            some(json!({"thinkingBudget": 50_000, "includeThoughts": true}))
        );
        assert_eq!(
            tc("gemini-2.5-flash", json!({"type": "adaptive"})),
            some(json!({"thinkingBudget": -1, "includeThoughts": true}))
        );
        assert_eq!(
            tc("gemini-2.5-flash", json!({"type": "adaptive", "display": "omitted"})),
            some(json!({"thinkingBudget": -1}))
        );
        assert_eq!(
            tc("gemini-3-flash-preview", json!({"type": "adaptive"})),
            some(json!({"includeThoughts": true}))
        );
        assert_eq!(tc("gemini-3-flash-preview", json!({"type": "adaptive", "display": "omitted"})), None);
        assert_eq!(tc("gemini-2.5-flash", json!({"type": "disabled"})), some(json!({"thinkingBudget": 0})));
        assert_eq!(tc("gemini-2.5-pro", json!({"type": "disabled"})), some(json!({"thinkingBudget": 128})));
        assert_eq!(
            tc("gemini-3-flash-preview", json!({"type": "disabled"})),
            some(json!({"thinkingLevel": "minimal"}))
        );
        assert_eq!(
            tc("gemini-3-pro-preview", json!({"type": "disabled"})),
            some(json!({"thinkingLevel": "low"}))
        );
        assert_eq!(tc("gemini-2.5-flash", Value::Null), None);
        err(req(json!({"thinking": {"type": "enabled"}})), "thinking.budget_tokens");
        err(req(json!({"thinking": {"type": "turbo"}})), "thinking.type");
        err(req(json!({"thinking": "on"})), "thinking");
    }

    #[test]
    fn aliased_models_decide_by_the_upstream_model() {
        let r = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "thinking": {"type": "disabled"},
                       "messages": [{"role": "user", "content": "x"}]});
        let call = messages_request_to_gemini_for_model(&r, None, "models/gemini-2.5-pro").unwrap();
        assert_eq!(call.model, "claude-sonnet-4-5");
        assert_eq!(call.body["generationConfig"]["thinkingConfig"], json!({"thinkingBudget": 128}));
    }

    #[test]
    fn malformed_top_level_fields() {
        for bad_body in [json!([1]), json!("x"), json!(null)] {
            let e = messages_request_to_gemini(&bad_body, None).unwrap_err();
            assert_eq!((e.status, e.param), (400, None));
        }
        let mut r = req(json!({}));
        r.as_object_mut().unwrap().remove("model");
        err(r, "model");
        err(req(json!({"model": ""})), "model");
        err(req(json!({"model": 7})), "model");
        err(req(json!({"messages": []})), "messages");
        err(req(json!({"messages": "hi"})), "messages");
        err(req(json!({"messages": null})), "messages");
        err(req(json!({"messages": [{"role": "user", "content": ""}]})), "messages");
        err(req(json!({"stream": "yes"})), "stream");
        err(req(json!({"temperature": "hot"})), "temperature");
        err(req(json!({"top_k": 1.5})), "top_k");
        err(req(json!({"stop_sequences": "END"})), "stop_sequences");
        err(req(json!({"stop_sequences": ["a", 1]})), "stop_sequences[1]");
        err(req(json!({"metadata": "u"})), "metadata");
        err(req(json!({"system": 5})), "system");
        err(req(json!({"system": [{"type": "text"}]})), "system[0].text");
    }
}
