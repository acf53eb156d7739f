//! OpenAI `POST /v1/chat/completions` request body -> Gemini `generateContent` request body.
//!
//! Owns: the top level of the request (model, stream options, messages), message/role mapping
//! (system + developer -> `systemInstruction`, assistant -> `model`, consecutive same-role turns
//! merged), tool-call history (thought signatures recovered from `extra_content` or the tool-call
//! id) and tool results, sampling options -> `generationConfig`, `response_format` and
//! `reasoning_effort`. Content parts are `content.rs`'s, tools and `tool_choice` are `tools.rs`'s.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness, and never fetches a URL.
//! Every refusal is a `TranslateError` (400) naming the offending field. Walks the request
//! iteratively; the only recursion over client data is the depth-limited schema cleaner.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::content::{text_content, user_parts};
use super::fields::{Obj, bad, field, opt_bool, opt_number, opt_object, opt_str, opt_uint, req_str};
use super::response::signature_from_tool_call_id;
use super::schema::clean_schema;
use super::tools::{function_declarations, tool_config};
use super::types::{ChatCall, TranslateError, strip_models_prefix};

/// Google's documented placeholder signature for function calls Gemini 3 did not produce itself
/// (history from another model, or a client that dropped the signature).
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// Translates an OpenAI chat request.
pub fn chat_request_to_gemini(req: &Value) -> Result<ChatCall, TranslateError> {
    let Some(obj) = req.as_object() else {
        return Err(TranslateError::bad_request(
            format!("The request body must be a JSON object, but got {}.", super::types::json_kind(req)),
            None,
        ));
    };
    let model = parse_model(obj)?;
    let stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    let include_usage = match opt_object(obj, "stream_options", "stream_options")? {
        Some(so) => opt_bool(so, "include_usage", "stream_options.include_usage")?.unwrap_or(false),
        None => false,
    };
    let messages = crate::openai::fields::req_nonempty_array(obj, "messages")?;

    let gemini3 = model.starts_with("gemini-3");
    let (system_parts, mut contents) = convert_messages(messages, gemini3)?;

    let mut body = Obj::new();
    if contents.is_empty() {
        if system_parts.is_empty() {
            return Err(bad(
                "'messages' must contain at least one message with non-empty content.",
                "messages",
            ));
        }
        // Only system/developer text: Gemini needs `contents`, so that text becomes the user turn.
        contents.push(json!({"role": "user", "parts": system_parts}));
    } else if !system_parts.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system_parts }));
    }
    body.insert("contents".into(), Value::Array(contents));

    let generation_config = generation_config(obj, &model)?;
    if !generation_config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation_config));
    }
    if let Some(declarations) = function_declarations(obj)? {
        body.insert("tools".into(), json!([{ "functionDeclarations": declarations }]));
        if let Some(config) = tool_config(obj)? {
            body.insert("toolConfig".into(), config);
        }
    } else {
        // Still type-check tool_choice, even though without tools it has nothing to steer.
        tool_config(obj)?;
    }
    Ok(ChatCall { model, stream, include_usage, body: Value::Object(body) })
}

fn parse_model(obj: &Obj) -> Result<String, TranslateError> {
    let model = strip_models_prefix(req_str(obj, "model", "model")?.trim());
    if model.is_empty() {
        return Err(bad("'model' must not be empty.", "model"));
    }
    Ok(model.to_owned())
}

/// Appends `parts` to the last turn when it has the same role, else starts a new turn.
pub(crate) fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, existing)) if *last == role => existing.extend(parts),
        _ => turns.push((role, parts)),
    }
}

/// (systemInstruction parts, contents)
fn convert_messages(messages: &[Value], gemini3: bool) -> Result<(Vec<Value>, Vec<Value>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // tool_call_id -> function name, from the assistant turns seen so far.
    let mut call_names: HashMap<String, String> = HashMap::new();

    for (i, message) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let Some(m) = message.as_object() else {
            return Err(TranslateError::wrong_type(&p, "an object", message));
        };
        let role_param = format!("{p}.role");
        let role = req_str(m, "role", &role_param)?;
        match role {
            "system" | "developer" => {
                let text = text_content(field(m, "content"), &p, true)?;
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
            }
            "user" => {
                let parts = user_parts(field(m, "content"), &p)?;
                push_turn(&mut turns, "user", parts);
            }
            "assistant" => {
                let parts = assistant_parts(m, &p, gemini3, &mut call_names)?;
                push_turn(&mut turns, "model", parts);
            }
            "tool" => {
                let id_param = format!("{p}.tool_call_id");
                let id = req_str(m, "tool_call_id", &id_param)?;
                let name = match (call_names.get(id), opt_str(m, "name", &format!("{p}.name"))?) {
                    (Some(name), _) => name.clone(),
                    (None, Some(name)) if !name.is_empty() => name.to_owned(),
                    _ => {
                        return Err(bad(
                            format!(
                                "'{id_param}' ('{id}') does not match the id of any tool call in an earlier assistant message."
                            ),
                            &id_param,
                        ));
                    }
                };
                let content = text_content(field(m, "content"), &p, false)?;
                push_turn(&mut turns, "user", vec![function_response(&name, &content)]);
            }
            "function" => {
                // Deprecated OpenAI function-calling history: the name travels on the message.
                let name = req_str(m, "name", &format!("{p}.name"))?;
                let content = text_content(field(m, "content"), &p, false)?;
                push_turn(&mut turns, "user", vec![function_response(name, &content)]);
            }
            other => {
                return Err(bad(
                    format!(
                        "Invalid value for '{role_param}': '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant', 'tool' and 'function'."
                    ),
                    &role_param,
                ));
            }
        }
    }
    let contents = turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    Ok((system, contents))
}

/// `{"functionResponse":{"name","response"}}`: the content parsed when it is a JSON object,
/// else `{"result": content}`.
pub(crate) fn function_response(name: &str, content: &str) -> Value {
    let response = match serde_json::from_str::<Value>(content) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ "result": content }),
    };
    json!({"functionResponse": {"name": name, "response": response}})
}

/// An assistant message -> `model` parts: its text, then one `functionCall` per tool call.
fn assistant_parts(
    m: &Obj,
    p: &str,
    gemini3: bool,
    call_names: &mut HashMap<String, String>,
) -> Result<Vec<Value>, TranslateError> {
    let mut parts = Vec::new();
    let text = text_content(field(m, "content"), p, true)?;
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }

    let calls_param = format!("{p}.tool_calls");
    let calls = match field(m, "tool_calls") {
        None => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(v) => return Err(TranslateError::wrong_type(&calls_param, "an array", v)),
    };
    let first_call = parts.len();
    let mut any_signature = false;
    for (k, call) in calls.iter().enumerate() {
        let cp = format!("{calls_param}[{k}]");
        let Some(co) = call.as_object() else {
            return Err(TranslateError::wrong_type(&cp, "an object", call));
        };
        let id = req_str(co, "id", &format!("{cp}.id"))?;
        if let Some(kind) = opt_str(co, "type", &format!("{cp}.type"))?.filter(|k| *k != "function") {
            return Err(bad(
                format!("Tool call type '{kind}' is not supported: only 'function'."),
                &format!("{cp}.type"),
            ));
        }
        let fp = format!("{cp}.function");
        let function = opt_object(co, "function", &fp)?.ok_or_else(|| TranslateError::missing(&fp))?;
        let name = req_str(function, "name", &format!("{fp}.name"))?;
        let args = parse_arguments(field(function, "arguments"), &format!("{fp}.arguments"))?;

        let from_extra = co
            .get("extra_content")
            .and_then(|e| e.pointer("/google/thought_signature"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let signature = from_extra.or_else(|| signature_from_tool_call_id(id));

        let mut part = json!({"functionCall": {"name": name, "args": args}});
        if let Some(sig) = signature {
            any_signature = true;
            part["thoughtSignature"] = Value::String(sig);
        }
        parts.push(part);
        call_names.insert(id.to_owned(), name.to_owned());
    }

    // Deprecated single `function_call`.
    if let Some(fc) = opt_object(m, "function_call", &format!("{p}.function_call"))? {
        let fp = format!("{p}.function_call");
        let name = req_str(fc, "name", &format!("{fp}.name"))?;
        let args = parse_arguments(field(fc, "arguments"), &format!("{fp}.arguments"))?;
        parts.push(json!({"functionCall": {"name": name, "args": args}}));
    }

    // Gemini 3 rejects a step whose first function call carries no signature.
    let unsigned_first_call =
        parts.get_mut(first_call).and_then(Value::as_object_mut).filter(|_| gemini3 && !any_signature);
    if let Some(first) = unsigned_first_call {
        first.insert("thoughtSignature".into(), Value::String(SKIP_THOUGHT_SIGNATURE.into()));
    }
    Ok(parts)
}

/// Tool-call arguments: a JSON string holding an object (an empty string means `{}`); an object
/// is accepted as is.
pub(crate) fn parse_arguments(args: Option<&Value>, param: &str) -> Result<Value, TranslateError> {
    match args {
        None => Ok(json!({})),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(json!({})),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(other) => Err(bad(
                format!(
                    "'{param}' must encode a JSON object, but it encodes {}.",
                    super::types::json_kind(&other)
                ),
                param,
            )),
            Err(e) => Err(bad(format!("'{param}' is not valid JSON: {e}."), param)),
        },
        Some(v) => Err(TranslateError::wrong_type(param, "a string", v)),
    }
}

fn generation_config(obj: &Obj, model: &str) -> Result<Obj, TranslateError> {
    let mut gc = Obj::new();
    for (openai, gemini) in [
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ] {
        if let Some(v) = opt_number(obj, openai)? {
            gc.insert(gemini.into(), v);
        }
    }
    let max_tokens = opt_uint(obj, "max_tokens", "max_tokens")?;
    if let Some(n) = opt_uint(obj, "max_completion_tokens", "max_completion_tokens")?.or(max_tokens) {
        gc.insert("maxOutputTokens".into(), n.into());
    }
    if let Some(n) = opt_uint(obj, "n", "n")? {
        if n == 0 {
            return Err(bad("'n' must be at least 1.", "n"));
        }
        gc.insert("candidateCount".into(), n.into());
    }
    if let Some(seed) = field(obj, "seed") {
        let seed = seed.as_i64().ok_or_else(|| TranslateError::wrong_type("seed", "an integer", seed))?;
        gc.insert("seed".into(), seed.into());
    }
    if let Some(stop) = stop_sequences(obj)? {
        gc.insert("stopSequences".into(), stop);
    }
    response_format(obj, &mut gc)?;
    if let Some(effort) = opt_str(obj, "reasoning_effort", "reasoning_effort")? {
        gc.insert("thinkingConfig".into(), thinking_config(effort, model, "reasoning_effort")?);
    }
    Ok(gc)
}

/// `stop` (a string or an array of strings) -> Gemini `stopSequences`; `None` when absent or empty.
pub(crate) fn stop_sequences(obj: &Obj) -> Result<Option<Value>, TranslateError> {
    match field(obj, "stop") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(json!([s]))),
        Some(Value::Array(list)) => {
            for (k, s) in list.iter().enumerate() {
                if !s.is_string() {
                    return Err(TranslateError::wrong_type(&format!("stop[{k}]"), "a string", s));
                }
            }
            Ok((!list.is_empty()).then(|| Value::Array(list.clone())))
        }
        Some(v) => Err(TranslateError::wrong_type("stop", "a string or an array of strings", v)),
    }
}

fn response_format(obj: &Obj, gc: &mut Obj) -> Result<(), TranslateError> {
    let Some(rf) = opt_object(obj, "response_format", "response_format")? else {
        return Ok(());
    };
    let kind = req_str(rf, "type", "response_format.type")?;
    let schema = if kind == "json_schema" {
        let js = opt_object(rf, "json_schema", "response_format.json_schema")?
            .ok_or_else(|| TranslateError::missing("response_format.json_schema"))?;
        field(js, "schema")
    } else {
        None
    };
    json_output(kind, schema, "response_format", "response_format.json_schema.schema", gc)
}

/// An output format (`text`, `json_object`, `json_schema` with its `schema`) -> Gemini
/// `responseMimeType` and `responseSchema`; `param` names the format object in errors. Shared
/// with the Responses core (`text.format`).
pub(crate) fn json_output(
    kind: &str,
    schema: Option<&Value>,
    param: &str,
    schema_param: &str,
    gc: &mut Obj,
) -> Result<(), TranslateError> {
    match kind {
        "text" => {}
        "json_object" => {
            gc.insert("responseMimeType".into(), "application/json".into());
        }
        "json_schema" => {
            gc.insert("responseMimeType".into(), "application/json".into());
            match schema {
                None => {}
                Some(schema @ Value::Object(_)) => {
                    gc.insert("responseSchema".into(), clean_schema(schema, schema_param)?);
                }
                Some(v) => return Err(TranslateError::wrong_type(schema_param, "an object", v)),
            }
        }
        other => {
            return Err(bad(
                format!(
                    "Invalid value for '{param}.type': '{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."
                ),
                &format!("{param}.type"),
            ));
        }
    }
    Ok(())
}

/// `reasoning_effort` -> `thinkingConfig`, after Google's own OpenAI-compatibility mapping:
/// Gemini 3 models take a `thinkingLevel` (thinking cannot be switched off: "none" asks for the
/// lowest level the model has; Pro models have no "minimal"); older models take a `thinkingBudget`
/// of 1024 (minimal, low), 8192 (medium) or 24576 (high) tokens, and 0 for "none" (128, the
/// minimum, on Pro models, which cannot stop thinking). Thought summaries are asked for
/// (`includeThoughts`) unless the effort is "none".
pub(crate) fn thinking_config(effort: &str, model: &str, param: &str) -> Result<Value, TranslateError> {
    let level = match effort {
        "none" | "minimal" | "low" | "medium" | "high" => effort,
        "xhigh" => "high",
        other => {
            return Err(bad(
                format!(
                    "Invalid value for '{param}': '{other}'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high' and 'xhigh'."
                ),
                param,
            ));
        }
    };
    let pro = model.contains("-pro");
    let include_thoughts = level != "none";
    let mut config = if model.starts_with("gemini-3") {
        let gemini_level = match level {
            "none" | "minimal" if pro => "low",
            "none" => "minimal",
            other => other,
        };
        json!({ "thinkingLevel": gemini_level })
    } else {
        let budget = match level {
            "none" if pro => 128,
            "none" => 0,
            "minimal" | "low" => 1024,
            "medium" => 8192,
            _ => 24576,
        };
        json!({ "thinkingBudget": budget })
    };
    if include_thoughts {
        config["includeThoughts"] = Value::Bool(true);
    }
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::response::{gemini_response_to_chat, tool_call_id};
    use super::super::test_support::{chat_err as err, chat_ok as ok, user};
    use super::*;

    #[test]
    fn minimal_request() {
        let call = ok(json!({"model": "gemini-2.5-flash", "messages": [user("Hi")]}));
        assert_eq!(call.model, "gemini-2.5-flash");
        assert!(!call.stream);
        assert!(!call.include_usage);
        assert_eq!(call.body, json!({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}));
    }

    #[test]
    fn models_prefix_stream_and_unknown_fields() {
        let call = ok(json!({"model": "models/gemini-2.5-pro", "messages": [user("Hi")], "stream": true,
            "stream_options": {"include_usage": true}, "user": "u-1", "metadata": {"a": "b"}, "store": false,
            "logit_bias": {"50256": -100}, "parallel_tool_calls": true, "service_tier": "auto"}));
        assert_eq!(call.model, "gemini-2.5-pro");
        assert!(call.stream);
        assert!(call.include_usage);
        assert!(call.body.get("generationConfig").is_none());
    }

    #[test]
    fn system_developer_roles_and_merging() {
        let call = ok(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            user("one"), user("two"),
            {"role": "assistant", "content": "un"},
            {"role": "assistant", "content": [{"type": "text", "text": "deux"}]},
            user("three")
        ]}));
        assert_eq!(
            call.body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}, {"text": "Use French."}]})
        );
        assert_eq!(
            call.body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
                {"role": "model", "parts": [{"text": "un"}, {"text": "deux"}]},
                {"role": "user", "parts": [{"text": "three"}]}
            ])
        );
    }

    #[test]
    fn only_system_message_becomes_the_user_turn() {
        let call = ok(json!({"model": "m", "messages": [{"role": "system", "content": "Say hi"}]}));
        assert_eq!(call.body, json!({"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}));
        err(json!({"model": "m", "messages": [{"role": "user", "content": ""}]}), Some("messages"));
    }

    #[test]
    fn generation_config_mapping() {
        let call = ok(json!({"model": "m", "messages": [user("x")], "temperature": 0.2, "top_p": 0.9,
            "max_tokens": 100, "n": 2, "stop": "END", "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5}));
        assert_eq!(
            call.body["generationConfig"],
            json!({"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 100, "candidateCount": 2,
                   "stopSequences": ["END"], "seed": 7, "presencePenalty": 0.5, "frequencyPenalty": -0.5})
        );
        let call = ok(json!({"model": "m", "messages": [user("x")], "max_tokens": 100,
            "max_completion_tokens": 50, "stop": ["a", "b"], "temperature": null}));
        assert_eq!(
            call.body["generationConfig"],
            json!({"maxOutputTokens": 50, "stopSequences": ["a", "b"]})
        );
    }

    #[test]
    fn response_format_json_object_and_schema() {
        let call =
            ok(json!({"model": "m", "messages": [user("x")], "response_format": {"type": "json_object"}}));
        assert_eq!(call.body["generationConfig"], json!({"responseMimeType": "application/json"}));
        let call =
            ok(json!({"model": "m", "messages": [user("x")], "response_format": {"type": "json_schema",
            "json_schema": {"name": "r", "strict": true, "schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"n": {"type": ["integer", "null"]}, "k": {"const": "fixed"}},
                "required": ["n", "k"]}}}}));
        assert_eq!(
            call.body["generationConfig"],
            json!({"responseMimeType": "application/json", "responseSchema": {
                "type": "OBJECT",
                "properties": {"n": {"type": "INTEGER", "nullable": true}, "k": {"type": "STRING", "enum": ["fixed"]}},
                "required": ["n", "k"]}})
        );
        let call = ok(json!({"model": "m", "messages": [user("x")], "response_format": {"type": "text"}}));
        assert!(call.body.get("generationConfig").is_none());
        err(
            json!({"model": "m", "messages": [user("x")], "response_format": {"type": "yaml"}}),
            Some("response_format.type"),
        );
        err(
            json!({"model": "m", "messages": [user("x")], "response_format": "json"}),
            Some("response_format"),
        );
    }

    #[test]
    fn reasoning_effort_mapping() {
        let tc = |model: &str, effort: &str| {
            ok(json!({"model": model, "messages": [user("x")], "reasoning_effort": effort})).body["generationConfig"]
                ["thinkingConfig"]
                .clone()
        };
        assert_eq!(tc("gemini-2.5-flash", "none"), json!({"thinkingBudget": 0}));
        assert_eq!(
            tc("gemini-2.5-flash", "minimal"),
            json!({"thinkingBudget": 1024, "includeThoughts": true})
        );
        assert_eq!(tc("gemini-2.5-flash", "low"), json!({"thinkingBudget": 1024, "includeThoughts": true}));
        assert_eq!(
            tc("gemini-2.5-flash", "medium"),
            json!({"thinkingBudget": 8192, "includeThoughts": true})
        );
        assert_eq!(tc("gemini-2.5-flash", "high"), json!({"thinkingBudget": 24576, "includeThoughts": true}));
        assert_eq!(tc("gemini-2.5-pro", "none"), json!({"thinkingBudget": 128}));
        assert_eq!(tc("gemini-3-flash-preview", "none"), json!({"thinkingLevel": "minimal"}));
        assert_eq!(
            tc("gemini-3-flash-preview", "medium"),
            json!({"thinkingLevel": "medium", "includeThoughts": true})
        );
        assert_eq!(
            tc("gemini-3-pro-preview", "minimal"),
            json!({"thinkingLevel": "low", "includeThoughts": true})
        );
        assert_eq!(
            tc("gemini-3-pro-preview", "xhigh"),
            json!({"thinkingLevel": "high", "includeThoughts": true})
        );
        err(
            json!({"model": "m", "messages": [user("x")], "reasoning_effort": "max"}),
            Some("reasoning_effort"),
        );
        err(json!({"model": "m", "messages": [user("x")], "reasoning_effort": 3}), Some("reasoning_effort"));
    }

    #[test]
    fn tool_call_history_round_trip_with_signatures() {
        // Ids as this proxy produced them: one with the signature encoded, one carried only in extra_content.
        let id_sig = tool_call_id("chatcmpl-9", 0, 0, Some("c2lnLzE+"));
        let call = ok(json!({"model": "gemini-2.5-flash", "messages": [
            user("Weather in Paris and time?"),
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": id_sig, "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""},
                 "extra_content": {"google": {"thought_signature": "AAEC"}}}
            ]},
            {"role": "tool", "tool_call_id": id_sig, "content": "{\"temp\": 21}"},
            {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
            user("Thanks")
        ]}));
        assert_eq!(
            call.body["contents"],
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris and time?"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLzE+"},
                    {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "AAEC"}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                    {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}},
                    {"text": "Thanks"}
                ]}
            ])
        );
    }

    #[test]
    fn response_tool_calls_round_trip_even_when_extra_content_is_dropped() {
        let resp = json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking...", "thought": true},
            {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "EjQKMgFyyNp8"}]},
            "finishReason": "STOP"}]});
        let out = gemini_response_to_chat(&resp, "gemini-3-pro-preview", "chatcmpl-rt", 1);
        // The client echoes the assistant message back, minus the non-standard extra_content.
        let mut assistant = out["choices"][0]["message"].clone();
        assistant["tool_calls"][0].as_object_mut().unwrap().remove("extra_content");
        let call_id = assistant["tool_calls"][0]["id"].clone();
        let call = ok(json!({"model": "gemini-3-pro-preview", "messages": [
            user("go"), assistant, {"role": "tool", "tool_call_id": call_id, "content": "done"}]}));
        assert_eq!(
            call.body["contents"][1],
            json!({"role": "model", "parts": [
                {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "EjQKMgFyyNp8"}]})
        );
        assert_eq!(
            call.body["contents"][2]["parts"][0],
            json!({"functionResponse": {"name": "f", "response": {"result": "done"}}})
        );
    }

    #[test]
    fn gemini3_history_without_signature_gets_the_documented_placeholder() {
        let msgs = json!([
            user("x"),
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "1"},
            {"role": "tool", "tool_call_id": "c2", "content": "2"}
        ]);
        let call = ok(json!({"model": "gemini-3-pro-preview", "messages": msgs}));
        let parts = &call.body["contents"][1]["parts"];
        assert_eq!(parts[0]["thoughtSignature"], SKIP_THOUGHT_SIGNATURE);
        assert!(parts[1].get("thoughtSignature").is_none());
        // Not for older models.
        let call = ok(json!({"model": "gemini-2.5-flash", "messages": msgs}));
        assert!(call.body["contents"][1]["parts"][0].get("thoughtSignature").is_none());
    }

    #[test]
    fn tool_message_errors() {
        err(
            json!({"model": "m", "messages": [user("x"), {"role": "tool", "tool_call_id": "nope", "content": "1"}]}),
            Some("messages[1].tool_call_id"),
        );
        err(
            json!({"model": "m", "messages": [user("x"), {"role": "tool", "content": "1"}]}),
            Some("messages[1].tool_call_id"),
        );
        // A client that names the function on the tool message is still understood.
        let call = ok(json!({"model": "m", "messages": [user("x"),
            {"role": "tool", "tool_call_id": "gone", "name": "f", "content": "[1,2]"}]}));
        assert_eq!(
            call.body["contents"][0]["parts"][1],
            json!({"functionResponse": {"name": "f", "response": {"result": "[1,2]"}}})
        );
    }

    #[test]
    fn invalid_tool_arguments_name_the_field() {
        let with_args = |args: Value| {
            json!({"model": "m", "messages": [user("x"), {"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": args}}]}]})
        };
        let e = err(with_args(json!("{not json")), Some("messages[1].tool_calls[0].function.arguments"));
        assert!(e.message.contains("not valid JSON"), "{}", e.message);
        err(with_args(json!("[1]")), Some("messages[1].tool_calls[0].function.arguments"));
        err(with_args(json!(5)), Some("messages[1].tool_calls[0].function.arguments"));
        // An object is accepted as is.
        let call = ok(with_args(json!({"a": 1})));
        assert_eq!(call.body["contents"][1]["parts"][0]["functionCall"]["args"], json!({"a": 1}));
    }

    #[test]
    fn deprecated_function_call_and_function_role() {
        let call = ok(json!({"model": "m", "messages": [user("x"),
            {"role": "assistant", "function_call": {"name": "f", "arguments": "{\"q\":1}"}},
            {"role": "function", "name": "f", "content": "{\"ok\":true}"}]}));
        assert_eq!(
            call.body["contents"][1]["parts"][0],
            json!({"functionCall": {"name": "f", "args": {"q": 1}}})
        );
        assert_eq!(
            call.body["contents"][2]["parts"][0],
            json!({"functionResponse": {"name": "f", "response": {"ok": true}}})
        );
    }

    #[test]
    fn missing_and_malformed_top_level_fields() {
        err(json!([1, 2]), None);
        err(json!("hello"), None);
        err(json!(null), None);
        err(json!({"messages": [user("x")]}), Some("model"));
        err(json!({"model": null, "messages": [user("x")]}), Some("model"));
        err(json!({"model": 5, "messages": [user("x")]}), Some("model"));
        err(json!({"model": "models/", "messages": [user("x")]}), Some("model"));
        err(json!({"model": "m"}), Some("messages"));
        err(json!({"model": "m", "messages": []}), Some("messages"));
        err(json!({"model": "m", "messages": "hi"}), Some("messages"));
        err(json!({"model": "m", "messages": [user("x")], "stream": "yes"}), Some("stream"));
        err(
            json!({"model": "m", "messages": [user("x")], "stream_options": {"include_usage": 1}}),
            Some("stream_options.include_usage"),
        );
        err(json!({"model": "m", "messages": [user("x")], "temperature": "hot"}), Some("temperature"));
        err(json!({"model": "m", "messages": [user("x")], "max_tokens": -1}), Some("max_tokens"));
        err(json!({"model": "m", "messages": [user("x")], "max_tokens": 1.5}), Some("max_tokens"));
        err(json!({"model": "m", "messages": [user("x")], "n": 0}), Some("n"));
        err(json!({"model": "m", "messages": [user("x")], "seed": "1"}), Some("seed"));
        err(json!({"model": "m", "messages": [user("x")], "stop": 3}), Some("stop"));
        err(json!({"model": "m", "messages": [user("x")], "stop": ["a", 3]}), Some("stop[1]"));
    }

    #[test]
    fn malformed_messages() {
        err(json!({"model": "m", "messages": [5]}), Some("messages[0]"));
        err(json!({"model": "m", "messages": [{"content": "x"}]}), Some("messages[0].role"));
        err(json!({"model": "m", "messages": [{"role": 1, "content": "x"}]}), Some("messages[0].role"));
        let e = err(
            json!({"model": "m", "messages": [{"role": "robot", "content": "x"}]}),
            Some("messages[0].role"),
        );
        assert!(e.message.contains("robot"));
        err(json!({"model": "m", "messages": [{"role": "user"}]}), Some("messages[0].content"));
        err(json!({"model": "m", "messages": [{"role": "user", "content": 5}]}), Some("messages[0].content"));
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [5]}]}),
            Some("messages[0].content[0]"),
        );
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
            Some("messages[0].content[0].type"),
        );
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}),
            Some("messages[0].content[0].text"),
        );
        err(
            json!({"model": "m", "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]}),
            Some("messages[0].content[0].type"),
        );
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "../x"}}]}]}),
            Some("messages[0].content[0].input_audio.format"),
        );
        err(
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": {}}]}),
            Some("messages[0].tool_calls"),
        );
        err(
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}]}),
            Some("messages[0].tool_calls[0].id"),
        );
    }

    #[test]
    fn deeply_nested_values_do_not_overflow() {
        // A content array nested 1000 levels deep: refused at the first level, no recursion.
        let mut deep = json!("x");
        for _ in 0..1000 {
            deep = Value::Array(vec![deep]);
        }
        err(
            json!({"model": "m", "messages": [{"role": "user", "content": [deep.clone()]}]}),
            Some("messages[0].content[0]"),
        );
        // Deep JSON inside a string argument: serde_json's own depth limit makes it invalid JSON.
        let deep_text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        err(
            json!({"model": "m", "messages": [{"role": "assistant", "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": deep_text}}]}]}),
            Some("messages[0].tool_calls[0].function.arguments"),
        );
        // Deep tool results are plain text then.
        let call = ok(
            json!({"model": "m", "messages": [user("x"), {"role": "tool", "tool_call_id": "c", "name": "f", "content": deep_text}]}),
        );
        assert!(call.body["contents"][0]["parts"][1]["functionResponse"]["response"]["result"].is_string());
        // A deep tool schema is refused by the schema cleaner's depth limit.
        let mut schema = json!({"type": "string"});
        for _ in 0..200 {
            schema = json!({"type": "object", "properties": {"a": schema}});
        }
        err(
            json!({"model": "m", "messages": [user("x")], "tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}),
            Some("tools[0].function.parameters"),
        );
        drop(deep);
    }
}
