//! The OpenAI Responses routes (SPEC §12): `POST /v1/responses` (streamed or not),
//! `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}`, served through the key pool.
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
        ex.respond(Reply::json(200, &response));
        keep(app, store, &id, &builder, items);
        return Ok(());
    }
    let headers = [
        ("Content-Type".to_string(), "text/event-stream; charset=utf-8".to_string()),
        ("Cache-Control".to_string(), "no-cache, no-transform".to_string()),
        ("X-Accel-Buffering".to_string(), "no".to_string()),
    ];
    let mut events = ResponsesEvents { builder, events: relay::GeminiEvents::default() };
    relay::stream(app, ex, answer, &used, Some(&model), (200, &headers), &mut events)?;
    keep(app, store, &id, &events.builder, items);
    Ok(())
}

/// Store a finished (not failed) response with its conversation, when the client allowed it.
fn keep(app: &App, store: bool, id: &str, builder: &ResponseBuilder, mut items: Vec<Value>) {
    let Some(response) = builder.final_response().filter(|r| r["status"] != "failed") else { return };
    if !store {
        return;
    }
    items.extend(builder.output().iter().cloned());
    if !app.responses.put(id, response.clone(), items, Instant::now()) {
        log::warn!("response {id} is larger than the response store; not kept");
    }
}

/// `GET /v1/responses/{id}`.
pub fn get(app: &App, ex: &mut Exchange, id: &str) -> Result<(), ProxyError> {
    let stored = app.responses.get(id, Instant::now()).ok_or_else(|| not_found(id))?;
    ex.respond(Reply::json(200, &stored.response));
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
struct ResponsesEvents {
    builder: ResponseBuilder,
    events: relay::GeminiEvents,
}

fn write(out: &mut Vec<u8>, events: Vec<Value>) {
    for e in &events {
        out.extend_from_slice(&responses::sse(e));
    }
}

impl relay::Transform for ResponsesEvents {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let builder = &mut self.builder;
        write(out, builder.start());
        self.events.feed(data, |event| write(out, builder.feed(event)))
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        write(out, self.builder.finish(Utc::now().timestamp()));
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
