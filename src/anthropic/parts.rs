//! Gemini answer parts as Anthropic content pieces, shared by the whole-message and the streamed
//! translation so that both place thought signatures identically; plus the tool-use ids that carry a
//! signature, stop reasons and usage.
//!
//! Where a `thoughtSignature` goes: on a `functionCall` part it is encoded in the `tool_use` id
//! (`toolu_<16 hex>_<n>__ts__<base64url>`), so it survives any client that keeps the id; on a thought
//! part it is that `thinking` block's `signature`; on any other part it becomes the `signature` of a
//! `thinking` block placed just before the part's block (the open thinking block when there is one,
//! else a new one with empty `thinking`). The request side reverses this: a `thinking` block's
//! signature goes on the model turn's next part, and a tool-use id's on its `functionCall`.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness; reads upstream JSON leniently.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::openai::response::THOUGHT_SIGNATURE_MARKER;

/// One piece of a Gemini candidate, in answer order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Piece {
    /// Thought summary text (`thought: true`).
    Thought(String),
    /// A thought signature for the pieces that follow (`thinking` block signature).
    Signature(String),
    /// Answer text.
    Text(String),
    /// A function call; `signature` is encoded in the tool-use id.
    Call { name: String, input: Value, signature: Option<String> },
}

/// The pieces of one part. Parts without an Anthropic form (inline data, executable code ...)
/// give none.
pub(super) fn pieces(part: &Value) -> Vec<Piece> {
    let signature = part.get("thoughtSignature").and_then(Value::as_str).filter(|s| !s.is_empty());
    let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
    let mut out = Vec::with_capacity(2);
    if let Some(call) = part.get("functionCall") {
        let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
        let input = match call.get("args") {
            Some(args @ Value::Object(_)) => args.clone(),
            _ => json!({}),
        };
        // A signature that cannot ride in an id (not base64) travels in a thinking block instead.
        let encodable = signature.filter(|s| STANDARD_PAD_INDIFFERENT.decode(s).is_ok_and(|b| !b.is_empty()));
        if let (Some(sig), None) = (signature, encodable) {
            out.push(Piece::Signature(sig.to_owned()));
        }
        out.push(Piece::Call { name, input, signature: encodable.map(str::to_owned) });
    } else if let Some(text) = part.get("text").and_then(Value::as_str) {
        if thought {
            out.push(Piece::Thought(text.to_owned()));
            out.extend(signature.map(|s| Piece::Signature(s.to_owned())));
        } else {
            out.extend(signature.map(|s| Piece::Signature(s.to_owned())));
            out.push(Piece::Text(text.to_owned()));
        }
    } else if let Some(sig) = signature {
        // A signature on a part we cannot show still goes back to Google.
        out.push(Piece::Signature(sig.to_owned()));
    }
    out
}

/// The parts of a response's first candidate (Anthropic answers have one).
pub(super) fn first_candidate(resp: &Value) -> Option<&Value> {
    let candidates = resp.get("candidates").and_then(Value::as_array)?;
    candidates
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        .or(candidates.first())
}

pub(super) fn candidate_parts(candidate: &Value) -> &[Value] {
    candidate.pointer("/content/parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// FNV-1a, 64 bits: a stable, dependency-free digest for ids (not for security).
fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The id of tool use `n` of message `message_id`: `toolu_<16 hex>_<n>`, then
/// `__ts__<base64url(signature)>` when Gemini signed the call (the characters stay within Anthropic's
/// `^[a-zA-Z0-9_-]+$`). `crate::openai::response::signature_from_tool_call_id` reads it back.
pub fn tool_use_id(message_id: &str, n: usize, signature: Option<&str>) -> String {
    let mut id = format!("toolu_{:016x}_{n}", fnv1a64(message_id));
    if let Some(bytes) =
        signature.and_then(|s| STANDARD_PAD_INDIFFERENT.decode(s).ok()).filter(|b| !b.is_empty())
    {
        id.push_str(THOUGHT_SIGNATURE_MARKER);
        id.push_str(&URL_SAFE_NO_PAD.encode(bytes));
    }
    id
}

/// Gemini `finishReason` -> Anthropic `stop_reason` (tool use is decided by the caller). Gemini does
/// not say which stop sequence ended an answer, so `stop_sequence` is never reported.
pub(super) fn stop_reason(gemini: Option<&str>) -> &'static str {
    match gemini {
        Some("MAX_TOKENS") => "max_tokens",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "refusal",
        _ => "end_turn",
    }
}

/// True when Gemini refused the prompt itself (`promptFeedback.blockReason`).
pub(super) fn prompt_blocked(resp: &Value) -> bool {
    resp.pointer("/promptFeedback/blockReason").is_some_and(|r| !r.is_null())
}

/// Token counts of a Gemini `usageMetadata`, in Anthropic's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// Prompt (and tool-use prompt) tokens not read from a cache.
    pub input: u64,
    /// Cached prompt tokens (`cachedContentTokenCount`).
    pub cache_read: u64,
    /// Answer plus thought tokens.
    pub output: u64,
}

impl Usage {
    pub(super) fn from_gemini(meta: &Value) -> Usage {
        let n = |key: &str| meta.get(key).and_then(Value::as_u64).unwrap_or(0);
        let cache_read = n("cachedContentTokenCount");
        let prompt = n("promptTokenCount").saturating_add(n("toolUsePromptTokenCount"));
        Usage {
            input: prompt.saturating_sub(cache_read),
            cache_read,
            output: n("candidatesTokenCount").saturating_add(n("thoughtsTokenCount")),
        }
    }

    /// Anthropic's `usage` object (`output_tokens` as given, for `message_start`'s zero).
    pub(super) fn to_json(self, output: u64) -> Value {
        json!({
            "input_tokens": self.input,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cache_read,
            "output_tokens": output,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::openai::response::signature_from_tool_call_id;

    use super::*;

    #[test]
    fn tool_use_ids_carry_signatures_and_are_deterministic() {
        let id = tool_use_id("msg_1", 0, Some("c2lnLzE+"));
        assert!(id.starts_with("toolu_"), "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'), "{id}");
        assert_eq!(signature_from_tool_call_id(&id).as_deref(), Some("c2lnLzE+"));
        assert_eq!(tool_use_id("msg_1", 1, None), tool_use_id("msg_1", 1, None));
        assert_ne!(tool_use_id("msg_1", 1, None), tool_use_id("msg_2", 1, None));
        assert_eq!(signature_from_tool_call_id(&tool_use_id("msg_1", 1, None)), None);
        assert!(!tool_use_id("m", 0, Some("not base64!")).contains(THOUGHT_SIGNATURE_MARKER));
    }

    #[test]
    fn pieces_place_signatures() {
        assert_eq!(
            pieces(&json!({"text": "t", "thought": true, "thoughtSignature": "AA=="})),
            vec![Piece::Thought("t".into()), Piece::Signature("AA==".into())]
        );
        assert_eq!(
            pieces(&json!({"text": "a", "thoughtSignature": "AA=="})),
            vec![Piece::Signature("AA==".into()), Piece::Text("a".into())]
        );
        assert_eq!(
            pieces(&json!({"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "AA=="})),
            vec![Piece::Call { name: "f".into(), input: json!({"x": 1}), signature: Some("AA==".into()) }]
        );
        // Not base64: a thinking block carries it.
        assert_eq!(
            pieces(&json!({"functionCall": {"name": "f"}, "thoughtSignature": "?!"})),
            vec![
                Piece::Signature("?!".into()),
                Piece::Call { name: "f".into(), input: json!({}), signature: None }
            ]
        );
        assert_eq!(pieces(&json!({"inlineData": {"mimeType": "image/png", "data": "AA"}})), vec![]);
    }

    #[test]
    fn usage_and_stop_reasons() {
        let u = Usage::from_gemini(&json!({"promptTokenCount": 100, "cachedContentTokenCount": 60,
            "candidatesTokenCount": 7, "thoughtsTokenCount": 20, "toolUsePromptTokenCount": 5}));
        assert_eq!(u, Usage { input: 45, cache_read: 60, output: 27 });
        assert_eq!(
            u.to_json(u.output),
            json!({"input_tokens": 45, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60, "output_tokens": 27})
        );
        assert_eq!(stop_reason(Some("STOP")), "end_turn");
        assert_eq!(stop_reason(None), "end_turn");
        assert_eq!(stop_reason(Some("MAX_TOKENS")), "max_tokens");
        assert_eq!(stop_reason(Some("SAFETY")), "refusal");
        assert_eq!(stop_reason(Some("PROHIBITED_CONTENT")), "refusal");
        assert_eq!(stop_reason(Some("MALFORMED_FUNCTION_CALL")), "end_turn");
        assert_eq!(stop_reason(Some("OTHER")), "end_turn");
    }
}
