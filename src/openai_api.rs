//! The OpenAI-compatible routes: `/v1/chat/completions` (streamed or not), `/v1/models`,
//! `/v1/models/{id}` and `/v1/embeddings`, served through the key pool.
//!
//! This module does the I/O around the pure translation core in `openai/`: it reads the
//! request, asks `upstream` for an answer, and writes OpenAI objects or SSE chunks back. It
//! never builds an error body itself: errors go back as `ProxyError`, mapped once in `error.rs`.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use serde_json::Value;

use crate::App;
use crate::error::{ProxyError, Reply};
use crate::google_error::GoogleError;
use crate::openai::{self, StreamTranslator, TranslateError};
use crate::relay;
use crate::server::Exchange;
use crate::upstream::{self, Answer, KeyStyle, Outgoing};

/// Largest upstream answer buffered for translation.
const MAX_ANSWER: u64 = 64 << 20;
/// Most model-list pages fetched for one `/v1/models`.
const MAX_MODEL_PAGES: usize = 20;

pub(crate) fn translate_error(e: TranslateError) -> ProxyError {
    match e.status {
        404 => ProxyError::NotFound { message: e.message },
        _ => ProxyError::BadRequest { message: e.message, param: e.param },
    }
}

/// Parse a JSON request body; a malformed one is a 400 that says where.
pub(crate) fn json_body(ex: &mut Exchange, app: &App) -> Result<Value, ProxyError> {
    let body = ex.read_body(app.config.max_body_bytes)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ProxyError::bad_request("The request body is empty; a JSON object is required", None));
    }
    serde_json::from_slice::<Value>(&body).map_err(|e| {
        ProxyError::bad_request(
            format!("The request body is not valid JSON: {e} (line {}, column {})", e.line(), e.column()),
            None,
        )
    })
}

/// A response id that is unique within this process and across restarts.
pub(crate) fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64;
    format!("{prefix}-{nanos:x}{n:04x}")
}

pub(crate) fn read_json_answer(answer: Answer) -> Result<Value, ProxyError> {
    let bytes = answer.read_whole(MAX_ANSWER)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| ProxyError::UpstreamIo {
        message: format!("the upstream answered something that is not JSON: {e}"),
    })?;
    // Google sometimes answers 200 with an error body; that is no answer to translate.
    if v.get("candidates").is_none()
        && let Some(err) = GoogleError::from_value(&v)
    {
        let msg = if err.message.is_empty() { "no message" } else { err.message.as_str() };
        return Err(ProxyError::UpstreamIo {
            message: format!("the upstream answered 200 with an error: {msg}"),
        });
    }
    Ok(v)
}

/// Replace a request body's `model` by its alias's Gemini model; the model the client named, if
/// an alias applied.
pub fn apply_alias(app: &App, req: &mut Value) -> Option<String> {
    let asked = req.get("model").and_then(Value::as_str)?.to_string();
    let gemini = app.config.aliases.resolve(&asked)?;
    req["model"] = Value::String(gemini.to_string());
    Some(asked)
}

/// A translated surface's call: `generateContent` (or `streamGenerateContent?alt=sse`) of a
/// Gemini `body` for `model`, through the pool, pinned to the key of any file or cache it names.
pub(crate) fn generate(
    app: &App,
    ex: &mut Exchange,
    model: &str,
    stream: bool,
    body: &Value,
) -> Result<(Answer, upstream::KeyUsed), ProxyError> {
    let body = serde_json::to_vec(body).map_err(|e| ProxyError::Internal { message: e.to_string() })?;
    let path = if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    };
    let out = post(path, &body);
    let names = crate::resources::referenced_in_generate(&body);
    let owners = if names.is_empty() { Vec::new() } else { app.resources.lock().owners(&names, Utc::now()) };
    let pin = crate::native::pin_of(&owners)?;
    upstream::call_with_keys(app, ex, Some(model), &out, pin.as_ref())
}

pub(crate) fn post(path: String, body: &[u8]) -> Outgoing<'_> {
    Outgoing {
        method: "POST",
        path_and_query: path,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
        key_style: KeyStyle::GoogHeader,
    }
}

/// `POST /v1/chat/completions`.
pub fn chat(app: &App, ex: &mut Exchange) -> Result<(), ProxyError> {
    let mut req = json_body(ex, app)?;
    // The answer names the model the client asked for; upstream, an alias's Gemini model.
    let asked = apply_alias(app, &mut req);
    let call = openai::chat_request_to_gemini(&req).map_err(translate_error)?;
    let asked = asked.unwrap_or_else(|| call.model.clone());
    ex.record.model = Some(call.model.clone());
    let (answer, used) = generate(app, ex, &call.model, call.stream, &call.body)?;
    // A fallback model served it: the answer names that model (SPEC §14).
    let asked = used.fallback.as_ref().map_or(asked, |f| f.to.clone());
    let id = new_id("chatcmpl");
    let created = Utc::now().timestamp();
    if !call.stream {
        let answer = read_json_answer(answer)?;
        app.record_success(&used, Some(&call.model), crate::usage::tokens(&answer).unwrap_or(0));
        let chat = openai::gemini_response_to_chat(&answer, &asked, &id, created);
        ex.respond(Reply::json(200, &chat));
        return Ok(());
    }
    let headers = [
        ("Content-Type".to_string(), "text/event-stream; charset=utf-8".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
    ];
    let mut chat = ChatStream {
        translator: StreamTranslator::new(&asked, &id, created, call.include_usage),
        events: relay::GeminiEvents::default(),
    };
    relay::stream(app, ex, answer, &used, Some(&call.model), (200, &headers), &mut chat)
}

/// Gemini SSE events in, OpenAI `chat.completion.chunk` events out (the relay's transform for
/// `/v1/chat/completions` with `stream: true`).
struct ChatStream {
    translator: StreamTranslator,
    events: relay::GeminiEvents,
}

impl relay::Transform for ChatStream {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let translator = &mut self.translator;
        self.events.feed(data, |event| {
            for chunk in translator.feed(event) {
                push_event(out, &chunk);
            }
        })
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        for chunk in self.translator.finish() {
            push_event(out, &chunk);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    fn fail(&mut self, message: &str, out: &mut Vec<u8>) -> bool {
        // No retry and no status change once bytes went out: an OpenAI error event ends it.
        push_event(out, &StreamTranslator::error_event(message));
        out.extend_from_slice(b"data: [DONE]\n\n");
        true
    }

    fn tokens(&self) -> Option<u64> {
        self.events.tokens()
    }
}

pub(crate) fn push_event(out: &mut Vec<u8>, chunk: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(chunk.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// `GET /v1/models` (every page of Gemini's list) and `GET /v1/models/{id}`.
pub fn models(app: &App, ex: &mut Exchange, id: Option<&str>) -> Result<(), ProxyError> {
    let get = |path: String| Outgoing {
        method: "GET",
        path_and_query: path,
        headers: Vec::new(),
        body: &[],
        key_style: KeyStyle::GoogHeader,
    };
    if let Some(id) = id {
        let id = openai::types::strip_models_prefix(id);
        let gemini = app.config.aliases.upstream(id);
        let (resp, _) =
            upstream::call_with_keys(app, ex, None, &get(format!("/v1beta/models/{gemini}")), None)?;
        let mut model = openai::model_to_openai(&read_json_answer(resp)?);
        if gemini != id {
            model["id"] = Value::String(id.to_string());
        }
        ex.respond(Reply::json(200, &model));
        return Ok(());
    }
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_MODEL_PAGES {
        let mut path = "/v1beta/models?pageSize=1000".to_string();
        if let Some(t) = &token {
            path.push_str("&pageToken=");
            path.push_str(&percent_encode(t));
        }
        let (resp, _) = upstream::call_with_keys(app, ex, None, &get(path), None)?;
        let page = read_json_answer(resp)?;
        token =
            page.get("nextPageToken").and_then(Value::as_str).filter(|t| !t.is_empty()).map(str::to_string);
        pages.push(page);
        if token.is_none() {
            break;
        }
    }
    let mut list = openai::models_to_openai(&pages);
    // Alias names are models too (patterns with `*` are not ids of their own).
    if let Some(data) = list.get_mut("data").and_then(Value::as_array_mut) {
        let aliases: Vec<Value> = app
            .config
            .aliases
            .names()
            .filter_map(|(name, gemini)| {
                let target = data.iter().find(|m| m["id"] == gemini)?;
                let mut entry = target.clone();
                entry["id"] = Value::String(name.to_string());
                Some(entry)
            })
            .collect();
        data.extend(aliases);
    }
    ex.respond(Reply::json(200, &list));
    Ok(())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST /v1/embeddings`, via batchEmbedContents.
pub fn embeddings(app: &App, ex: &mut Exchange) -> Result<(), ProxyError> {
    let mut req = json_body(ex, app)?;
    apply_alias(app, &mut req);
    let call = openai::embeddings_request_to_gemini(&req).map_err(translate_error)?;
    ex.record.model = Some(call.model.clone());
    let body = serde_json::to_vec(&call.body).map_err(|e| ProxyError::Internal { message: e.to_string() })?;
    let out = post(format!("/v1beta/models/{}:batchEmbedContents", call.model), &body);
    let (resp, used) = upstream::call_with_keys(app, ex, Some(&call.model), &out, None)?;
    let answer = read_json_answer(resp)?;
    app.record_success(&used, Some(&call.model), 0);
    ex.respond(Reply::json(200, &openai::embeddings_response_to_openai(&answer, &call)));
    Ok(())
}
