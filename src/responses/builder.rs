//! Gemini answers -> a Responses `Response` object and, for streams, the documented event
//! sequence: `response.created`, `response.in_progress`, `response.output_item.added` /
//! `.done`, `response.content_part.added` / `.done`, `response.output_text.delta` / `.done`,
//! `response.reasoning_summary_part.*` / `response.reasoning_summary_text.*`,
//! `response.function_call_arguments.delta` / `.done`, then `response.completed` (or
//! `response.incomplete`) with `usage`, or `error` + `response.failed`; each with its
//! `sequence_number`. A whole answer goes through the same state machine (events not built), so
//! both forms give the same output items.
//!
//! Output items: thought summaries become a `reasoning` item; a part's `thoughtSignature` becomes
//! the `encrypted_content` of a `reasoning` item placed before the item of the part it came with
//! (after a message whose text was already streamed), and a signed function call's `call_id`
//! carries it too. Never does I/O, takes a lock, reads the clock (`created_at` and `completed_at`
//! are passed in) or draws randomness; never emits `null` where the schema allows none (`usage`
//! is absent until the end).

use serde_json::{Map, Value, json};

use crate::openai::response::{finish_reason, tool_call_id, usage_from_gemini};

/// An item being streamed.
enum Open {
    Reasoning { id: String, summary: String, part_started: bool, signature: Option<String> },
    Message { id: String, text: String },
}

/// One response's state, fed Gemini events in order.
pub struct ResponseBuilder {
    id: String,
    model: String,
    created_at: i64,
    echo: Map<String, Value>,
    namespaces: Vec<String>,
    /// Build stream events (false for a whole answer: only the final object is wanted).
    emit: bool,
    sequence: u64,
    started: bool,
    done: bool,
    output: Vec<Value>,
    open: Option<Open>,
    /// A signature that came with text of a message already open: placed after the message.
    trailing_signature: Option<String>,
    items_made: usize,
    calls: usize,
    usage: Option<Value>,
    finish: Option<String>,
    blocked: bool,
    last: Option<Value>,
}

/// One Responses stream event as SSE bytes (`event:` and `data:` lines).
pub fn sse(event: &Value) -> Vec<u8> {
    let kind = event.get("type").and_then(Value::as_str).unwrap_or("message");
    let data = event.to_string();
    let mut out = Vec::with_capacity(data.len() + kind.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
    out
}

impl ResponseBuilder {
    /// `id` is the response's (`resp_…`), `model` the one the client named; `echo` and
    /// `namespaces` come from the translated request.
    pub fn new(
        id: &str,
        model: &str,
        created_at: i64,
        echo: Map<String, Value>,
        namespaces: Vec<String>,
        emit: bool,
    ) -> ResponseBuilder {
        ResponseBuilder {
            id: id.to_owned(),
            model: model.to_owned(),
            created_at,
            echo,
            namespaces,
            emit,
            sequence: 0,
            started: false,
            done: false,
            output: Vec::new(),
            open: None,
            trailing_signature: None,
            items_made: 0,
            calls: 0,
            usage: None,
            finish: None,
            blocked: false,
            last: None,
        }
    }

    /// The finished response (after `finish` or `fail`).
    pub fn final_response(&self) -> Option<&Value> {
        self.last.as_ref()
    }

    /// The output items so far.
    pub fn output(&self) -> &[Value] {
        &self.output
    }

    fn push(&mut self, out: &mut Vec<Value>, mut event: Value) {
        if self.emit {
            event["sequence_number"] = json!(self.sequence);
            self.sequence += 1;
            out.push(event);
        }
    }

    fn item_id(&mut self, kind: &str) -> String {
        let base = self.id.strip_prefix("resp_").unwrap_or(&self.id);
        let id = format!("{kind}_{base}_{}", self.items_made);
        self.items_made += 1;
        id
    }

    /// The `Response` object with `status`; `usage` only when final.
    fn response(&self, status: &str, output: Vec<Value>, final_fields: Option<(i64, Value)>) -> Value {
        let mut r = self.echo.clone();
        r.insert("id".into(), json!(self.id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(self.created_at));
        r.insert("status".into(), json!(status));
        r.insert("model".into(), json!(self.model));
        r.insert("output".into(), Value::Array(output));
        r.insert("error".into(), Value::Null);
        r.insert("incomplete_details".into(), Value::Null);
        r.insert("completed_at".into(), Value::Null);
        if let Some((completed_at, usage)) = final_fields {
            if status == "completed" {
                r.insert("completed_at".into(), json!(completed_at));
            }
            r.insert("usage".into(), usage);
        }
        Value::Object(r)
    }

    /// `response.created` and `response.in_progress`, once (also what a keep-alive sends first).
    pub fn start(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        self.start_into(&mut out);
        out
    }

    fn start_into(&mut self, out: &mut Vec<Value>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.emit {
            let snapshot = self.response("in_progress", Vec::new(), None);
            self.push(out, json!({"type": "response.created", "response": snapshot.clone()}));
            self.push(out, json!({"type": "response.in_progress", "response": snapshot}));
        }
    }

    /// Feeds one Gemini `GenerateContentResponse`; returns the events to send now.
    pub fn feed(&mut self, event: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start_into(&mut out);
        if let Some(meta) = event.get("usageMetadata").filter(|m| m.is_object()) {
            self.usage = Some(meta.clone());
        }
        if crate::openai::response::prompt_blocked(event) {
            self.blocked = true;
        }
        let candidates = event.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        // A response has one answer: the candidate of index 0 (proto3 JSON omits a zero index).
        let Some(candidate) =
            candidates.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        else {
            return out;
        };
        let parts =
            candidate.pointer("/content/parts").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
        for part in parts {
            let signature = part.get("thoughtSignature").and_then(Value::as_str).filter(|s| !s.is_empty());
            if let Some(call) = part.get("functionCall") {
                self.close_message(&mut out);
                self.sign_next(signature, &mut out);
                self.close_reasoning(&mut out);
                self.function_call(call, signature, &mut out);
            } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                if part.get("thought").and_then(Value::as_bool) == Some(true) {
                    self.thought(text, signature, &mut out);
                } else {
                    self.text(text, signature, &mut out);
                }
            }
        }
        if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str).filter(|r| !r.is_empty())
        {
            self.finish = Some(reason.to_owned());
        }
        out
    }

    fn thought(&mut self, text: &str, signature: Option<&str>, out: &mut Vec<Value>) {
        self.close_message(out);
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            let id = self.item_id("rs");
            let index = self.output.len();
            self.push(
                out,
                json!({"type": "response.output_item.added", "output_index": index,
                "item": {"type": "reasoning", "id": id, "summary": []}}),
            );
            self.open =
                Some(Open::Reasoning { id, summary: String::new(), part_started: false, signature: None });
        }
        let index = self.output.len();
        let Some(Open::Reasoning { id, summary, part_started, signature: sig }) = &mut self.open else {
            return;
        };
        if sig.is_none() {
            *sig = signature.map(str::to_owned);
        }
        if text.is_empty() {
            return;
        }
        summary.push_str(text);
        let id = id.clone();
        let first = !*part_started;
        *part_started = true;
        if first {
            self.push(
                out,
                json!({"type": "response.reasoning_summary_part.added", "item_id": id,
                "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            );
        }
        self.push(
            out,
            json!({"type": "response.reasoning_summary_text.delta", "item_id": id,
            "output_index": index, "summary_index": 0, "delta": text}),
        );
    }

    fn text(&mut self, text: &str, signature: Option<&str>, out: &mut Vec<Value>) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            if text.is_empty() && signature.is_none() {
                return;
            }
            self.sign_next(signature, out);
            self.close_reasoning(out);
            if text.is_empty() {
                return;
            }
            let id = self.item_id("msg");
            let index = self.output.len();
            self.push(out, json!({"type": "response.output_item.added", "output_index": index,
                "item": {"id": id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}}));
            self.push(out, json!({"type": "response.content_part.added", "item_id": id, "output_index": index,
                "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}}));
            self.open = Some(Open::Message { id, text: String::new() });
        } else if let Some(sig) = signature {
            self.trailing_signature.get_or_insert_with(|| sig.to_owned());
        }
        let index = self.output.len();
        let Some(Open::Message { id, text: all }) = &mut self.open else { return };
        if text.is_empty() {
            return;
        }
        all.push_str(text);
        let id = id.clone();
        self.push(
            out,
            json!({"type": "response.output_text.delta", "item_id": id, "output_index": index,
            "content_index": 0, "delta": text, "logprobs": []}),
        );
    }

    /// A signature for the item about to open: on the open reasoning item if it has none, else
    /// on a reasoning item of its own.
    fn sign_next(&mut self, signature: Option<&str>, out: &mut Vec<Value>) {
        let Some(sig) = signature else { return };
        if let Some(Open::Reasoning { signature: slot @ None, .. }) = &mut self.open {
            *slot = Some(sig.to_owned());
            return;
        }
        self.close_reasoning(out);
        self.signature_item(sig, out);
    }

    /// A `reasoning` item that carries only a signature.
    fn signature_item(&mut self, sig: &str, out: &mut Vec<Value>) {
        let id = self.item_id("rs");
        let index = self.output.len();
        let item = json!({"type": "reasoning", "id": id, "summary": [], "encrypted_content": sig});
        self.push(
            out,
            json!({"type": "response.output_item.added", "output_index": index, "item": item.clone()}),
        );
        self.push(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item.clone()}),
        );
        self.output.push(item);
    }

    fn close_reasoning(&mut self, out: &mut Vec<Value>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            return;
        }
        let Some(Open::Reasoning { id, summary, part_started, signature }) = self.open.take() else { return };
        let index = self.output.len();
        if part_started {
            self.push(
                out,
                json!({"type": "response.reasoning_summary_text.done", "item_id": id,
                "output_index": index, "summary_index": 0, "text": summary}),
            );
            self.push(out, json!({"type": "response.reasoning_summary_part.done", "item_id": id,
                "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": summary}}));
        }
        let summary =
            if part_started { json!([{"type": "summary_text", "text": summary}]) } else { json!([]) };
        let mut item = json!({"type": "reasoning", "id": id, "summary": summary});
        if let Some(sig) = signature {
            item["encrypted_content"] = Value::String(sig);
        }
        self.push(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item.clone()}),
        );
        self.output.push(item);
    }

    fn close_message(&mut self, out: &mut Vec<Value>) {
        if !matches!(self.open, Some(Open::Message { .. })) {
            return;
        }
        let Some(Open::Message { id, text }) = self.open.take() else { return };
        let index = self.output.len();
        let part = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
        self.push(
            out,
            json!({"type": "response.output_text.done", "item_id": id, "output_index": index,
            "content_index": 0, "text": text, "logprobs": []}),
        );
        self.push(
            out,
            json!({"type": "response.content_part.done", "item_id": id, "output_index": index,
            "content_index": 0, "part": part.clone()}),
        );
        let item = json!({"id": id, "type": "message", "role": "assistant", "status": "completed", "content": [part]});
        self.push(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item.clone()}),
        );
        self.output.push(item);
        if let Some(sig) = self.trailing_signature.take() {
            self.signature_item(&sig, out);
        }
    }

    fn function_call(&mut self, call: &Value, signature: Option<&str>, out: &mut Vec<Value>) {
        let full = call.get("name").and_then(Value::as_str).unwrap_or_default();
        let arguments = match call.get("args") {
            Some(args) if !args.is_null() => serde_json::to_string(args).unwrap_or_else(|_| "{}".to_owned()),
            _ => "{}".to_owned(),
        };
        let call_id = tool_call_id(&self.id, 0, self.calls, signature);
        self.calls += 1;
        let id = self.item_id("fc");
        let index = self.output.len();
        let split = self.namespaces.iter().find_map(|ns| {
            full.strip_prefix(ns.as_str()).and_then(|r| r.strip_prefix('.')).map(|name| (ns.clone(), name))
        });
        let mut item = json!({"id": id, "type": "function_call", "call_id": call_id, "status": "in_progress",
            "name": split.as_ref().map_or(full, |(_, n)| n), "arguments": ""});
        if let Some((ns, _)) = &split {
            item["namespace"] = json!(ns);
        }
        self.push(
            out,
            json!({"type": "response.output_item.added", "output_index": index, "item": item.clone()}),
        );
        self.push(
            out,
            json!({"type": "response.function_call_arguments.delta", "item_id": id,
            "output_index": index, "delta": arguments}),
        );
        self.push(
            out,
            json!({"type": "response.function_call_arguments.done", "item_id": id,
            "output_index": index, "name": item["name"].clone(), "arguments": arguments}),
        );
        item["arguments"] = Value::String(arguments);
        item["status"] = json!("completed");
        self.push(
            out,
            json!({"type": "response.output_item.done", "output_index": index, "item": item.clone()}),
        );
        self.output.push(item);
    }

    fn usage(&self) -> Value {
        let u = usage_from_gemini(self.usage.as_ref().unwrap_or(&Value::Null));
        json!({"input_tokens": u.prompt_tokens,
               "input_tokens_details": {"cached_tokens": u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
                                        "cache_write_tokens": 0},
               "output_tokens": u.completion_tokens,
               "output_tokens_details": {"reasoning_tokens": u.completion_tokens_details.reasoning_tokens},
               "total_tokens": u.total_tokens})
    }

    /// The upstream ended cleanly: close what is open and send `response.completed` (or
    /// `response.incomplete` when the answer was cut by the token limit or a filter).
    pub fn finish(&mut self, completed_at: i64) -> Vec<Value> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start_into(&mut out);
        self.close_message(&mut out);
        self.close_reasoning(&mut out);
        self.done = true;
        let reason = match self.finish.as_deref().map(finish_reason) {
            _ if self.blocked => Some("content_filter"),
            Some("length") => Some("max_output_tokens"),
            Some("content_filter") => Some("content_filter"),
            _ => None,
        };
        let status = if reason.is_some() { "incomplete" } else { "completed" };
        let mut response = self.response(status, self.output.clone(), Some((completed_at, self.usage())));
        if let Some(reason) = reason {
            response["incomplete_details"] = json!({"reason": reason});
        }
        if self.emit {
            let kind = if reason.is_some() { "response.incomplete" } else { "response.completed" };
            self.push(&mut out, json!({"type": kind, "response": response.clone()}));
        }
        self.last = Some(response);
        out
    }

    /// The upstream broke or reported an error after the stream began: `error`, then
    /// `response.failed` with what was produced so far.
    pub fn fail(&mut self, message: &str) -> Vec<Value> {
        let mut out = Vec::new();
        if self.done {
            return out;
        }
        self.start_into(&mut out);
        self.done = true;
        self.push(
            &mut out,
            json!({"type": "error", "code": "server_error", "message": message, "param": null}),
        );
        let mut response = self.response("failed", self.output.clone(), None);
        response["error"] = json!({"code": "server_error", "message": message});
        self.push(&mut out, json!({"type": "response.failed", "response": response.clone()}));
        self.last = Some(response);
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::openai::test_support::assert_valid_response;

    fn builder(emit: bool) -> ResponseBuilder {
        let call = crate::responses::responses_request_to_gemini(
            &json!({"model": "gemini-2.5-flash", "input": "x", "metadata": {"k": "v"},
                    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]}),
            &[],
        )
        .unwrap();
        ResponseBuilder::new("resp_abc", "gpt-5", 1_700_000_000, call.echo, Vec::new(), emit)
    }

    /// Every event valid and numbered in order; the last one's response, valid too.
    fn run(events: &[Value]) -> (Vec<Value>, Value) {
        let mut b = builder(true);
        let mut all: Vec<Value> = events.iter().flat_map(|e| b.feed(e)).collect();
        all.extend(b.finish(1_700_000_009));
        assert!(b.finish(0).is_empty(), "finish is idempotent");
        for (n, e) in all.iter().enumerate() {
            assert_valid_response("event", e);
            assert_valid_response("ResponseStreamEvent", e);
            assert_eq!(e["sequence_number"], n as u64);
        }
        assert!(all[0]["response"].get("usage").is_none(), "no usage before the end");
        let last = b.final_response().unwrap().clone();
        assert_valid_response("Response", &last);
        assert_eq!(all.last().unwrap()["response"], last);
        // The whole answer through the same machine gives the same object.
        (all, last)
    }

    fn kinds(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    fn text_event(text: &str, finish: Option<&str>) -> Value {
        let mut c = json!({"content": {"role": "model", "parts": [{"text": text}]}});
        if let Some(f) = finish {
            c["finishReason"] = json!(f);
        }
        json!({"candidates": [c], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 3,
            "thoughtsTokenCount": 2, "cachedContentTokenCount": 1, "totalTokenCount": 9}})
    }

    #[test]
    fn streamed_text_is_the_documented_sequence() {
        let (events, last) = run(&[text_event("Hel", None), text_event("lo", Some("STOP"))]);
        assert_eq!(
            kinds(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(events[6]["text"], "Hello");
        assert_eq!(last["status"], "completed");
        assert_eq!(last["model"], "gpt-5");
        assert_eq!(last["metadata"], json!({"k": "v"}));
        assert_eq!(last["completed_at"], 1_700_000_009);
        assert_eq!(last["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(
            last["usage"],
            json!({"input_tokens": 4, "input_tokens_details": {"cached_tokens": 1, "cache_write_tokens": 0},
            "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 9})
        );
    }

    #[test]
    fn thoughts_then_a_signed_function_call() {
        let events = [
            json!({"candidates": [{"content": {"parts": [{"text": "Planning.", "thought": true}]}}]}),
            json!({"candidates": [{"content": {"parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "U0lH"},
                {"functionCall": {"name": "get_time", "args": {}}}]}, "finishReason": "STOP"}]}),
        ];
        let (events, last) = run(&events);
        assert!(kinds(&events).contains(&"response.reasoning_summary_text.delta"));
        assert!(kinds(&events).contains(&"response.function_call_arguments.done"));
        let out = last["output"].as_array().unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["type"], "reasoning");
        assert_eq!(out[0]["summary"][0]["text"], "Planning.");
        assert_eq!(out[0]["encrypted_content"], "U0lH");
        assert_eq!(
            (out[1]["name"].as_str(), out[1]["arguments"].as_str()),
            (Some("get_weather"), Some("{\"city\":\"Paris\"}"))
        );
        let sig_in_id =
            crate::openai::response::signature_from_tool_call_id(out[1]["call_id"].as_str().unwrap());
        assert_eq!(sig_in_id.as_deref(), Some("U0lH"));
        assert!(out[2].get("encrypted_content").is_none());
        assert_ne!(out[1]["call_id"], out[2]["call_id"]);
    }

    #[test]
    fn a_signature_on_streamed_text_follows_the_message() {
        let (_, last) = run(&[
            text_event("Hi", None),
            json!({"candidates": [{"content": {"parts": [{"text": "", "thoughtSignature": "VEVYVA=="}]}, "finishReason": "STOP"}]}),
        ]);
        let out = last["output"].as_array().unwrap();
        assert_eq!((out[0]["type"].as_str(), out[1]["type"].as_str()), (Some("message"), Some("reasoning")));
        assert_eq!(out[1]["encrypted_content"], "VEVYVA==");
    }

    #[test]
    fn incomplete_blocked_and_failed() {
        let (events, last) = run(&[text_event("cut", Some("MAX_TOKENS"))]);
        assert_eq!(events.last().unwrap()["type"], "response.incomplete");
        assert_eq!(
            (last["status"].as_str(), &last["incomplete_details"]),
            (Some("incomplete"), &json!({"reason": "max_output_tokens"}))
        );
        let (_, last) = run(&[json!({"promptFeedback": {"blockReason": "SAFETY"}})]);
        assert_eq!(last["incomplete_details"]["reason"], "content_filter");
        assert_eq!(last["output"], json!([]));
        let mut b = builder(true);
        let mut all = b.feed(&text_event("par", None));
        all.extend(b.fail("The upstream connection broke mid-stream"));
        assert!(b.finish(1).is_empty() && b.fail("again").is_empty());
        for e in &all {
            assert_valid_response("event", e);
        }
        assert_eq!(kinds(&all[all.len() - 2..]), ["error", "response.failed"]);
        assert_eq!(all.last().unwrap()["response"]["error"]["code"], "server_error");
    }

    #[test]
    fn a_whole_answer_builds_no_events_and_the_same_output() {
        let answer = json!({"candidates": [{"content": {"parts": [{"text": "think", "thought": true},
            {"text": "Hello"}, {"text": " world"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2, "totalTokenCount": 4}});
        let mut whole = builder(false);
        assert!(whole.feed(&answer).is_empty());
        assert!(whole.finish(5).is_empty());
        let whole = whole.final_response().unwrap().clone();
        assert_valid_response("Response", &whole);
        let (_, streamed) = run(&[answer]);
        assert_eq!(whole["output"], streamed["output"]);
        assert_eq!(whole["output"][1]["content"][0]["text"], "Hello world");
    }

    #[test]
    fn namespaced_calls_are_split_back() {
        let mut b = ResponseBuilder::new("resp_n", "m", 0, Map::new(), vec!["mcp__docs".into()], false);
        b.feed(&json!({"candidates": [{"content": {"parts": [{"functionCall": {"name": "mcp__docs.search", "args": {"q": "x"}}}]}}]}));
        b.finish(1);
        let item = &b.final_response().unwrap()["output"][0];
        assert_eq!((item["namespace"].as_str(), item["name"].as_str()), (Some("mcp__docs"), Some("search")));
    }
}
