//! The OpenAI Responses routes (SPEC §12): `POST /v1/responses` (streamed or not),
//! `GET /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and `DELETE /v1/responses/{id}`,
//! served through the key pool.
//!
//! This module does the I/O around the pure core in `responses/`: it reads the request, looks up
//! the stored previous response, resolves the model alias, asks `upstream` for an answer (the same
//! `generate` call, retries, usage books and error mapping as the chat route), writes the
//! `Response` or the stream events through the shared relay (`: keep-alive` comments while the
//! upstream is silent), and keeps finished answers in the bounded `response_store`. It never
//! builds an error body itself: errors go back as `ProxyError`, shaped once in `error.rs`.

use std::time::Instant;

use chrono::Utc;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ProxyError, Reply};
use crate::openai_api::{apply_alias, generate, json_body, new_id, read_json_answer, translate_error};
use crate::relay;
use crate::responses::{self, ResponseBuilder, ResponsesCall};
use crate::server::Exchange;

fn not_found(id: &str) -> ProxyError {
    ProxyError::NotFound { message: format!("Response with id '{id}' not found.") }
}

/// `POST /v1/responses`.
pub fn create(app: &App, ex: &mut Exchange) -> Result<(), ProxyError> {
    let mut req = json_body(ex, app)?;
    let history = match responses::previous_response_id(&req).map_err(translate_error)? {
        Some(id) => Some(app.responses.get(id, Instant::now()).ok_or_else(|| ProxyError::NotFound {
            message: format!("Previous response with id '{id}' not found (previous_response_id)."),
        })?),
        None => None,
    };
    let asked = req.get("model").and_then(Value::as_str).map(str::to_owned);
    apply_alias(app, &mut req);
    let history_items = history.as_ref().map_or(&[][..], |h| h.items.as_slice());
    let call = responses::responses_request_to_gemini(&req, history_items).map_err(translate_error)?;
    drop(history);
    let asked = asked.unwrap_or_else(|| call.model.clone());
    ex.record.model = Some(call.model.clone());
    let (answer, used) = generate(app, ex, &call.model, call.stream, &call.body)?;
    // A fallback model served it: the answer names that model (SPEC §14).
    let asked = used.fallback.as_ref().map_or(asked, |f| f.to.clone());
    let id = new_id("resp").replace('-', "_");
    let ResponsesCall { model, stream, store, echo, items, namespaces, .. } = call;
    let mut builder = ResponseBuilder::new(&id, &asked, Utc::now().timestamp(), echo, namespaces, stream);
    if !stream {
        let answer = read_json_answer(answer)?;
        app.record_success(&used, Some(&model), crate::usage::tokens(&answer).unwrap_or(0));
        builder.feed(&answer);
        builder.finish(Utc::now().timestamp());
        let response = builder.final_response().cloned().unwrap_or(Value::Null);
        // Kept before it is answered: a client may continue it (`previous_response_id`) at once.
        keep(app, store, &id, &builder, items);
        ex.respond(Reply::json(200, &response));
        return Ok(());
    }
    let headers = [
        ("Content-Type".to_string(), "text/event-stream; charset=utf-8".to_string()),
        ("Cache-Control".to_string(), "no-cache, no-transform".to_string()),
        ("X-Accel-Buffering".to_string(), "no".to_string()),
    ];
    let keeping = Keeping { app, store, id: &id, items: Some(items) };
    let mut events = ResponsesEvents { builder, events: relay::GeminiEvents::default(), keeping };
    relay::stream(app, ex, answer, &used, Some(&model), (200, &headers), &mut events)
}

/// Where a streamed response is kept when it ends well: before its last event is written, so that
/// a client continuing it at once finds it.
struct Keeping<'a> {
    app: &'a App,
    store: bool,
    id: &'a str,
    items: Option<Vec<Value>>,
}

/// Store a finished (not failed) response with its conversation, when the client allowed it.
fn keep(app: &App, store: bool, id: &str, builder: &ResponseBuilder, mut items: Vec<Value>) {
    let Some(response) = builder.final_response().filter(|r| r["status"] != "failed") else { return };
    if !store {
        return;
    }
    let inputs = items.len();
    for item in &mut items {
        as_item_resource(item);
    }
    items.extend(builder.output().iter().cloned());
    if !app.responses.put(id, response.clone(), items, inputs, Instant::now()) {
        log::warn!("response {id} is larger than the response store; not kept");
    }
}

/// `GET /v1/responses/{id}`.
pub fn get(app: &App, ex: &mut Exchange, id: &str) -> Result<(), ProxyError> {
    let stored = app.responses.get(id, Instant::now()).ok_or_else(|| not_found(id))?;
    ex.respond(Reply::json(200, &stored.response));
    Ok(())
}

/// An input item in the form `GET …/input_items` lists it (OpenAI's `ResponseItem`): an id of
/// its own, a message's `type`, content as parts. The translator reads both forms, so the stored
/// conversation takes this one.
fn as_item_resource(item: &mut Value) {
    let Some(obj) = item.as_object_mut() else { return };
    let message = obj.get("type").is_none_or(|t| t == "message") && obj.contains_key("role");
    if message {
        obj.entry("type").or_insert_with(|| json!("message"));
        let part = if obj.get("role").and_then(Value::as_str) == Some("assistant") {
            "output_text"
        } else {
            "input_text"
        };
        if let Some(Value::String(text)) = obj.get("content") {
            let text = text.clone();
            let content = if part == "output_text" {
                json!([{"type": part, "text": text, "annotations": []}])
            } else {
                json!([{"type": part, "text": text}])
            };
            obj.insert("content".into(), content);
        }
    }
    // Calls, their outputs and messages carry a status in OpenAI's item resources.
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    if matches!(
        kind,
        "message" | "function_call" | "function_call_output" | "custom_tool_call" | "custom_tool_call_output"
    ) {
        obj.entry("status").or_insert_with(|| json!("completed"));
    }
    if !obj.contains_key("id") {
        let prefix = if message { "msg" } else { "item" };
        obj.insert("id".into(), json!(new_id(prefix).replace('-', "_")));
    }
}

/// `GET /v1/responses/{id}/input_items`: the items the response was made from (its conversation
/// before its output: earlier turns too when it continued one), `limit` (1–100, 20) at a time in
/// `order` (`desc`, the default, or `asc`), from the one `after` the item of that id.
pub fn input_items(
    app: &App,
    ex: &mut Exchange,
    target: &crate::router::Target,
    id: &str,
) -> Result<(), ProxyError> {
    let stored = app.responses.get(id, Instant::now()).ok_or_else(|| not_found(id))?;
    let limit = match target.query_param("limit") {
        None => 20,
        Some(v) => v.parse::<usize>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
            ProxyError::bad_request("'limit' must be a whole number from 1 to 100.", Some("limit"))
        })?,
    };
    let inputs = &stored.items[..stored.inputs.min(stored.items.len())];
    let mut list: Vec<&Value> = match target.query_param("order").as_deref() {
        None | Some("desc") => inputs.iter().rev().collect(),
        Some("asc") => inputs.iter().collect(),
        Some(_) => return Err(ProxyError::bad_request("'order' must be 'asc' or 'desc'.", Some("order"))),
    };
    if let Some(after) = target.query_param("after") {
        let at = list.iter().position(|item| item["id"] == after.as_str()).ok_or_else(|| {
            ProxyError::bad_request(
                format!("No input item with id '{after}' in response '{id}'."),
                Some("after"),
            )
        })?;
        list.drain(..=at);
    }
    let has_more = list.len() > limit;
    list.truncate(limit);
    // OpenAI's `ResponseItemList` has string ids even for an empty page.
    let first = list.first().map_or_else(|| json!(""), |item| item["id"].clone());
    let last = list.last().map_or_else(|| json!(""), |item| item["id"].clone());
    let page =
        json!({"object": "list", "data": list, "first_id": first, "last_id": last, "has_more": has_more});
    ex.respond(Reply::json(200, &page));
    Ok(())
}

/// `DELETE /v1/responses/{id}`.
pub fn delete(app: &App, ex: &mut Exchange, id: &str) -> Result<(), ProxyError> {
    if !app.responses.delete(id, Instant::now()) {
        return Err(not_found(id));
    }
    ex.respond(Reply::json(200, &json!({"id": id, "object": "response", "deleted": true})));
    Ok(())
}

/// Gemini SSE events in, Responses stream events out (the relay's transform for
/// `/v1/responses` with `stream: true`).
struct ResponsesEvents<'a> {
    builder: ResponseBuilder,
    events: relay::GeminiEvents,
    keeping: Keeping<'a>,
}

fn write(out: &mut Vec<u8>, events: Vec<Value>) {
    for e in &events {
        out.extend_from_slice(&responses::sse(e));
    }
}

impl relay::Transform for ResponsesEvents<'_> {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let builder = &mut self.builder;
        write(out, builder.start());
        self.events.feed(data, |event| write(out, builder.feed(event)))
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        let last = self.builder.finish(Utc::now().timestamp());
        let k = &mut self.keeping;
        if let Some(items) = k.items.take() {
            keep(k.app, k.store, k.id, &self.builder, items);
        }
        write(out, last);
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) -> bool {
        // No retry and no status change once bytes went out: `error` and `response.failed` end it.
        write(out, self.builder.fail(message));
        true
    }

    fn tokens(&self) -> Option<u64> {
        self.events.tokens()
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) -> bool {
        write(out, self.builder.start());
        out.extend_from_slice(b": keep-alive\n\n");
        true
    }

    fn wants_keepalive(&self) -> bool {
        true
    }
}
