//! Responses input items -> Gemini `systemInstruction` parts and `contents`: `message` items (with
//! or without `type`; `system` / `developer` -> system text, `assistant` -> `model`), their content
//! parts (`input_text`, `input_image`, `input_file`, `output_text`, `refusal`), `function_call`,
//! `function_call_output` and `reasoning` items. Consecutive items of one role share a turn.
//!
//! Thought signatures: a `reasoning` item's `encrypted_content` goes on the next model part of its
//! turn (or, when none follows, on the turn's last part); a `function_call` without one takes the
//! signature its `call_id` carries. Gemini 3 history without any signature gets Google's
//! documented placeholder. Never does I/O, takes a lock, reads the clock or fetches a URL.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::openai::TranslateError;
use crate::openai::content::{file_data_part, file_uri_part, is_gemini_file_uri, url_part};
use crate::openai::fields::{Obj, as_object, bad, field, opt_str, req_str};
use crate::openai::request::{SKIP_THOUGHT_SIGNATURE, function_response, parse_arguments, push_turn};
use crate::openai::response::signature_from_tool_call_id;

/// One item of the conversation and the name errors give it (`input[3]`).
pub(super) struct Source<'a> {
    pub param: String,
    pub item: &'a Value,
}

pub(super) struct Converted {
    pub system: Vec<Value>,
    pub contents: Vec<Value>,
}

/// The Gemini function name of a call in `namespace` (or none).
pub(super) fn gemini_name(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}.{name}"),
        None => name.to_owned(),
    }
}

#[derive(Default)]
struct Walk {
    system: Vec<Value>,
    turns: Vec<(&'static str, Vec<Value>)>,
    /// A reasoning item's signature waiting for the next model part.
    pending: Option<String>,
    /// call_id -> Gemini function name, from the function calls seen so far.
    names: HashMap<String, String>,
}

impl Walk {
    fn model_part(&mut self, mut part: Value) {
        if let Some(sig) = self.pending.take()
            && part.get("thoughtSignature").is_none()
        {
            part["thoughtSignature"] = Value::String(sig);
        }
        push_turn(&mut self.turns, "model", vec![part]);
    }

    /// A signature no model part followed goes on the last part of its turn.
    fn settle(&mut self) {
        let Some(sig) = self.pending.take() else { return };
        if let Some(("model", parts)) = self.turns.last_mut().map(|(r, p)| (*r, p))
            && let Some(last) = parts.last_mut()
            && last.get("thoughtSignature").is_none()
        {
            last["thoughtSignature"] = Value::String(sig);
        }
    }

    fn user_parts(&mut self, parts: Vec<Value>) {
        self.settle();
        push_turn(&mut self.turns, "user", parts);
    }
}

pub(super) fn convert_items<'a>(
    sources: impl Iterator<Item = Source<'a>>,
    _namespaces: &[String],
    gemini3: bool,
) -> Result<Converted, TranslateError> {
    let mut walk = Walk::default();
    for Source { param: p, item } in sources {
        let obj = as_object(item, &p)?;
        let kind = match opt_str(obj, "type", &format!("{p}.type"))? {
            Some(kind) => kind,
            None if obj.contains_key("role") => "message",
            None => return Err(TranslateError::missing(&format!("{p}.type"))),
        };
        match kind {
            "message" => message(&mut walk, obj, &p)?,
            "reasoning" => {
                if let Some(sig) = opt_str(obj, "encrypted_content", &format!("{p}.encrypted_content"))?
                    .filter(|s| !s.is_empty())
                {
                    walk.settle();
                    walk.pending = Some(sig.to_owned());
                }
            }
            "function_call" => {
                let call_id = req_str(obj, "call_id", &format!("{p}.call_id"))?;
                let name = req_str(obj, "name", &format!("{p}.name"))?;
                let namespace = opt_str(obj, "namespace", &format!("{p}.namespace"))?;
                let args = parse_arguments(field(obj, "arguments"), &format!("{p}.arguments"))?;
                let name = gemini_name(namespace, name);
                let mut part = json!({"functionCall": {"name": name, "args": args}});
                if walk.pending.is_none()
                    && let Some(sig) = signature_from_tool_call_id(call_id)
                {
                    part["thoughtSignature"] = Value::String(sig);
                }
                walk.names.insert(call_id.to_owned(), name);
                walk.model_part(part);
            }
            "function_call_output" => {
                let id_param = format!("{p}.call_id");
                let call_id = req_str(obj, "call_id", &id_param)?;
                let Some(name) = walk.names.get(call_id).cloned() else {
                    return Err(bad(
                        format!(
                            "No function call found for '{id_param}' ('{call_id}'): send the function_call item before its output."
                        ),
                        &id_param,
                    ));
                };
                let (text, extra) = match field(obj, "output") {
                    None => (String::new(), Vec::new()),
                    Some(Value::String(s)) => (s.clone(), Vec::new()),
                    Some(Value::Array(parts)) => output_parts(parts, &format!("{p}.output"))?,
                    Some(v) => {
                        return Err(TranslateError::wrong_type(
                            &format!("{p}.output"),
                            "a string or an array",
                            v,
                        ));
                    }
                };
                let mut parts = vec![function_response(&name, &text)];
                parts.extend(extra);
                walk.user_parts(parts);
            }
            // A hosted tool's record: nothing of it can go to Gemini.
            "web_search_call" => {}
            other => {
                return Err(bad(
                    format!(
                        "Input item type '{other}' is not supported: use 'message', 'function_call', 'function_call_output' or 'reasoning'."
                    ),
                    &format!("{p}.type"),
                ));
            }
        }
    }
    walk.settle();
    let mut contents: Vec<Value> =
        walk.turns.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect();
    if gemini3 {
        for turn in contents.iter_mut().filter(|t| t["role"] == "model") {
            let Some(parts) = turn.get_mut("parts").and_then(Value::as_array_mut) else { continue };
            let calls = || parts.iter().filter(|p| p.get("functionCall").is_some());
            if calls().next().is_some()
                && calls().all(|p| p.get("thoughtSignature").is_none())
                && let Some(first) = parts.iter_mut().find(|p| p.get("functionCall").is_some())
            {
                first["thoughtSignature"] = Value::String(SKIP_THOUGHT_SIGNATURE.into());
            }
        }
    }
    Ok(Converted { system: walk.system, contents })
}

fn message(walk: &mut Walk, obj: &Obj, p: &str) -> Result<(), TranslateError> {
    let role_param = format!("{p}.role");
    let role = req_str(obj, "role", &role_param)?;
    let content = field(obj, "content").ok_or_else(|| TranslateError::missing(&format!("{p}.content")))?;
    let param = format!("{p}.content");
    match role {
        "user" => {
            let parts = match content {
                Value::String(s) if s.is_empty() => Vec::new(),
                Value::String(s) => vec![json!({"text": s})],
                Value::Array(list) => {
                    let mut parts = Vec::with_capacity(list.len());
                    for (j, part) in list.iter().enumerate() {
                        parts.extend(input_part(part, &format!("{param}[{j}]"))?);
                    }
                    parts
                }
                v => {
                    return Err(TranslateError::wrong_type(
                        &param,
                        "a string or an array of content parts",
                        v,
                    ));
                }
            };
            walk.user_parts(parts);
        }
        "assistant" => {
            let text = text_of(content, &param, &["output_text", "input_text", "refusal"])?;
            if !text.is_empty() {
                walk.model_part(json!({"text": text}));
            }
        }
        "system" | "developer" => {
            let text = text_of(content, &param, &["input_text"])?;
            if !text.is_empty() {
                walk.system.push(json!({"text": text}));
            }
        }
        other => {
            return Err(bad(
                format!(
                    "Invalid value for '{role_param}': '{other}'. Supported values are: 'user', 'assistant', 'system' and 'developer'."
                ),
                &role_param,
            ));
        }
    }
    Ok(())
}

/// Text content: a string, or parts of the `allowed` types (their `text`, or `refusal`), joined.
fn text_of(content: &Value, param: &str, allowed: &[&str]) -> Result<String, TranslateError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                let pp = format!("{param}[{j}]");
                let po = as_object(part, &pp)?;
                let kind = req_str(po, "type", &format!("{pp}.type"))?;
                if !allowed.contains(&kind) {
                    return Err(bad(
                        format!(
                            "Content part type '{kind}' is not supported here: this message accepts only text."
                        ),
                        &format!("{pp}.type"),
                    ));
                }
                let key = if kind == "refusal" { "refusal" } else { "text" };
                text.push_str(req_str(po, key, &format!("{pp}.{key}"))?);
            }
            Ok(text)
        }
        v => Err(TranslateError::wrong_type(param, "a string or an array of content parts", v)),
    }
}

/// A user content part -> a Gemini part (none for empty text).
fn input_part(part: &Value, pp: &str) -> Result<Option<Value>, TranslateError> {
    let po = as_object(part, pp)?;
    let type_param = format!("{pp}.type");
    match req_str(po, "type", &type_param)? {
        "input_text" => {
            let text = req_str(po, "text", &format!("{pp}.text"))?;
            Ok((!text.is_empty()).then(|| json!({"text": text})))
        }
        "input_image" => {
            if let Some(url) = opt_str(po, "image_url", &format!("{pp}.image_url"))? {
                return url_part(url, &format!("{pp}.image_url")).map(Some);
            }
            match opt_str(po, "file_id", &format!("{pp}.file_id"))? {
                Some(id) => file_ref(id, &format!("{pp}.file_id")).map(Some),
                None => Err(bad(format!("'{pp}' needs 'image_url' (a data: URL) or 'file_id'."), pp)),
            }
        }
        "input_file" => {
            let filename = opt_str(po, "filename", &format!("{pp}.filename"))?;
            if let Some(data) = opt_str(po, "file_data", &format!("{pp}.file_data"))? {
                return file_data_part(data, filename, &format!("{pp}.file_data")).map(Some);
            }
            if let Some(id) = opt_str(po, "file_id", &format!("{pp}.file_id"))? {
                return file_ref(id, &format!("{pp}.file_id")).map(Some);
            }
            match opt_str(po, "file_url", &format!("{pp}.file_url"))? {
                Some(url) => url_part(url, &format!("{pp}.file_url")).map(Some),
                None => Err(bad(format!("'{pp}' needs 'file_data', 'file_id' or 'file_url'."), pp)),
            }
        }
        other => Err(bad(
            format!(
                "Content part type '{other}' is not supported: use 'input_text', 'input_image' or 'input_file'."
            ),
            &type_param,
        )),
    }
}

/// A file the client names by id: a Gemini file (`files/…`, made through the proxy) or file URI.
fn file_ref(id: &str, param: &str) -> Result<Value, TranslateError> {
    if id.starts_with("files/") && id.len() > 6 && !id[6..].contains('/') {
        return Ok(file_uri_part(&format!("https://generativelanguage.googleapis.com/v1beta/{id}")));
    }
    if is_gemini_file_uri(id) {
        return Ok(file_uri_part(id));
    }
    Err(bad(
        format!(
            "'{param}' must name a Gemini file ('files/…', uploaded through this proxy) or a Gemini file URI: OpenAI file ids do not exist on Gemini."
        ),
        param,
    ))
}

/// A function call output given as content parts: its text, and the other parts (images, files).
fn output_parts(parts: &[Value], param: &str) -> Result<(String, Vec<Value>), TranslateError> {
    let mut text = String::new();
    let mut extra = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let pp = format!("{param}[{j}]");
        let po = as_object(part, &pp)?;
        if matches!(req_str(po, "type", &format!("{pp}.type"))?, "input_text" | "output_text") {
            text.push_str(req_str(po, "text", &format!("{pp}.text"))?);
        } else {
            extra.extend(input_part(part, &pp)?);
        }
    }
    Ok((text, extra))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::request::responses_request_to_gemini;

    fn contents(input: serde_json::Value, model: &str) -> serde_json::Value {
        let call = responses_request_to_gemini(&json!({"model": model, "input": input}), &[]).unwrap();
        call.body["contents"].clone()
    }

    #[track_caller]
    fn err(input: serde_json::Value, param: &str) {
        let e = responses_request_to_gemini(&json!({"model": "m", "input": input}), &[]).expect_err("a 400");
        assert_eq!(e.param.as_deref(), Some(param), "{e}");
    }

    #[test]
    fn messages_of_every_role_and_content_parts() {
        let call = responses_request_to_gemini(&json!({"model": "m", "input": [
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "French."}]},
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "auto"},
                {"type": "input_file", "file_id": "files/abc123"},
                {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "A cat.", "annotations": []}]},
            {"role": "user", "content": "Thanks"}]}), &[]).unwrap();
        assert_eq!(
            call.body["systemInstruction"],
            json!({"parts": [{"text": "Be brief."}, {"text": "French."}]})
        );
        assert_eq!(
            call.body["contents"],
            json!([
            {"role": "user", "parts": [{"text": "What is this?"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}]},
            {"role": "model", "parts": [{"text": "A cat."}]},
            {"role": "user", "parts": [{"text": "Thanks"}]}])
        );
    }

    #[test]
    fn function_calls_carry_signatures_from_reasoning_or_call_id() {
        let call_id = crate::openai::response::tool_call_id("resp_1", 0, 0, Some("c2lnLzE+"));
        let got = contents(
            json!([
                {"role": "user", "content": "Weather?"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "UkVBU09O"},
                {"type": "function_call", "call_id": "call_a", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
                {"type": "function_call", "call_id": call_id, "name": "get_time", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_a", "output": "{\"temp\": 21}"},
                {"type": "function_call_output", "call_id": call_id, "output": [{"type": "input_text", "text": "12:00"}]},
            ]),
            "gemini-2.5-flash",
        );
        assert_eq!(
            got,
            json!([
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "UkVBU09O"},
                {"functionCall": {"name": "get_time", "args": {}}, "thoughtSignature": "c2lnLzE+"}]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "12:00"}}}]}])
        );
    }

    #[test]
    fn a_trailing_reasoning_signature_goes_on_the_turns_last_part() {
        let got = contents(
            json!([
            {"role": "user", "content": "Hi"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
            {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "thought"}], "encrypted_content": "U0lH"},
            {"role": "user", "content": "Again"}]),
            "gemini-3-pro-preview",
        );
        assert_eq!(
            got[1],
            json!({"role": "model", "parts": [{"text": "Hello", "thoughtSignature": "U0lH"}]})
        );
    }

    #[test]
    fn namespaced_calls_and_the_gemini3_placeholder() {
        let got = contents(
            json!([
            {"role": "user", "content": "x"},
            {"type": "function_call", "call_id": "c1", "namespace": "crm", "name": "find", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "none"}]),
            "gemini-3-flash-preview",
        );
        assert_eq!(got[1]["parts"][0]["functionCall"]["name"], "crm.find");
        assert_eq!(got[1]["parts"][0]["thoughtSignature"], crate::openai::request::SKIP_THOUGHT_SIGNATURE);
        assert_eq!(got[2]["parts"][0]["functionResponse"]["name"], "crm.find");
    }

    #[test]
    fn malformed_items_name_the_field() {
        err(json!([5]), "input[0]");
        err(json!([{"content": "x"}]), "input[0].type");
        err(json!([{"role": "robot", "content": "x"}]), "input[0].role");
        err(json!([{"role": "user"}]), "input[0].content");
        err(json!([{"role": "user", "content": [{"type": "input_audio"}]}]), "input[0].content[0].type");
        err(
            json!([{"role": "user", "content": [{"type": "input_image", "image_url": "https://example.com/a.png"}]}]),
            "input[0].content[0].image_url",
        );
        err(
            json!([{"role": "user", "content": [{"type": "input_file", "file_id": "file-abc"}]}]),
            "input[0].content[0].file_id",
        );
        err(json!([{"role": "assistant", "content": [{"type": "input_image"}]}]), "input[0].content[0].type");
        err(json!([{"type": "function_call", "name": "f", "arguments": "{}"}]), "input[0].call_id");
        err(
            json!([{"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1"}]),
            "input[0].arguments",
        );
        err(json!([{"type": "function_call_output", "call_id": "nope", "output": "x"}]), "input[0].call_id");
        err(json!([{"type": "item_reference", "id": "msg_1"}]), "input[0].type");
        err(json!([{"type": "reasoning", "encrypted_content": 3}]), "input[0].encrypted_content");
    }
}
