//! Streaming translation: Gemini `streamGenerateContent?alt=sse` events -> OpenAI
//! `chat.completion.chunk` objects, as a small state machine fed one parsed `data:` JSON at a time.
//!
//! Owns: per-choice state (role sent, tool calls seen, finish sent), the last usage seen, and the
//! shape of every chunk. Emits each delta as soon as the event carrying it is fed (never buffers to
//! the end); `finish()` closes every open choice and adds the usage chunk when asked for.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness: the stream `id` and `created`
//! timestamp are passed in, and SSE framing (`data: ...\n\n`, `data: [DONE]`) is the caller's.

use serde_json::Value;

use super::error::openai_error_body;
use super::response::{
    candidate_indices, finish_reason, openai_tool_call, prompt_blocked, split_parts, usage_from_gemini,
};
use super::types::{ChatCompletionChunk, ChunkChoice, Delta, Usage, to_json};

#[derive(Debug, Clone)]
struct ChoiceState {
    index: u64,
    role_sent: bool,
    tool_calls: usize,
    finish_sent: bool,
}

/// Translates one Gemini stream into OpenAI chunks.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    model: String,
    id: String,
    created: i64,
    include_usage: bool,
    choices: Vec<ChoiceState>,
    usage: Option<Usage>,
    finished: bool,
}

impl StreamTranslator {
    /// One translator per response: every chunk carries this `id`, `created` and `model`.
    pub fn new(model: &str, id: &str, created: i64, include_usage: bool) -> Self {
        StreamTranslator {
            model: model.to_owned(),
            id: id.to_owned(),
            created,
            include_usage,
            choices: Vec::new(),
            usage: None,
            finished: false,
        }
    }

    /// The usage seen last (Gemini repeats cumulative `usageMetadata` on its events).
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    fn state(&mut self, index: u64) -> &mut ChoiceState {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                self.choices.push(ChoiceState { index, role_sent: false, tool_calls: 0, finish_sent: false });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>) -> Value {
        let usage = match (self.include_usage, usage) {
            (false, _) => None,
            (true, u) => Some(u),
        };
        to_json(&ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        })
    }

    fn choice_chunk(&self, index: u64, delta: Delta, finish: Option<&'static str>) -> Value {
        self.chunk(vec![ChunkChoice { index, delta, logprobs: None, finish_reason: finish }], None)
    }

    /// The closing chunk of a choice: an empty delta (or the role, if nothing was sent yet) and
    /// the finish reason.
    fn finish_chunk(&mut self, index: u64, reason: &'static str) -> Value {
        let st = self.state(index);
        let delta = if st.role_sent {
            Delta::default()
        } else {
            Delta { role: Some("assistant"), content: Some(String::new()), ..Delta::default() }
        };
        st.role_sent = true;
        st.finish_sent = true;
        self.choice_chunk(index, delta, Some(reason))
    }

    /// Feeds one upstream event (a `GenerateContentResponse`); returns the chunks to send now.
    pub fn feed(&mut self, event: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        if let Some(meta) = event.get("usageMetadata").filter(|m| m.is_object()) {
            self.usage = Some(usage_from_gemini(meta));
        }
        let candidates = event.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        if candidates.is_empty() && prompt_blocked(event) && !self.state(0).finish_sent {
            out.push(self.finish_chunk(0, "content_filter"));
            return out;
        }
        for (candidate, index) in candidates.iter().zip(candidate_indices(candidates)) {
            if self.state(index).finish_sent {
                continue;
            }
            let parts = split_parts(candidate);
            let first_call = self.state(index).tool_calls;
            let tool_calls: Vec<_> = parts
                .calls
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    openai_tool_call(&self.id, index, first_call + k, c, Some((first_call + k) as u64))
                })
                .collect();
            let mut delta = Delta {
                role: None,
                content: parts.text.filter(|t| !t.is_empty()),
                reasoning_content: parts.reasoning.filter(|t| !t.is_empty()),
                tool_calls,
            };
            if delta.content.is_some() || delta.reasoning_content.is_some() || !delta.tool_calls.is_empty() {
                let st = self.state(index);
                if !st.role_sent {
                    delta.role = Some("assistant");
                    st.role_sent = true;
                }
                st.tool_calls += delta.tool_calls.len();
                out.push(self.choice_chunk(index, delta, None));
            }
            if let Some(reason) =
                candidate.get("finishReason").and_then(Value::as_str).filter(|r| !r.is_empty())
            {
                let reason =
                    if self.state(index).tool_calls > 0 { "tool_calls" } else { finish_reason(reason) };
                out.push(self.finish_chunk(index, reason));
            }
        }
        out
    }

    /// Closes the stream: a finish chunk for every choice that has none yet (`stop`, or
    /// `tool_calls` when it called a tool; choice 0 when upstream sent nothing at all), then, with
    /// `include_usage`, the chunk with `choices: []` and the last usage seen. The caller then
    /// writes `data: [DONE]`. A second call returns nothing.
    pub fn finish(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.finished = true;
        if self.choices.is_empty() {
            self.state(0);
        }
        let open: Vec<(u64, &'static str)> = self
            .choices
            .iter()
            .filter(|c| !c.finish_sent)
            .map(|c| (c.index, if c.tool_calls > 0 { "tool_calls" } else { "stop" }))
            .collect();
        for (index, reason) in open {
            out.push(self.finish_chunk(index, reason));
        }
        if self.include_usage {
            out.push(self.chunk(Vec::new(), Some(self.usage.clone().unwrap_or_default())));
        }
        out
    }

    /// OpenAI-shaped `{"error":{...}}` event for a failure after the stream has begun
    /// (`type: "server_error"`).
    pub fn error_event(message: &str) -> Value {
        openai_error_body(500, message, None, None)
    }

    /// Like [`StreamTranslator::error_event`], typed after the upstream status that ended the
    /// stream (429 -> `requests`, 4xx -> `invalid_request_error`, 5xx -> `server_error`).
    pub fn error_event_for_status(status: u16, message: &str) -> Value {
        openai_error_body(status, message, None, None)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::response::signature_from_tool_call_id;
    use super::super::test_support::assert_valid;
    use super::*;

    /// Feeds every event, then finishes; returns (chunks emitted per feed, chunks from finish),
    /// each validated against the published chunk schema and checked for one id/created/model.
    fn run(events: &[Value], include_usage: bool) -> (Vec<Vec<Value>>, Vec<Value>) {
        let mut t = StreamTranslator::new("gemini-2.5-flash", "chatcmpl-s", 1_700_000_123, include_usage);
        let per_feed: Vec<Vec<Value>> = events.iter().map(|e| t.feed(e)).collect();
        let tail = t.finish();
        assert!(t.finish().is_empty(), "finish is idempotent");
        for c in per_feed.iter().flatten().chain(tail.iter()) {
            assert_valid("CreateChatCompletionStreamResponse", c);
            assert_eq!(c["id"], "chatcmpl-s");
            assert_eq!(c["created"], 1_700_000_123);
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "gemini-2.5-flash");
            if include_usage {
                assert!(c.get("usage").is_some(), "usage present (null or totals) on every chunk");
            } else {
                assert!(c.get("usage").is_none());
            }
        }
        (per_feed, tail)
    }

    fn text_event(text: &str, finish: Option<&str>) -> Value {
        let mut cand = json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
        if let Some(f) = finish {
            cand["finishReason"] = json!(f);
        }
        json!({"candidates": [cand], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
               "modelVersion": "gemini-2.5-flash", "responseId": "abc"})
    }

    #[test]
    fn three_text_events() {
        let events = [text_event("Hel", None), text_event("lo, ", None), text_event("world", Some("STOP"))];
        let (per_feed, tail) = run(&events, false);
        assert_eq!(per_feed[0].len(), 1);
        assert_eq!(per_feed[0][0]["choices"][0]["delta"], json!({"role": "assistant", "content": "Hel"}));
        assert!(per_feed[0][0]["choices"][0]["finish_reason"].is_null());
        assert_eq!(per_feed[1][0]["choices"][0]["delta"], json!({"content": "lo, "}));
        // Last event: its text, then the finish chunk.
        assert_eq!(per_feed[2].len(), 2);
        assert_eq!(per_feed[2][0]["choices"][0]["delta"], json!({"content": "world"}));
        assert_eq!(per_feed[2][1]["choices"][0]["delta"], json!({}));
        assert_eq!(per_feed[2][1]["choices"][0]["finish_reason"], "stop");
        assert!(tail.is_empty(), "nothing left to close: {tail:?}");
    }

    #[test]
    fn include_usage_adds_a_final_usage_chunk() {
        let events = [text_event("Hi", None), text_event("!", Some("STOP"))];
        let (per_feed, tail) = run(&events, true);
        assert!(per_feed[0][0]["usage"].is_null());
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0]["choices"], json!([]));
        assert_eq!(tail[0]["usage"]["prompt_tokens"], 4);
        assert_eq!(tail[0]["usage"]["completion_tokens"], 2);
        assert_eq!(tail[0]["usage"]["total_tokens"], 6);
    }

    #[test]
    fn thinking_then_text() {
        let events = [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "**Planning** I will add.", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "2 + 2 = 4"}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP"}],
                   "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 7, "thoughtsTokenCount": 20, "totalTokenCount": 35}}),
        ];
        let (per_feed, tail) = run(&events, true);
        assert_eq!(
            per_feed[0][0]["choices"][0]["delta"],
            json!({"role": "assistant", "reasoning_content": "**Planning** I will add."})
        );
        assert_eq!(per_feed[1][0]["choices"][0]["delta"], json!({"content": "2 + 2 = 4"}));
        // The empty text part emits nothing; only the finish chunk.
        assert_eq!(per_feed[2].len(), 1);
        assert_eq!(per_feed[2][0]["choices"][0]["finish_reason"], "stop");
        let usage = &tail.last().unwrap()["usage"];
        assert_eq!(usage["completion_tokens"], 27);
        assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 20);
    }

    #[test]
    fn thought_and_text_in_one_event_share_one_delta() {
        let events = [json!({"candidates": [{"content": {"role": "model", "parts": [
            {"text": "hmm", "thought": true}, {"text": "Answer"}]}, "finishReason": "STOP"}]})];
        let (per_feed, _) = run(&events, false);
        assert_eq!(
            per_feed[0][0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": "Answer", "reasoning_content": "hmm"})
        );
        assert_eq!(per_feed[0][1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn function_call_with_thought_signature() {
        let events = [
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "CiQBcsjafE+7"}]}}]}),
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_time", "args": {"tz": "CET"}}}]}, "finishReason": "STOP"}]}),
        ];
        let (per_feed, tail) = run(&events, false);
        let d0 = &per_feed[0][0]["choices"][0]["delta"];
        assert_eq!(d0["role"], "assistant");
        let call0 = &d0["tool_calls"][0];
        assert_eq!(call0["index"], 0);
        assert_eq!(call0["type"], "function");
        assert_eq!(call0["function"]["name"], "get_weather");
        assert_eq!(call0["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(call0["extra_content"]["google"]["thought_signature"], "CiQBcsjafE+7");
        assert_eq!(
            signature_from_tool_call_id(call0["id"].as_str().unwrap()).as_deref(),
            Some("CiQBcsjafE+7")
        );
        // The second call continues the numbering in a later event.
        let call1 = &per_feed[1][0]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call1["index"], 1);
        assert!(per_feed[1][0]["choices"][0]["delta"].get("role").is_none());
        assert_ne!(call0["id"], call1["id"]);
        // Same ids as the non-streaming translation would give.
        assert_eq!(call1["id"], super::super::response::tool_call_id("chatcmpl-s", 0, 1, None));
        assert_eq!(per_feed[1][1]["choices"][0]["finish_reason"], "tool_calls");
        assert!(tail.is_empty());
    }

    #[test]
    fn blocked_prompt() {
        let events = [json!({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                             "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}})];
        let (per_feed, tail) = run(&events, true);
        assert_eq!(per_feed[0].len(), 1);
        let choice = &per_feed[0][0]["choices"][0];
        assert_eq!(choice["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(choice["finish_reason"], "content_filter");
        assert_eq!(tail.len(), 1, "only the usage chunk remains");
        assert_eq!(tail[0]["usage"]["prompt_tokens"], 9);
    }

    #[test]
    fn two_candidates_stream_as_two_choices() {
        let events = [
            json!({"candidates": [
                {"content": {"role": "model", "parts": [{"text": "A1"}]}},
                {"content": {"role": "model", "parts": [{"text": "B1"}]}, "index": 1}]}),
            json!({"candidates": [
                {"content": {"role": "model", "parts": [{"text": "B2"}]}, "index": 1, "finishReason": "MAX_TOKENS"}]}),
            json!({"candidates": [
                {"content": {"role": "model", "parts": [{"text": "A2"}]}, "finishReason": "STOP"}]}),
        ];
        let (per_feed, tail) = run(&events, false);
        assert_eq!(per_feed[0].len(), 2);
        assert_eq!(per_feed[0][0]["choices"][0]["index"], 0);
        assert_eq!(per_feed[0][0]["choices"][0]["delta"], json!({"role": "assistant", "content": "A1"}));
        assert_eq!(per_feed[0][1]["choices"][0]["index"], 1);
        assert_eq!(per_feed[0][1]["choices"][0]["delta"], json!({"role": "assistant", "content": "B1"}));
        assert_eq!(per_feed[1][0]["choices"][0]["delta"], json!({"content": "B2"}));
        assert_eq!(per_feed[1][1]["choices"][0]["index"], 1);
        assert_eq!(per_feed[1][1]["choices"][0]["finish_reason"], "length");
        assert_eq!(per_feed[2][1]["choices"][0]["index"], 0);
        assert_eq!(per_feed[2][1]["choices"][0]["finish_reason"], "stop");
        assert!(tail.is_empty());
    }

    #[test]
    fn finish_closes_open_choices_and_empty_streams() {
        // Upstream stopped without a finishReason.
        let (_, tail) = run(&[text_event("partial", None)], false);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(tail[0]["choices"][0]["delta"], json!({}));
        // Upstream sent nothing usable at all.
        let (_, tail) = run(&[json!({}), json!(null), json!({"candidates": 3})], true);
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
        assert_eq!(tail[0]["choices"][0]["finish_reason"], "stop");
        assert_eq!(tail[1]["usage"]["total_tokens"], 0);
    }

    #[test]
    fn events_after_finish_are_ignored() {
        let mut t = StreamTranslator::new("m", "id", 0, false);
        assert_eq!(t.feed(&text_event("a", Some("STOP"))).len(), 2);
        assert!(t.feed(&text_event("late", None)).is_empty(), "choice already finished");
        t.finish();
        assert!(t.feed(&text_event("later", None)).is_empty());
    }

    #[test]
    fn mid_stream_error_event() {
        let e = StreamTranslator::error_event("upstream connection reset");
        assert_valid("ErrorResponse", &e);
        assert_eq!(e["error"]["type"], "server_error");
        assert_eq!(e["error"]["message"], "upstream connection reset");
        let e = StreamTranslator::error_event_for_status(429, "quota");
        assert_eq!(e["error"]["type"], "requests");
    }
}
