//! Gemini `GenerateContentResponse` -> Anthropic `message` object (a non-streamed answer).
//!
//! The blocks come from the builder the stream uses (`blocks.rs`), so a thought signature is placed
//! exactly as in a stream: see `parts.rs` for where each one goes.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness: the message `id` is passed in.
//! Reads upstream JSON leniently (a missing or odd field is treated as absent).

use serde_json::{Value, json};

use super::blocks::{BlockBuilder, fold};
use super::parts::{Usage, candidate_parts, first_candidate, pieces, prompt_blocked, stop_reason};

/// Gemini `GenerateContentResponse` -> Anthropic `message`. `model` is the name the client asked
/// for; `id` the message id (`msg_...`), which also seeds the tool-use ids.
pub fn gemini_response_to_message(resp: &Value, model: &str, id: &str) -> Value {
    let mut builder = BlockBuilder::new(id);
    let mut events = Vec::new();
    let candidate = first_candidate(resp);
    for part in candidate.map(candidate_parts).unwrap_or(&[]) {
        for piece in pieces(part) {
            builder.push(piece, &mut events);
        }
    }
    builder.close(&mut events);
    let stop = if builder.tool_uses() > 0 {
        "tool_use"
    } else if candidate.is_none() && prompt_blocked(resp) {
        "refusal"
    } else {
        stop_reason(candidate.and_then(|c| c.get("finishReason")).and_then(Value::as_str))
    };
    let usage = resp.get("usageMetadata").map(Usage::from_gemini).unwrap_or_default();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": fold(&events),
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": usage.to_json(usage.output),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::openai::response::signature_from_tool_call_id;

    use super::*;

    fn message(resp: Value) -> Value {
        gemini_response_to_message(&resp, "claude-sonnet-4-5", "msg_1")
    }

    #[test]
    fn text_answer() {
        let out = message(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hello"}, {"text": ", world"}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
        }));
        assert_eq!(
            out,
            json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                   "content": [{"type": "text", "text": "Hello, world"}],
                   "stop_reason": "end_turn", "stop_sequence": null,
                   "usage": {"input_tokens": 5, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 3}})
        );
    }

    #[test]
    fn thinking_then_text_with_signature_on_the_text_part() {
        let out = message(json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Let me think.", "thought": true},
                {"text": "42", "thoughtSignature": "c2lnMQ=="}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 10, "cachedContentTokenCount": 4, "candidatesTokenCount": 2, "thoughtsTokenCount": 30}
        }));
        assert_eq!(
            out["content"],
            json!([{"type": "thinking", "thinking": "Let me think.", "signature": "c2lnMQ=="},
                   {"type": "text", "text": "42"}])
        );
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 6, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 4, "output_tokens": 32})
        );
    }

    #[test]
    fn signature_without_thoughts_gets_an_empty_thinking_block() {
        let out = message(json!({"candidates": [{"content": {"parts": [
            {"text": "Answer"}, {"text": "", "thoughtSignature": "c2lnMg=="}]}, "finishReason": "STOP"}]}));
        assert_eq!(
            out["content"],
            json!([{"type": "text", "text": "Answer"}, {"type": "thinking", "thinking": "", "signature": "c2lnMg=="}])
        );
    }

    #[test]
    fn function_calls_become_tool_use_with_the_signature_in_the_id() {
        let out = message(json!({"candidates": [{"content": {"parts": [
            {"text": "planning", "thought": true},
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLzE+"},
            {"functionCall": {"name": "get_time"}}]}, "finishReason": "STOP"}]}));
        let content = out["content"].as_array().unwrap();
        assert_eq!(content.len(), 4);
        assert_eq!(content[0], json!({"type": "thinking", "thinking": "planning", "signature": ""}));
        assert_eq!(content[1], json!({"type": "text", "text": "Checking."}));
        assert_eq!(content[2]["type"], "tool_use");
        assert_eq!(content[2]["name"], "get_weather");
        assert_eq!(content[2]["input"], json!({"city": "Paris"}));
        assert_eq!(
            signature_from_tool_call_id(content[2]["id"].as_str().unwrap()).as_deref(),
            Some("c2lnLzE+")
        );
        assert_eq!(content[3]["input"], json!({}));
        assert_eq!(signature_from_tool_call_id(content[3]["id"].as_str().unwrap()), None);
        assert_ne!(content[2]["id"], content[3]["id"]);
        assert_eq!(out["stop_reason"], "tool_use");
    }

    #[test]
    fn stop_reasons() {
        let out = message(
            json!({"candidates": [{"content": {"parts": [{"text": "trunc"}]}, "finishReason": "MAX_TOKENS"}]}),
        );
        assert_eq!(out["stop_reason"], "max_tokens");
        let out = message(json!({"candidates": [{"finishReason": "SAFETY"}]}));
        assert_eq!(out["stop_reason"], "refusal");
        assert_eq!(out["content"], json!([]));
        let out = message(
            json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 9}}),
        );
        assert_eq!(out["stop_reason"], "refusal");
        assert_eq!(out["usage"]["input_tokens"], 9);
        let out = message(json!({}));
        assert_eq!(out["stop_reason"], "end_turn");
        assert_eq!(out["usage"]["output_tokens"], 0);
        assert!(out["stop_sequence"].is_null());
    }

    #[test]
    fn other_candidates_and_unknown_parts_are_ignored() {
        let out = message(json!({"candidates": [
            {"content": {"parts": [{"text": "B"}]}, "index": 1},
            {"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA"}}, {"text": "A"}]}, "index": 0}]}));
        assert_eq!(out["content"], json!([{"type": "text", "text": "A"}]));
    }
}
