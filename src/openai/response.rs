//! Gemini `GenerateContentResponse` -> OpenAI `chat.completion`, plus the pieces the stream
//! translator shares with it: splitting a candidate's parts, finish-reason and usage mapping, and the
//! deterministic tool-call ids that carry Gemini's `thoughtSignature` through clients that drop
//! unknown fields.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness: the response `id` and
//! `created` timestamp are passed in. Reads upstream JSON leniently (a missing or odd field is
//! treated as absent) and never recurses into it.

use base64::Engine as _;
use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD, URL_SAFE_PAD_INDIFFERENT,
};
use serde_json::Value;

use super::types::{
    AssistantMessage, ChatCompletion, Choice, CompletionTokensDetails, ExtraContent, FunctionCall,
    GoogleExtra, PromptTokensDetails, ToolCall, Usage, to_json,
};

/// Separates the tool-call id proper from the base64url thought signature appended to it.
pub const THOUGHT_SIGNATURE_MARKER: &str = "__ts__";

/// FNV-1a, 64 bits: a stable, dependency-free digest for ids (not for security).
fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The id of tool call `call` of choice `choice` in response `response_id`:
/// `call_<16 hex>_<choice>_<call>`, followed by `__ts__<base64url(signature bytes)>` when Gemini
/// attached a thought signature (so that it survives clients that keep only `id`).
/// A signature that is not valid base64 is not encoded in the id (it still travels in
/// `extra_content`).
pub fn tool_call_id(response_id: &str, choice: u64, call: usize, signature: Option<&str>) -> String {
    let mut id = format!("call_{:016x}_{choice}_{call}", fnv1a64(response_id));
    if let Some(bytes) = signature.and_then(|s| STANDARD_PAD_INDIFFERENT.decode(s).ok()) {
        id.push_str(THOUGHT_SIGNATURE_MARKER);
        id.push_str(&URL_SAFE_NO_PAD.encode(bytes));
    }
    id
}

/// The thought signature encoded in a tool-call id by [`tool_call_id`], as standard base64.
pub fn signature_from_tool_call_id(id: &str) -> Option<String> {
    let (_, encoded) = id.split_once(THOUGHT_SIGNATURE_MARKER)?;
    let bytes = URL_SAFE_PAD_INDIFFERENT.decode(encoded).ok()?;
    (!bytes.is_empty()).then(|| STANDARD.encode(bytes))
}

/// Gemini `finishReason` -> OpenAI `finish_reason` (tool calls are decided by the caller).
pub fn finish_reason(gemini: &str) -> &'static str {
    match gemini {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "OTHER" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ => "stop",
    }
}

fn count(meta: &Value, key: &str) -> Option<u64> {
    meta.get(key).and_then(Value::as_u64)
}

/// Gemini `usageMetadata` -> OpenAI `usage`.
/// completion = candidates + thoughts; total = `totalTokenCount`, or the sum when absent.
pub fn usage_from_gemini(meta: &Value) -> Usage {
    let prompt = count(meta, "promptTokenCount").unwrap_or(0);
    let thoughts = count(meta, "thoughtsTokenCount").unwrap_or(0);
    let completion = count(meta, "candidatesTokenCount").unwrap_or(0).saturating_add(thoughts);
    let total = count(meta, "totalTokenCount").unwrap_or_else(|| prompt.saturating_add(completion));
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: total,
        prompt_tokens_details: count(meta, "cachedContentTokenCount")
            .map(|cached| PromptTokensDetails { cached_tokens: cached }),
        completion_tokens_details: CompletionTokensDetails { reasoning_tokens: thoughts },
    }
}

/// A function call found in a candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct GeminiCall {
    pub name: String,
    /// `args` re-encoded as a JSON string (`{}` when absent).
    pub arguments: String,
    pub signature: Option<String>,
}

/// The parts of one candidate, sorted by what OpenAI makes of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CandidateParts {
    /// Concatenated non-thought text; `None` when the candidate had no text part at all.
    pub text: Option<String>,
    /// Concatenated thought summaries (`thought: true` parts).
    pub reasoning: Option<String>,
    pub calls: Vec<GeminiCall>,
}

/// Splits `candidate.content.parts` into text, reasoning and function calls. Parts of other kinds
/// (inline data, executable code ...) have no chat-completion form and are skipped.
pub fn split_parts(candidate: &Value) -> CandidateParts {
    let mut out = CandidateParts::default();
    let parts =
        candidate.pointer("/content/parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for part in parts {
        if let Some(call) = part.get("functionCall") {
            let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let arguments = match call.get("args") {
                Some(args) if !args.is_null() => {
                    serde_json::to_string(args).unwrap_or_else(|_| "{}".to_owned())
                }
                _ => "{}".to_owned(),
            };
            let signature = part.get("thoughtSignature").and_then(Value::as_str).map(str::to_owned);
            out.calls.push(GeminiCall { name, arguments, signature });
        } else if let Some(text) = part.get("text").and_then(Value::as_str) {
            let slot = if part.get("thought").and_then(Value::as_bool) == Some(true) {
                &mut out.reasoning
            } else {
                &mut out.text
            };
            slot.get_or_insert_with(String::new).push_str(text);
        }
    }
    out
}

/// The OpenAI tool call for Gemini call `k` of choice `choice`.
pub fn openai_tool_call(
    response_id: &str,
    choice: u64,
    k: usize,
    call: &GeminiCall,
    stream_index: Option<u64>,
) -> ToolCall {
    let signature = call.signature.as_deref().filter(|s| !s.is_empty());
    ToolCall {
        index: stream_index,
        id: tool_call_id(response_id, choice, k, signature),
        kind: "function",
        function: FunctionCall { name: call.name.clone(), arguments: call.arguments.clone() },
        extra_content: signature
            .map(|s| ExtraContent { google: GoogleExtra { thought_signature: s.to_owned() } }),
    }
}

/// Choice indices for a list of candidates: `candidate.index`, else 0 for the first candidate
/// without one (proto3 JSON omits a zero index), else its position.
pub fn candidate_indices(candidates: &[Value]) -> Vec<u64> {
    let mut seen_unindexed = false;
    candidates
        .iter()
        .enumerate()
        .map(|(pos, c)| match c.get("index").and_then(Value::as_u64) {
            Some(i) => i,
            None if !seen_unindexed => {
                seen_unindexed = true;
                0
            }
            None => pos as u64,
        })
        .collect()
}

/// True when Gemini refused the prompt itself (`promptFeedback.blockReason`).
pub fn prompt_blocked(resp: &Value) -> bool {
    resp.pointer("/promptFeedback/blockReason").is_some_and(|r| !r.is_null())
}

/// Gemini `GenerateContentResponse` -> OpenAI `chat.completion`.
pub fn gemini_response_to_chat(resp: &Value, model: &str, id: &str, created: i64) -> Value {
    let candidates = resp.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut choices = Vec::with_capacity(candidates.len().max(1));
    if candidates.is_empty() {
        choices.push(Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: Some(String::new()),
                refusal: None,
                reasoning_content: None,
                tool_calls: Vec::new(),
            },
            logprobs: None,
            finish_reason: if prompt_blocked(resp) { "content_filter" } else { "stop" },
        });
    }
    for (candidate, index) in candidates.iter().zip(candidate_indices(candidates)) {
        let parts = split_parts(candidate);
        let tool_calls: Vec<ToolCall> =
            parts.calls.iter().enumerate().map(|(k, c)| openai_tool_call(id, index, k, c, None)).collect();
        let finish = if !tool_calls.is_empty() {
            "tool_calls"
        } else {
            candidate.get("finishReason").and_then(Value::as_str).map(finish_reason).unwrap_or("stop")
        };
        let content = match parts.text {
            Some(text) => Some(text),
            None if tool_calls.is_empty() => Some(String::new()),
            None => None,
        };
        choices.push(Choice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content,
                refusal: None,
                reasoning_content: parts.reasoning,
                tool_calls,
            },
            logprobs: None,
            finish_reason: finish,
        });
    }
    let usage = resp.get("usageMetadata").map(usage_from_gemini).unwrap_or_default();
    to_json(&ChatCompletion {
        id: id.to_owned(),
        object: "chat.completion",
        created,
        model: model.to_owned(),
        choices,
        usage: Some(usage),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_valid;
    use super::*;

    fn check(resp: Value) -> Value {
        let out = gemini_response_to_chat(&resp, "gemini-2.5-flash", "chatcmpl-1", 1_700_000_000);
        assert_valid("CreateChatCompletionResponse", &out);
        out
    }

    #[test]
    fn plain_text_response() {
        let out = check(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}, {"text": ", world"}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
            "modelVersion": "gemini-2.5-flash"
        }));
        assert_eq!(out["object"], "chat.completion");
        assert_eq!(out["id"], "chatcmpl-1");
        assert_eq!(out["created"], 1_700_000_000);
        assert_eq!(out["model"], "gemini-2.5-flash");
        let choice = &out["choices"][0];
        assert_eq!(choice["message"]["content"], "Hello, world");
        assert_eq!(choice["message"]["role"], "assistant");
        assert!(choice["message"]["refusal"].is_null());
        assert!(choice["logprobs"].is_null());
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                   "completion_tokens_details": {"reasoning_tokens": 0}})
        );
    }

    #[test]
    fn thinking_goes_to_reasoning_content_and_usage() {
        let out = check(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true}, {"text": "42"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 30,
                              "cachedContentTokenCount": 4, "totalTokenCount": 42}
        }));
        let msg = &out["choices"][0]["message"];
        assert_eq!(msg["content"], "42");
        assert_eq!(msg["reasoning_content"], "Let me think.");
        assert_eq!(out["usage"]["completion_tokens"], 32);
        assert_eq!(out["usage"]["total_tokens"], 42);
        assert_eq!(out["usage"]["completion_tokens_details"]["reasoning_tokens"], 30);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    }

    #[test]
    fn function_calls_with_signature() {
        let out = check(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLzE+"},
                {"functionCall": {"name": "get_time", "args": {}}}]}, "finishReason": "STOP"}]
        }));
        let msg = &out["choices"][0]["message"];
        assert!(msg["content"].is_null());
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        let calls = msg["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(calls[0]["extra_content"]["google"]["thought_signature"], "c2lnLzE+");
        let id0 = calls[0]["id"].as_str().unwrap();
        assert!(id0.starts_with("call_") && id0.contains(THOUGHT_SIGNATURE_MARKER), "{id0}");
        assert_eq!(signature_from_tool_call_id(id0).as_deref(), Some("c2lnLzE+"));
        // No signature: plain id, no extra_content; arguments of an empty object.
        assert!(calls[1].get("extra_content").is_none());
        assert!(!calls[1]["id"].as_str().unwrap().contains(THOUGHT_SIGNATURE_MARKER));
        assert_eq!(calls[1]["function"]["arguments"], "{}");
        assert_ne!(calls[0]["id"], calls[1]["id"]);
    }

    #[test]
    fn tool_call_ids_are_deterministic() {
        assert_eq!(tool_call_id("a", 0, 1, None), tool_call_id("a", 0, 1, None));
        assert_ne!(tool_call_id("a", 0, 1, None), tool_call_id("b", 0, 1, None));
        assert_ne!(tool_call_id("a", 0, 1, None), tool_call_id("a", 1, 0, None));
        // Not base64: not in the id.
        assert!(!tool_call_id("a", 0, 0, Some("not base64!")).contains(THOUGHT_SIGNATURE_MARKER));
        assert_eq!(signature_from_tool_call_id("call_123"), None);
    }

    #[test]
    fn finish_reason_mapping() {
        for (g, o) in [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("OTHER", "content_filter"),
            ("IMAGE_SAFETY", "content_filter"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("FINISH_REASON_UNSPECIFIED", "stop"),
        ] {
            assert_eq!(finish_reason(g), o, "{g}");
        }
        let out = check(
            json!({"candidates": [{"content": {"parts": [{"text": "trunc"}]}, "finishReason": "MAX_TOKENS"}]}),
        );
        assert_eq!(out["choices"][0]["finish_reason"], "length");
        let out = check(json!({"candidates": [{"finishReason": "SAFETY", "safetyRatings": []}]}));
        assert_eq!(out["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out["choices"][0]["message"]["content"], "");
    }

    #[test]
    fn blocked_prompt_gives_one_content_filter_choice() {
        let out = check(json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
                               "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7}}));
        let choices = out["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1);
        assert_eq!(choices[0]["finish_reason"], "content_filter");
        assert_eq!(choices[0]["message"]["content"], "");
        assert_eq!(out["usage"]["prompt_tokens"], 7);
        assert_eq!(out["usage"]["completion_tokens"], 0);
    }

    #[test]
    fn several_candidates_become_several_choices() {
        let out = check(json!({"candidates": [
            {"content": {"parts": [{"text": "A"}]}, "finishReason": "STOP"},
            {"content": {"parts": [{"text": "B"}]}, "finishReason": "STOP", "index": 1}
        ]}));
        assert_eq!(out["choices"][0]["index"], 0);
        assert_eq!(out["choices"][0]["message"]["content"], "A");
        assert_eq!(out["choices"][1]["index"], 1);
        assert_eq!(out["choices"][1]["message"]["content"], "B");
        // No index anywhere: positions.
        let out = check(
            json!({"candidates": [{"content": {"parts": [{"text": "A"}]}}, {"content": {"parts": [{"text": "B"}]}}]}),
        );
        assert_eq!(out["choices"][1]["index"], 1);
    }

    #[test]
    fn garbage_upstream_still_yields_a_valid_completion() {
        for resp in [
            json!(null),
            json!([]),
            json!({"candidates": "x"}),
            json!({"candidates": [{"content": {"parts": 5}}]}),
        ] {
            let out = check(resp);
            assert_eq!(out["choices"][0]["message"]["content"], "");
        }
    }
}
