//! Streaming translation: Gemini `streamGenerateContent?alt=sse` events -> Anthropic Messages
//! stream events, as a small state machine fed one parsed `data:` JSON at a time.
//!
//! Event order, as Anthropic documents it: `message_start`; then per block `content_block_start`,
//! `content_block_delta`s, `content_block_stop` (a change of block type closes the open block);
//! then `message_delta` (stop reason, cumulative usage) and `message_stop`. `ping` may come anywhere
//! after `message_start`. Deltas go out as soon as the event carrying them is fed.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness: the message id is passed in;
//! the caller writes each event with [`sse`].

use serde_json::{Value, json};

use super::blocks::{BlockBuilder, Event};
use super::error::anthropic_error_body;
use super::parts::{Usage, candidate_parts, first_candidate, pieces, prompt_blocked, stop_reason};

/// `event: NAME\ndata: JSON\n\n`
pub fn sse(name: &str, data: &Value) -> Vec<u8> {
    format!("event: {name}\ndata: {data}\n\n").into_bytes()
}

/// Translates one Gemini stream into Anthropic stream events.
#[derive(Debug, Clone)]
pub struct MessagesStream {
    model: String,
    id: String,
    blocks: BlockBuilder,
    usage: Usage,
    finish_reason: Option<String>,
    blocked: bool,
    started: bool,
    finished: bool,
}

impl MessagesStream {
    /// One translator per answer: `message_start` names this `model` and `id`.
    pub fn new(model: &str, id: &str) -> Self {
        MessagesStream {
            model: model.to_owned(),
            id: id.to_owned(),
            blocks: BlockBuilder::new(id),
            usage: Usage::default(),
            finish_reason: None,
            blocked: false,
            started: false,
            finished: false,
        }
    }

    /// `message_start`, unless it went out already. `feed` and `finish` send it themselves (the
    /// first event usually brings the prompt token count); call this to begin the stream earlier,
    /// e.g. before a `ping` sent while upstream is still silent.
    pub fn start(&mut self) -> Vec<Event> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        let message = json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": self.usage.to_json(0),
        });
        vec![("message_start".into(), json!({"type": "message_start", "message": message}))]
    }

    /// True once `message_start` went out.
    pub fn started(&self) -> bool {
        self.started
    }

    /// Feeds one upstream event (a `GenerateContentResponse`); returns the events to send now.
    pub fn feed(&mut self, event: &Value) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        if let Some(meta) = event.get("usageMetadata").filter(|m| m.is_object()) {
            self.usage = Usage::from_gemini(meta);
        }
        let mut out = self.start();
        let candidate = first_candidate(event);
        if candidate.is_none() && prompt_blocked(event) {
            self.blocked = true;
        }
        let Some(candidate) = candidate else { return out };
        for part in candidate_parts(candidate) {
            for piece in pieces(part) {
                self.blocks.push(piece, &mut out);
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str).filter(|r| !r.is_empty())
        {
            self.finish_reason = Some(reason.to_owned());
        }
        out
    }

    /// Ends the stream: closes the open block, then `message_delta` (stop reason, usage) and
    /// `message_stop`. A second call returns nothing.
    pub fn finish(&mut self) -> Vec<Event> {
        if self.finished {
            return Vec::new();
        }
        let mut out = self.start();
        self.finished = true;
        self.blocks.close(&mut out);
        let stop = if self.blocks.tool_uses() > 0 {
            "tool_use"
        } else if self.blocked {
            "refusal"
        } else {
            stop_reason(self.finish_reason.as_deref())
        };
        out.push((
            "message_delta".into(),
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                   "usage": self.usage.to_json(self.usage.output)}),
        ));
        out.push(("message_stop".into(), json!({"type": "message_stop"})));
        out
    }

    /// `ping`, for upstream silence (after `message_start`).
    pub fn ping() -> Event {
        ("ping".into(), json!({"type": "ping"}))
    }

    /// The `error` event for a failure after the stream began (`api_error`).
    pub fn error_event(message: &str) -> Event {
        Self::error_event_for_status(500, message)
    }

    /// Like [`MessagesStream::error_event`], typed after the upstream status that ended the stream
    /// (429 `rate_limit_error`, 503 `overloaded_error` ...).
    pub fn error_event_for_status(status: u16, message: &str) -> Event {
        ("error".into(), anthropic_error_body(status, message))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::openai::response::signature_from_tool_call_id;

    use super::super::blocks::fold;
    use super::super::response::gemini_response_to_message;
    use super::*;

    fn run(events: &[Value]) -> Vec<Event> {
        let mut s = MessagesStream::new("claude-x", "msg_s");
        let mut out: Vec<Event> = events.iter().flat_map(|e| s.feed(e)).collect();
        out.extend(s.finish());
        assert!(s.finish().is_empty(), "finish is idempotent");
        assert!(s.feed(&events[0]).is_empty(), "nothing after finish");
        check_order(&out);
        out
    }

    /// Anthropic's grammar: message_start (block_start delta* block_stop)* message_delta message_stop,
    /// indices counting from 0, every event's `type` equal to its name.
    fn check_order(events: &[Event]) {
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
        assert_eq!(&names[names.len() - 2..], &["message_delta", "message_stop"], "{names:?}");
        let mut open: Option<u64> = None;
        let mut next = 0;
        for (name, data) in &events[1..events.len() - 2] {
            let index = data["index"].as_u64().unwrap();
            match name.as_str() {
                "content_block_start" => {
                    assert_eq!(open, None, "{names:?}");
                    assert_eq!(index, next);
                    open = Some(index);
                    next += 1;
                }
                "content_block_delta" => assert_eq!(open, Some(index), "{names:?}"),
                "content_block_stop" => {
                    assert_eq!(open, Some(index), "{names:?}");
                    open = None;
                }
                other => panic!("unexpected {other} in {names:?}"),
            }
        }
        assert_eq!(open, None);
        for (name, data) in events {
            assert_eq!(data["type"], name.as_str());
        }
    }

    fn names(events: &[Event]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn chunk(parts: Value, finish: Option<&str>) -> Value {
        let mut c = json!({"content": {"role": "model", "parts": parts}});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        json!({"candidates": [c], "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 3, "thoughtsTokenCount": 4}})
    }

    #[test]
    fn text_only() {
        let out = run(&[
            chunk(json!([{"text": "Hel"}]), None),
            chunk(json!([{"text": "lo"}]), None),
            chunk(json!([{"text": "!"}]), Some("STOP")),
        ]);
        assert_eq!(
            names(&out),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(
            out[0].1,
            json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant",
                "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 0}}})
        );
        assert_eq!(out[1].1["content_block"], json!({"type": "text", "text": ""}));
        assert_eq!(out[2].1["delta"], json!({"type": "text_delta", "text": "Hel"}));
        assert_eq!(
            out[6].1,
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                   "usage": {"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 7}})
        );
        assert_eq!(out[7].1, json!({"type": "message_stop"}));
    }

    #[test]
    fn thinking_then_text() {
        let out = run(&[
            chunk(json!([{"text": "**Plan** add", "thought": true}]), None),
            chunk(json!([{"text": " numbers", "thought": true}]), None),
            chunk(json!([{"text": "4", "thoughtSignature": "c2ln"}]), None),
            chunk(json!([{"text": ""}]), Some("STOP")),
        ]);
        assert_eq!(
            names(&out),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(out[1].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
        assert_eq!(out[2].1["delta"], json!({"type": "thinking_delta", "thinking": "**Plan** add"}));
        assert_eq!(out[4].1["delta"], json!({"type": "signature_delta", "signature": "c2ln"}));
        assert_eq!(out[6].1["index"], 1);
        assert_eq!(out[7].1["delta"], json!({"type": "text_delta", "text": "4"}));
    }

    #[test]
    fn a_function_call() {
        let out = run(&[
            chunk(json!([{"text": "Let me look.", "thought": true}]), None),
            chunk(
                json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLzE+"}]),
                Some("STOP"),
            ),
        ]);
        assert_eq!(
            names(&out),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let block = &out[4].1["content_block"];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"], json!({}));
        assert_eq!(signature_from_tool_call_id(block["id"].as_str().unwrap()).as_deref(), Some("c2lnLzE+"));
        assert_eq!(
            out[5].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"city\":\"Paris\"}"})
        );
        assert_eq!(out[7].1["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn stream_and_whole_message_agree() {
        let parts = json!([
            {"text": "hmm", "thought": true},
            {"text": "A", "thoughtSignature": "c2lnMQ=="},
            {"functionCall": {"name": "f", "args": {"x": [1, 2]}}, "thoughtSignature": "c2lnMg=="},
            {"functionCall": {"name": "g"}},
            {"text": "B"}, {"text": "", "thoughtSignature": "c2lnMw=="}]);
        let whole = gemini_response_to_message(&chunk(parts.clone(), Some("STOP")), "claude-x", "msg_s");
        let events =
            run(&parts.as_array().unwrap().iter().map(|p| chunk(json!([p]), None)).collect::<Vec<_>>());
        let streamed = fold(&events[1..events.len() - 2]);
        assert_eq!(Value::Array(streamed), whole["content"]);
        assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], whole["stop_reason"]);
    }

    #[test]
    fn max_tokens_blocked_and_empty_streams() {
        let out = run(&[chunk(json!([{"text": "trunc"}]), Some("MAX_TOKENS"))]);
        assert_eq!(out[out.len() - 2].1["delta"]["stop_reason"], "max_tokens");
        let out = run(&[
            json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}),
        ]);
        assert_eq!(names(&out), ["message_start", "message_delta", "message_stop"]);
        assert_eq!(out[1].1["delta"]["stop_reason"], "refusal");
        assert_eq!(out[1].1["usage"]["input_tokens"], 3);
        // Nothing fed at all.
        let mut s = MessagesStream::new("m", "msg_e");
        let out = s.finish();
        assert_eq!(names(&out), ["message_start", "message_delta", "message_stop"]);
        assert_eq!(out[1].1["delta"]["stop_reason"], "end_turn");
    }

    #[test]
    fn start_ping_error_and_framing() {
        let mut s = MessagesStream::new("m", "msg_p");
        assert_eq!(names(&s.start()), ["message_start"]);
        assert!(s.started());
        assert!(s.start().is_empty());
        let fed = s.feed(&chunk(json!([{"text": "x"}]), None));
        assert_eq!(names(&fed), ["content_block_start", "content_block_delta"], "message_start not repeated");
        let (name, ping) = MessagesStream::ping();
        assert_eq!((name.as_str(), ping), ("ping", json!({"type": "ping"})));
        let (name, err) = MessagesStream::error_event("upstream reset");
        assert_eq!(name, "error");
        assert_eq!(
            err,
            json!({"type": "error", "error": {"type": "api_error", "message": "upstream reset"}})
        );
        assert_eq!(
            MessagesStream::error_event_for_status(503, "busy").1["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(
            sse("ping", &json!({"type": "ping"})),
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n".to_vec()
        );
    }
}
