//! `POST /v1/responses` body -> Gemini `generateContent` body: the top level (model, stream,
//! store, instructions, input), sampling options -> `generationConfig`, `text.format`,
//! `reasoning`, and the request fields a `Response` echoes back. Input items are `items.rs`'s,
//! tools and `tool_choice` are `tools.rs`'s.
//!
//! Unknown fields (`prompt_cache_key`, `client_metadata`, `include`, `user`, `service_tier`, …)
//! are accepted and dropped: nothing reaches Google but what is built here. Fields whose meaning
//! the proxy cannot keep (`background`, `conversation`, `prompt`) are refused with a 400 naming
//! them. Never does I/O, takes a lock, reads the clock or draws randomness.

use serde_json::{Map, Value, json};

use super::items::{Source, convert_items};
use super::tools::{tool_choice, tools};
use crate::openai::TranslateError;
use crate::openai::fields::{Obj, bad, field, opt_bool, opt_number, opt_object, opt_str, opt_uint, req_str};
use crate::openai::request::{json_output, stop_sequences, thinking_config};
use crate::openai::types::{json_kind, strip_models_prefix};

/// A translated Responses request.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesCall {
    /// Gemini model id (the request's `model`, after the caller's alias), no `models/` prefix.
    pub model: String,
    pub stream: bool,
    /// Whether the answer is kept for `previous_response_id` and `GET` (`store` not false).
    pub store: bool,
    /// The Gemini `generateContent` body.
    pub body: Value,
    /// The request's fields as a `Response` echoes them (`instructions`, `tools`, `metadata`, …).
    pub echo: Map<String, Value>,
    /// The conversation so far as Responses items: the previous response's, then this input.
    pub items: Vec<Value>,
    /// Namespaces of `namespace` tools: a Gemini function `ns.name` is `name` in namespace `ns`.
    pub namespaces: Vec<String>,
}

/// The request's `previous_response_id`, type-checked (the caller looks it up before translating).
pub fn previous_response_id(req: &Value) -> Result<Option<&str>, TranslateError> {
    match req.as_object() {
        Some(obj) => opt_str(obj, "previous_response_id", "previous_response_id"),
        None => Ok(None),
    }
}

/// Translates a Responses request. `history` holds the items of the previous response (its input
/// and output), empty without `previous_response_id`.
pub fn responses_request_to_gemini(req: &Value, history: &[Value]) -> Result<ResponsesCall, TranslateError> {
    let Some(obj) = req.as_object() else {
        return Err(TranslateError::bad_request(
            format!("The request body must be a JSON object, but got {}.", json_kind(req)),
            None,
        ));
    };
    let model = strip_models_prefix(req_str(obj, "model", "model")?.trim()).to_owned();
    if model.is_empty() {
        return Err(bad("'model' must not be empty.", "model"));
    }
    for unsupported in ["background", "conversation", "prompt"] {
        let on = match field(obj, unsupported) {
            None | Some(Value::Bool(false)) => false,
            Some(_) => true,
        };
        if on {
            return Err(bad(
                format!("'{unsupported}' is not supported by this proxy: Gemini has no equivalent."),
                unsupported,
            ));
        }
    }
    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    let store = opt_bool(obj, "store", "store")?.unwrap_or(true);
    let previous = opt_str(obj, "previous_response_id", "previous_response_id")?;
    let parallel = opt_bool(obj, "parallel_tool_calls", "parallel_tool_calls")?.unwrap_or(true);
    if let Some(include) = field(obj, "include") {
        let list =
            include.as_array().ok_or_else(|| TranslateError::wrong_type("include", "an array", include))?;
        if let Some((k, v)) = list.iter().enumerate().find(|(_, v)| !v.is_string()) {
            return Err(TranslateError::wrong_type(&format!("include[{k}]"), "a string", v));
        }
    }

    // The input: a string is one user message; history comes first.
    let input: Vec<Value> = match field(obj, "input") {
        None => return Err(TranslateError::missing("input")),
        Some(Value::String(s)) => {
            vec![json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": s}]})]
        }
        Some(Value::Array(list)) => list.clone(),
        Some(v) => return Err(TranslateError::wrong_type("input", "a string or an array of items", v)),
    };
    if input.is_empty() && history.is_empty() {
        return Err(bad("'input' must contain at least one item.", "input"));
    }
    let instructions = match field(obj, "instructions") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(v) => return Err(TranslateError::wrong_type("instructions", "a string", v)),
    };

    let sources = history
        .iter()
        .map(|item| Source { param: "previous_response_id".into(), item })
        .chain(input.iter().enumerate().map(|(i, item)| Source { param: format!("input[{i}]"), item }));
    let super::tools::Tools { gemini: tool_list, namespaces, echo: echo_tools } = tools(obj)?;
    let converted = convert_items(sources, &namespaces, model.starts_with("gemini-3"))?;

    let mut system = Vec::new();
    if let Some(text) = instructions.filter(|t| !t.is_empty()) {
        system.push(json!({"text": text}));
    }
    system.extend(converted.system);
    let mut contents = converted.contents;
    let mut body = Obj::new();
    if contents.is_empty() {
        if system.is_empty() {
            return Err(bad("'input' must contain at least one item with content.", "input"));
        }
        // Only instructions: Gemini needs `contents`, so that text becomes the user turn.
        contents.push(json!({"role": "user", "parts": std::mem::take(&mut system)}));
    }
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));
    let gc = generation_config(obj, &model)?;
    if !gc.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gc));
    }
    let functions = tool_list.iter().any(|t| t.get("functionDeclarations").is_some());
    let choice = tool_choice(obj)?;
    if !tool_list.is_empty() {
        body.insert("tools".into(), Value::Array(tool_list));
    }
    if let (true, Some(config)) = (functions, choice) {
        body.insert("toolConfig".into(), config);
    }

    let mut items = history.to_vec();
    items.extend(input);
    let echo = echo(obj, instructions, echo_tools, previous, parallel);
    Ok(ResponsesCall { model, stream, store, body: Value::Object(body), echo, items, namespaces })
}

fn generation_config(obj: &Obj, model: &str) -> Result<Obj, TranslateError> {
    let mut gc = Obj::new();
    for (openai, gemini) in [("temperature", "temperature"), ("top_p", "topP")] {
        if let Some(v) = opt_number(obj, openai)? {
            gc.insert(gemini.into(), v);
        }
    }
    if let Some(n) = opt_uint(obj, "max_output_tokens", "max_output_tokens")? {
        gc.insert("maxOutputTokens".into(), n.into());
    }
    if let Some(stop) = stop_sequences(obj)? {
        gc.insert("stopSequences".into(), stop);
    }
    if let Some(text) = opt_object(obj, "text", "text")?
        && let Some(format) = opt_object(text, "format", "text.format")?
    {
        let kind = req_str(format, "type", "text.format.type")?;
        json_output(kind, field(format, "schema"), "text.format", "text.format.schema", &mut gc)?;
    }
    if let Some(reasoning) = opt_object(obj, "reasoning", "reasoning")? {
        let effort = opt_str(reasoning, "effort", "reasoning.effort")?;
        let summary = opt_str(reasoning, "summary", "reasoning.summary")?.or(opt_str(
            reasoning,
            "generate_summary",
            "reasoning.generate_summary",
        )?);
        if let Some(s) = summary.filter(|s| !matches!(*s, "auto" | "concise" | "detailed")) {
            return Err(bad(
                format!(
                    "Invalid value for 'reasoning.summary': '{s}'. Supported values are: 'auto', 'concise' and 'detailed'."
                ),
                "reasoning.summary",
            ));
        }
        match (effort, summary) {
            (Some(effort), _) => {
                gc.insert("thinkingConfig".into(), thinking_config(effort, model, "reasoning.effort")?);
            }
            // Summaries asked for without an effort: the model's own budget, thoughts shown.
            (None, Some(_)) => {
                gc.insert("thinkingConfig".into(), json!({"includeThoughts": true}));
            }
            (None, None) => {}
        }
    }
    Ok(gc)
}

/// The request's fields as the `Response` shows them (OpenAI's defaults where absent; never a
/// `null` where the schema allows none).
fn echo(
    obj: &Obj,
    instructions: Option<&str>,
    tools: Vec<Value>,
    previous: Option<&str>,
    parallel: bool,
) -> Map<String, Value> {
    let get = |k: &str| field(obj, k).cloned().unwrap_or(Value::Null);
    let reasoning = field(obj, "reasoning").and_then(Value::as_object);
    let reasoning_field = |k: &str| reasoning.and_then(|r| field(r, k)).cloned().unwrap_or(Value::Null);
    let format = field(obj, "text")
        .and_then(|t| t.get("format"))
        .filter(|f| f.is_object())
        .cloned()
        .unwrap_or_else(|| json!({"type": "text"}));
    let mut echo = Map::new();
    echo.insert("instructions".into(), instructions.map_or(Value::Null, |s| Value::String(s.into())));
    echo.insert(
        "metadata".into(),
        field(obj, "metadata").filter(|m| m.is_object()).cloned().unwrap_or(json!({})),
    );
    echo.insert("tools".into(), Value::Array(tools));
    echo.insert("tool_choice".into(), field(obj, "tool_choice").cloned().unwrap_or(json!("auto")));
    echo.insert("temperature".into(), get("temperature"));
    echo.insert("top_p".into(), get("top_p"));
    echo.insert("max_output_tokens".into(), get("max_output_tokens"));
    echo.insert("parallel_tool_calls".into(), Value::Bool(parallel));
    echo.insert("previous_response_id".into(), previous.map_or(Value::Null, |s| Value::String(s.into())));
    echo.insert(
        "reasoning".into(),
        json!({"effort": reasoning_field("effort"), "summary": reasoning_field("summary")}),
    );
    echo.insert("text".into(), json!({"format": format}));
    echo.insert("truncation".into(), json!("disabled"));
    echo.insert("background".into(), Value::Bool(false));
    for k in ["prompt_cache_key", "safety_identifier", "user"] {
        if let Some(v) = field(obj, k).filter(|v| v.is_string()) {
            echo.insert(k.into(), v.clone());
        }
    }
    echo
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    pub(crate) fn ok(req: Value) -> ResponsesCall {
        responses_request_to_gemini(&req, &[]).unwrap_or_else(|e| panic!("unexpected error: {e}"))
    }

    #[track_caller]
    fn err(req: Value, param: Option<&str>) -> TranslateError {
        let e = responses_request_to_gemini(&req, &[]).expect_err("expected a 400");
        assert_eq!(e.status, 400, "{e}");
        assert_eq!(e.param.as_deref(), param, "{e}");
        e
    }

    #[test]
    fn a_string_input_with_instructions() {
        let call = ok(json!({"model": "gemini-2.5-flash", "input": "Hi", "instructions": "Be brief."}));
        assert_eq!(
            call.body,
            json!({"systemInstruction": {"parts": [{"text": "Be brief."}]},
                   "contents": [{"role": "user", "parts": [{"text": "Hi"}]}]})
        );
        assert!(!call.stream && call.store);
        assert_eq!(call.echo["instructions"], "Be brief.");
        assert_eq!(call.items.len(), 1);
    }

    #[test]
    fn unknown_fields_are_dropped_and_sampling_options_mapped() {
        let call =
            ok(json!({"model": "models/gemini-2.5-flash", "input": "x", "stream": true, "store": false,
            "temperature": 0.5, "top_p": 0.9, "max_output_tokens": 100, "stop": ["END"],
            "prompt_cache_key": "k", "client_metadata": {"a": 1}, "include": ["reasoning.encrypted_content"],
            "metadata": {"m": "v"}, "service_tier": "auto", "truncation": "auto", "top_logprobs": 2,
            "user": "u", "safety_identifier": "s", "parallel_tool_calls": false, "max_tool_calls": 3}));
        assert_eq!(call.model, "gemini-2.5-flash");
        assert!(call.stream && !call.store);
        assert_eq!(
            call.body["generationConfig"],
            json!({"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 100, "stopSequences": ["END"]})
        );
        let keys: Vec<&String> = call.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["contents", "generationConfig"]);
        assert_eq!(call.echo["metadata"], json!({"m": "v"}));
        assert_eq!(call.echo["parallel_tool_calls"], false);
        assert_eq!(call.echo["prompt_cache_key"], "k");
    }

    #[test]
    fn text_format_and_reasoning() {
        let call = ok(
            json!({"model": "gemini-2.5-flash", "input": "x", "text": {"format": {"type": "json_schema",
            "name": "r", "strict": true, "schema": {"type": "object", "properties": {"n": {"type": "integer"}},
            "required": ["n"], "additionalProperties": false}}}, "reasoning": {"effort": "low", "summary": "auto"}}),
        );
        assert_eq!(
            call.body["generationConfig"],
            json!({"responseMimeType": "application/json",
                   "responseSchema": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]},
                   "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": true}})
        );
        assert_eq!(call.echo["reasoning"], json!({"effort": "low", "summary": "auto"}));
        assert_eq!(call.echo["text"]["format"]["name"], "r");
        let call = ok(
            json!({"model": "gemini-2.5-flash", "input": "x", "text": {"format": {"type": "json_object"}}}),
        );
        assert_eq!(call.body["generationConfig"], json!({"responseMimeType": "application/json"}));
        // What Codex sends: a summary without an effort.
        let call =
            ok(json!({"model": "gemini-3-pro-preview", "input": "x", "reasoning": {"summary": "auto"}}));
        assert_eq!(call.body["generationConfig"], json!({"thinkingConfig": {"includeThoughts": true}}));
        err(json!({"model": "m", "input": "x", "reasoning": {"effort": "max"}}), Some("reasoning.effort"));
        err(json!({"model": "m", "input": "x", "reasoning": {"summary": "long"}}), Some("reasoning.summary"));
        err(
            json!({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}),
            Some("text.format.type"),
        );
        err(
            json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": 3}}}),
            Some("text.format.schema"),
        );
    }

    #[test]
    fn malformed_top_level_fields_name_the_field() {
        err(json!([1]), None);
        err(json!({"input": "x"}), Some("model"));
        err(json!({"model": "", "input": "x"}), Some("model"));
        err(json!({"model": "m"}), Some("input"));
        err(json!({"model": "m", "input": []}), Some("input"));
        err(json!({"model": "m", "input": 5}), Some("input"));
        err(json!({"model": "m", "input": "x", "stream": "yes"}), Some("stream"));
        err(json!({"model": "m", "input": "x", "store": 1}), Some("store"));
        err(json!({"model": "m", "input": "x", "instructions": 1}), Some("instructions"));
        err(json!({"model": "m", "input": "x", "temperature": "hot"}), Some("temperature"));
        err(json!({"model": "m", "input": "x", "max_output_tokens": -1}), Some("max_output_tokens"));
        err(json!({"model": "m", "input": "x", "include": [1]}), Some("include[0]"));
        err(json!({"model": "m", "input": "x", "background": true}), Some("background"));
        err(json!({"model": "m", "input": "x", "conversation": "conv_1"}), Some("conversation"));
        err(json!({"model": "m", "input": "x", "previous_response_id": 5}), Some("previous_response_id"));
        ok(json!({"model": "m", "input": "x", "background": false}));
    }
}
