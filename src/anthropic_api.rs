//! The Anthropic Messages routes: `POST /v1/messages` (streamed or not) and
//! `POST /v1/messages/count_tokens`, served through the key pool (SPEC §12).
//!
//! This module does the I/O around the pure translation core in `anthropic/`: it reads the
//! request, resolves the model (aliases, the model's output limit for the `max_tokens` clamp),
//! asks `upstream` for an answer, and writes Anthropic objects, or Anthropic stream events
//! through the shared relay (with `ping` events while the upstream is silent). It never builds an
//! error body itself: errors go back as `ProxyError`, shaped once in `error.rs`.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::Value;

use crate::App;
use crate::anthropic::{self, MessagesStream};
use crate::error::{ProxyError, Reply};
use crate::openai_api::{apply_alias, generate, json_body, new_id, post, read_json_answer, translate_error};
use crate::relay;
use crate::server::Exchange;
use crate::upstream::{self, KeyStyle, Outgoing};

/// Output token limits of models, from models.get, kept for the process's life (they do not
/// change); a model whose lookup failed is not clamped.
#[derive(Default)]
pub struct OutputLimits(Mutex<HashMap<String, Option<u64>>>);

/// The model a request names (400 naming the field when it is missing).
fn model_of(req: &Value) -> Result<String, ProxyError> {
    req.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| ProxyError::bad_request("model: a model name is required", Some("model")))
}

/// `outputTokenLimit` of a Gemini model (models.get through the pool, once per model).
fn output_limit(app: &App, ex: &mut Exchange, model: &str) -> Option<u64> {
    if let Some(known) = app.output_limits.0.lock().get(model) {
        return *known;
    }
    let get = Outgoing {
        method: "GET",
        path_and_query: format!("/v1beta/models/{model}"),
        headers: Vec::new(),
        body: &[],
        key_style: KeyStyle::GoogHeader,
    };
    let attempts = ex.record.attempts;
    let limit = upstream::call_with_keys(app, ex, None, &get, None)
        .ok()
        .and_then(|(answer, _)| read_json_answer(answer).ok())
        .and_then(|m| m.get("outputTokenLimit").and_then(Value::as_u64));
    // The lookup is not one of the request's attempts.
    ex.record.attempts = attempts;
    ex.record.keys.clear();
    app.output_limits.0.lock().insert(model.to_string(), limit);
    limit
}

/// `POST /v1/messages`.
pub fn messages(app: &App, ex: &mut Exchange) -> Result<(), ProxyError> {
    let mut req = json_body(ex, app)?;
    let asked = model_of(&req)?;
    apply_alias(app, &mut req);
    let gemini = model_of(&req)?;
    let limit = output_limit(app, ex, &gemini);
    let call = anthropic::messages_request_to_gemini(&req, limit).map_err(translate_error)?;
    ex.record.model = Some(call.model.clone());
    let (answer, used) = generate(app, ex, &call.model, call.stream, &call.body)?;
    // A fallback model served it: the answer names that model (SPEC §14).
    let asked = used.fallback.as_ref().map_or(asked, |f| f.to.clone());
    let id = new_id("msg");
    if !call.stream {
        let answer = read_json_answer(answer)?;
        app.record_success(&used, Some(&call.model), crate::usage::tokens(&answer).unwrap_or(0));
        ex.respond(Reply::json(200, &anthropic::gemini_response_to_message(&answer, &asked, &id)));
        return Ok(());
    }
    let headers = [
        ("Content-Type".to_string(), "text/event-stream; charset=utf-8".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
    ];
    let mut events = MessagesEvents {
        translator: MessagesStream::new(&asked, &id),
        events: relay::GeminiEvents::default(),
    };
    relay::stream(app, ex, answer, &used, Some(&call.model), (200, &headers), &mut events)
}

/// Gemini SSE events in, Anthropic stream events out (the relay's transform for `/v1/messages`
/// with `stream: true`), `ping` while the upstream is silent.
struct MessagesEvents {
    translator: MessagesStream,
    events: relay::GeminiEvents,
}

impl MessagesEvents {
    fn write(out: &mut Vec<u8>, events: Vec<(String, Value)>) {
        for (name, value) in events {
            out.extend_from_slice(&anthropic::sse(&name, &value));
        }
    }
}

impl relay::Transform for MessagesEvents {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let translator = &mut self.translator;
        self.events.feed(data, |event| Self::write(out, translator.feed(event)))
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        Self::write(out, self.translator.finish());
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) -> bool {
        // No retry and no status change once bytes went out: an Anthropic error event ends it.
        let (name, value) = MessagesStream::error_event(message);
        out.extend_from_slice(&anthropic::sse(&name, &value));
        true
    }

    fn tokens(&self) -> Option<u64> {
        self.events.tokens()
    }

    fn keepalive(&mut self, out: &mut Vec<u8>) -> bool {
        // A ping never comes before message_start.
        Self::write(out, self.translator.start());
        let (name, value) = MessagesStream::ping();
        out.extend_from_slice(&anthropic::sse(&name, &value));
        true
    }

    fn wants_keepalive(&self) -> bool {
        true
    }
}

/// `POST /v1/messages/count_tokens` → Gemini `countTokens`.
pub fn count_tokens(app: &App, ex: &mut Exchange) -> Result<(), ProxyError> {
    let mut req = json_body(ex, app)?;
    model_of(&req)?;
    apply_alias(app, &mut req);
    let (model, body) = anthropic::count_tokens_request_to_gemini(&req).map_err(translate_error)?;
    ex.record.model = Some(model.clone());
    let body = serde_json::to_vec(&body).map_err(|e| ProxyError::Internal { message: e.to_string() })?;
    let out = post(format!("/v1beta/models/{model}:countTokens"), &body);
    let (answer, used) = upstream::call_with_keys(app, ex, Some(&model), &out, None)?;
    let answer = read_json_answer(answer)?;
    app.record_success(&used, Some(&model), 0);
    ex.respond(Reply::json(200, &anthropic::count_tokens_response(&answer)));
    Ok(())
}
