//! Anthropic `system` and `messages` -> Gemini `systemInstruction` parts and `contents`.
//!
//! Owns: roles (user -> `user`, assistant -> `model`, consecutive turns of one role merged), content
//! blocks (`text`, `image` and `document` with base64 / text / content sources, `tool_use`,
//! `tool_result`, `thinking`, `redacted_thinking`), and the way a thought signature gets back to
//! Google: a `thinking` block's `signature` goes on the next part of the model turn (on the turn's
//! last unsigned part when nothing follows), a tool-use id made by `parts::tool_use_id` gives its
//! `functionCall` the signature it encodes, and on Gemini 3 an unsigned first function call of a
//! turn gets Google's documented placeholder. Blocks of unknown types (`server_tool_use`,
//! `web_search_tool_result`, `search_result`, `container_upload` ...) and fields such as
//! `cache_control` and `citations` are dropped; `redacted_thinking` (Anthropic's own encryption,
//! meaningless to Google) is dropped too.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness, and never fetches a URL.
//! Every refusal is a 400 naming the field (`messages[2].content[0].source`).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::openai::TranslateError;
use crate::openai::fields::{Obj, as_object, bad, field, opt_bool, opt_object, opt_str, req_str};
use crate::openai::request::SKIP_THOUGHT_SIGNATURE;
use crate::openai::response::signature_from_tool_call_id;

/// `system`: a string or an array of `text` blocks (other block types are dropped).
pub(super) fn system_parts(system: Option<&Value>) -> Result<Vec<Value>, TranslateError> {
    match system {
        None => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
        Some(Value::Array(blocks)) => {
            let mut parts = Vec::new();
            for (k, block) in blocks.iter().enumerate() {
                let bp = format!("system[{k}]");
                let bo = as_object(block, &bp)?;
                if req_str(bo, "type", &format!("{bp}.type"))? == "text" {
                    let text = req_str(bo, "text", &format!("{bp}.text"))?;
                    if !text.is_empty() {
                        parts.push(json!({ "text": text }));
                    }
                }
            }
            Ok(parts)
        }
        Some(v) => Err(TranslateError::wrong_type("system", "a string or an array of text blocks", v)),
    }
}

/// The state of one conversation walk.
struct Walk {
    /// tool_use id -> function name, from the turns seen so far.
    call_names: HashMap<String, String>,
    turns: Vec<(&'static str, Vec<Value>)>,
}

/// `messages` -> Gemini `contents`.
pub(super) fn contents(messages: &[Value], gemini3: bool) -> Result<Vec<Value>, TranslateError> {
    let mut walk = Walk { call_names: HashMap::new(), turns: Vec::new() };
    for (i, message) in messages.iter().enumerate() {
        let p = format!("messages[{i}]");
        let m = as_object(message, &p)?;
        let role_param = format!("{p}.role");
        let role = match req_str(m, "role", &role_param)? {
            "user" => "user",
            "assistant" => "model",
            other => {
                return Err(bad(
                    format!(
                        "Invalid value for '{role_param}': '{other}'. Supported values are: 'user' and 'assistant'."
                    ),
                    &role_param,
                ));
            }
        };
        let parts = message_parts(m, &p, &mut walk)?;
        if parts.is_empty() {
            continue;
        }
        match walk.turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => walk.turns.push((role, parts)),
        }
    }
    let mut out = Vec::with_capacity(walk.turns.len());
    for (role, mut parts) in walk.turns {
        if gemini3 && role == "model" {
            // Gemini 3 refuses a step whose first function call carries no signature.
            let first_call = parts.iter_mut().find(|p| p.get("functionCall").is_some());
            if let Some(part) = first_call.and_then(Value::as_object_mut) {
                part.entry("thoughtSignature").or_insert_with(|| SKIP_THOUGHT_SIGNATURE.into());
            }
        }
        out.push(json!({"role": role, "parts": parts}));
    }
    Ok(out)
}

fn message_parts(m: &Obj, p: &str, walk: &mut Walk) -> Result<Vec<Value>, TranslateError> {
    let cp = format!("{p}.content");
    let blocks = match field(m, "content") {
        None => return Err(TranslateError::missing(&cp)),
        Some(Value::String(s)) if s.is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => return Ok(vec![json!({ "text": s })]),
        Some(Value::Array(blocks)) => blocks,
        Some(v) => return Err(TranslateError::wrong_type(&cp, "a string or an array of content blocks", v)),
    };
    let mut parts: Vec<Value> = Vec::new();
    // A thinking block's signature, waiting for the part it belongs to.
    let mut pending: Option<String> = None;
    for (j, block) in blocks.iter().enumerate() {
        let bp = format!("{cp}[{j}]");
        let bo = as_object(block, &bp)?;
        let kind = req_str(bo, "type", &format!("{bp}.type"))?;
        let start = parts.len();
        match kind {
            "text" => {
                let text = req_str(bo, "text", &format!("{bp}.text"))?;
                if !text.is_empty() {
                    parts.push(json!({ "text": text }));
                }
            }
            "image" => parts.push(image_part(bo, &bp)?),
            "document" => parts.extend(document_parts(bo, &bp)?),
            "tool_use" => {
                let id = req_str(bo, "id", &format!("{bp}.id"))?;
                let name = req_str(bo, "name", &format!("{bp}.name"))?;
                let input = match field(bo, "input") {
                    None => json!({}),
                    Some(v @ Value::Object(_)) => v.clone(),
                    Some(v) => {
                        return Err(TranslateError::wrong_type(&format!("{bp}.input"), "an object", v));
                    }
                };
                let mut part = json!({"functionCall": {"name": name, "args": input}});
                // The id's own signature first: a pending one came from a thought part before it.
                if let Some(sig) = signature_from_tool_call_id(id).or_else(|| pending.take()) {
                    part["thoughtSignature"] = Value::String(sig);
                }
                parts.push(part);
                walk.call_names.insert(id.to_owned(), name.to_owned());
            }
            "tool_result" => parts.extend(tool_result_parts(bo, &bp, &walk.call_names)?),
            "thinking" => {
                let signature = opt_str(bo, "signature", &format!("{bp}.signature"))?;
                if let Some(sig) = signature.filter(|s| !s.is_empty()) {
                    pending = Some(sig.to_owned());
                }
            }
            // redacted_thinking and every unknown block type.
            _ => {}
        }
        if let Some(sig) = pending.take_if(|_| parts.len() > start)
            && let Some(part) = parts.get_mut(start).and_then(Value::as_object_mut)
        {
            part.entry("thoughtSignature").or_insert(Value::String(sig));
        }
    }
    // A signature after the last part (Gemini puts a text answer's signature last).
    if let Some(sig) = pending {
        let unsigned = parts.iter_mut().rev().find(|p| p.get("thoughtSignature").is_none());
        if let Some(part) = unsigned.and_then(Value::as_object_mut) {
            part.insert("thoughtSignature".into(), Value::String(sig));
        }
    }
    Ok(parts)
}

/// `{type: base64, media_type, data}` -> `inlineData`; URL and file sources are refused.
fn base64_source(source: &Obj, sp: &str) -> Result<Value, TranslateError> {
    let mime = req_str(source, "media_type", &format!("{sp}.media_type"))?;
    let data = req_str(source, "data", &format!("{sp}.data"))?;
    if data.is_empty() {
        return Err(bad(format!("'{sp}.data' must not be empty."), &format!("{sp}.data")));
    }
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

fn unsupported_source(kind: &str, what: &str, sp: &str) -> TranslateError {
    match kind {
        "url" => bad(
            format!(
                "URL {what} sources are not supported: send the {what} as base64 (the proxy never fetches URLs)."
            ),
            sp,
        ),
        "file" => bad(
            format!(
                "File {what} sources are not supported: Anthropic file ids do not exist on Gemini; send the {what} as base64."
            ),
            sp,
        ),
        other => bad(format!("Unsupported {what} source type '{other}' in '{sp}.type'."), sp),
    }
}

fn image_part(bo: &Obj, bp: &str) -> Result<Value, TranslateError> {
    let sp = format!("{bp}.source");
    let source = opt_object(bo, "source", &sp)?.ok_or_else(|| TranslateError::missing(&sp))?;
    match req_str(source, "type", &format!("{sp}.type"))? {
        "base64" => base64_source(source, &sp),
        other => Err(unsupported_source(other, "image", &sp)),
    }
}

fn document_parts(bo: &Obj, bp: &str) -> Result<Vec<Value>, TranslateError> {
    let sp = format!("{bp}.source");
    let source = opt_object(bo, "source", &sp)?.ok_or_else(|| TranslateError::missing(&sp))?;
    match req_str(source, "type", &format!("{sp}.type"))? {
        "base64" => Ok(vec![base64_source(source, &sp)?]),
        "text" => {
            let data = req_str(source, "data", &format!("{sp}.data"))?;
            Ok(if data.is_empty() { Vec::new() } else { vec![json!({ "text": data })] })
        }
        "content" => {
            let cp = format!("{sp}.content");
            match field(source, "content") {
                None => Err(TranslateError::missing(&cp)),
                Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(vec![json!({ "text": s })]),
                Some(Value::Array(blocks)) => nested_parts(blocks, &cp).map(|(text, mut media)| {
                    let mut parts: Vec<Value> = text.into_iter().map(|t| json!({ "text": t })).collect();
                    parts.append(&mut media);
                    parts
                }),
                Some(v) => Err(TranslateError::wrong_type(&cp, "a string or an array of content blocks", v)),
            }
        }
        other => Err(unsupported_source(other, "document", &sp)),
    }
}

/// Blocks nested in a `tool_result` or a `content` document source: (their texts, their image and
/// document parts). Other block types are dropped.
fn nested_parts(blocks: &[Value], cp: &str) -> Result<(Vec<String>, Vec<Value>), TranslateError> {
    let mut texts = Vec::new();
    let mut media = Vec::new();
    for (k, block) in blocks.iter().enumerate() {
        let bp = format!("{cp}[{k}]");
        let bo = as_object(block, &bp)?;
        match req_str(bo, "type", &format!("{bp}.type"))? {
            "text" => texts.push(req_str(bo, "text", &format!("{bp}.text"))?.to_owned()),
            "image" => media.push(image_part(bo, &bp)?),
            "document" => {
                for part in document_parts(bo, &bp)? {
                    match part.get("text").and_then(Value::as_str) {
                        Some(t) => texts.push(t.to_owned()),
                        None => media.push(part),
                    }
                }
            }
            _ => {}
        }
    }
    Ok((texts, media))
}

/// `tool_result` -> a `functionResponse` (`{"content": text}`, or `{"error": text}` with
/// `is_error`), followed by the images and PDFs it holds as parts of their own.
fn tool_result_parts(
    bo: &Obj,
    bp: &str,
    call_names: &HashMap<String, String>,
) -> Result<Vec<Value>, TranslateError> {
    let id_param = format!("{bp}.tool_use_id");
    let id = req_str(bo, "tool_use_id", &id_param)?;
    let Some(name) = call_names.get(id) else {
        return Err(bad(
            format!(
                "'{id_param}' ('{id}') does not match the id of any tool_use block in an earlier assistant message."
            ),
            &id_param,
        ));
    };
    let is_error = opt_bool(bo, "is_error", &format!("{bp}.is_error"))?.unwrap_or(false);
    let cp = format!("{bp}.content");
    let (text, media) = match field(bo, "content") {
        None => (String::new(), Vec::new()),
        Some(Value::String(s)) => (s.clone(), Vec::new()),
        Some(Value::Array(blocks)) => {
            let (texts, media) = nested_parts(blocks, &cp)?;
            (texts.join("\n"), media)
        }
        Some(v) => return Err(TranslateError::wrong_type(&cp, "a string or an array of content blocks", v)),
    };
    let response = if is_error { json!({ "error": text }) } else { json!({ "content": text }) };
    let mut parts = vec![json!({"functionResponse": {"name": name, "response": response}})];
    parts.extend(media);
    Ok(parts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::parts::tool_use_id;
    use super::super::request::tests::{err, ok, req};
    use super::*;

    fn messages(list: Value) -> Value {
        ok(req(json!({ "messages": list }))).body["contents"].clone()
    }

    #[test]
    fn system_string_or_blocks() {
        let call = ok(req(json!({"system": "Be brief."})));
        assert_eq!(call.body["systemInstruction"], json!({"parts": [{"text": "Be brief."}]}));
        let call = ok(req(json!({"system": [
            {"type": "text", "text": "One", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "text", "text": ""},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
            {"type": "text", "text": "Two"}]})));
        assert_eq!(call.body["systemInstruction"], json!({"parts": [{"text": "One"}, {"text": "Two"}]}));
        assert!(ok(req(json!({"system": ""}))).body.get("systemInstruction").is_none());
        assert!(ok(req(json!({"system": []}))).body.get("systemInstruction").is_none());
    }

    #[test]
    fn roles_and_merged_turns() {
        let contents = messages(json!([
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": [{"type": "text", "text": "<system-reminder>r</system-reminder>"}, {"type": "text", "text": "d", "cache_control": {"type": "ephemeral"}}]}
        ]));
        assert_eq!(
            contents,
            json!([
                {"role": "user", "parts": [{"text": "a"}, {"text": "b"}]},
                {"role": "model", "parts": [{"text": "c"}]},
                {"role": "user", "parts": [{"text": "<system-reminder>r</system-reminder>"}, {"text": "d"}]}
            ])
        );
    }

    #[test]
    fn images_and_documents() {
        let contents = messages(json!([{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
             "title": "Spec", "citations": {"enabled": true}, "cache_control": {"type": "ephemeral"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
            {"type": "document", "source": {"type": "content", "content": [
                {"type": "text", "text": "inner"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]}},
            {"type": "text", "text": "What are these?"}
        ]}]));
        assert_eq!(
            contents[0]["parts"],
            json!([
                {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
                {"text": "plain words"},
                {"text": "inner"},
                {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                {"text": "What are these?"}
            ])
        );
    }

    #[test]
    fn url_and_file_sources_are_refused_never_fetched() {
        let e = err(
            req(json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"},
                {"role": "user", "content": [{"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}]})),
            "messages[2].content[1].source",
        );
        assert!(e.message.contains("URL image sources are not supported"), "{}", e.message);
        let e = err(
            req(json!({"messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}]})),
            "messages[0].content[0].source",
        );
        assert!(e.message.contains("URL document sources are not supported"), "{}", e.message);
        err(
            req(
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "file_1"}}]}]}),
            ),
            "messages[0].content[0].source",
        );
        err(
            req(
                json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": "AA"}}]}]}),
            ),
            "messages[0].content[0].source.media_type",
        );
        err(
            req(json!({"messages": [{"role": "user", "content": [{"type": "image"}]}]})),
            "messages[0].content[0].source",
        );
    }

    #[test]
    fn tool_use_and_tool_result() {
        let contents = messages(json!([
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}, "cache_control": {"type": "ephemeral"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "21C", "cache_control": {"type": "ephemeral"}},
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": true, "content": [
                    {"type": "text", "text": "clock"}, {"type": "text", "text": "broken"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"}}]},
                {"type": "text", "text": "Thanks"}]}
        ]));
        assert_eq!(
            contents,
            json!([
                {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
                {"role": "model", "parts": [
                    {"text": "Checking."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}}]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"content": "21C"}}},
                    {"functionResponse": {"name": "get_time", "response": {"error": "clock\nbroken"}}},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBO"}},
                    {"text": "Thanks"}]}
            ])
        );
        let tool_use =
            json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f"}]});
        let contents = messages(json!([{"role": "user", "content": "x"}, tool_use,
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]}]));
        assert_eq!(
            contents[2]["parts"][0],
            json!({"functionResponse": {"name": "f", "response": {"content": ""}}})
        );
        err(
            req(
                json!({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "content": "1"}]}]}),
            ),
            "messages[0].content[0].tool_use_id",
        );
        err(
            req(
                json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "tool_use", "name": "f"}]}]}),
            ),
            "messages[1].content[0].id",
        );
        err(
            req(
                json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "[]"}]}]}),
            ),
            "messages[1].content[0].input",
        );
    }

    #[test]
    fn thinking_signatures_go_on_the_next_part() {
        let contents = messages(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "plan", "signature": "c2lnMQ=="},
                {"type": "text", "text": "I will call f."},
                {"type": "thinking", "thinking": "", "signature": "c2lnMg=="},
                {"type": "tool_use", "id": tool_use_id("msg_9", 0, Some("c2lnMw==")), "name": "f", "input": {}},
                {"type": "tool_use", "id": tool_use_id("msg_9", 1, Some("c2lnNA==")), "name": "g", "input": {}},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}]}
        ]));
        assert_eq!(
            contents[1]["parts"],
            json!([
                {"text": "I will call f.", "thoughtSignature": "c2lnMQ=="},
                // The id's signature wins over a thinking block's (which Gemini put on a thought part).
                {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2lnMw=="},
                {"functionCall": {"name": "g", "args": {}}, "thoughtSignature": "c2lnNA=="}
            ])
        );
        // An id without a signature takes the thinking block's.
        let contents = messages(json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "", "signature": "not base64?"},
            {"type": "tool_use", "id": "toolu_x", "name": "f", "input": {}}]}]));
        assert_eq!(contents[1]["parts"][0]["thoughtSignature"], "not base64?");
        // A signature after the last part goes on the last unsigned part.
        let contents = messages(json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": [
            {"type": "text", "text": "Answer"}, {"type": "thinking", "thinking": "", "signature": "c2lnNQ=="}]}]));
        assert_eq!(contents[1]["parts"], json!([{"text": "Answer", "thoughtSignature": "c2lnNQ=="}]));
        // Only thinking: no model turn at all.
        let contents = messages(json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "t", "signature": "c2ln"}]}, {"role": "user", "content": "y"}]));
        assert_eq!(contents, json!([{"role": "user", "parts": [{"text": "x"}, {"text": "y"}]}]));
    }

    #[test]
    fn gemini3_unsigned_calls_get_the_placeholder() {
        let history = json!([{"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "text", "text": "hi"},
                {"type": "tool_use", "id": "toolu_a", "name": "f", "input": {}},
                {"type": "tool_use", "id": "toolu_b", "name": "g", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "1"},
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "2"}]}]);
        let call = ok(req(json!({"model": "gemini-3-pro-preview", "messages": history})));
        let parts = &call.body["contents"][1]["parts"];
        assert!(parts[0].get("thoughtSignature").is_none());
        assert_eq!(parts[1]["thoughtSignature"], SKIP_THOUGHT_SIGNATURE);
        assert!(parts[2].get("thoughtSignature").is_none());
        let call = ok(req(json!({"model": "gemini-2.5-flash", "messages": history})));
        assert!(call.body["contents"][1]["parts"][1].get("thoughtSignature").is_none());
    }

    #[test]
    fn unknown_blocks_are_dropped_and_malformed_ones_refused() {
        let contents = messages(json!([{"role": "user", "content": [
            {"type": "text", "text": "q"},
            {"type": "search_result", "source": "s", "title": "t", "content": []},
            {"type": "container_upload", "file_id": "f"}]},
            {"role": "assistant", "content": [
                {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "q"}},
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
                {"type": "text", "text": "found"}]}]));
        assert_eq!(
            contents,
            json!([{"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "found"}]}])
        );
        err(req(json!({"messages": [{"role": "system", "content": "x"}]})), "messages[0].role");
        err(req(json!({"messages": [{"content": "x"}]})), "messages[0].role");
        err(req(json!({"messages": [{"role": "user"}]})), "messages[0].content");
        err(req(json!({"messages": [{"role": "user", "content": 5}]})), "messages[0].content");
        err(req(json!({"messages": [{"role": "user", "content": [5]}]})), "messages[0].content[0]");
        err(
            req(json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})),
            "messages[0].content[0].type",
        );
        err(
            req(json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]})),
            "messages[0].content[0].text",
        );
        err(req(json!({"messages": [7]})), "messages[0]");
    }
}
