//! The native Gemini pass-through: same method, path, query and body bytes on the upstream, with
//! the pool's key instead of the client's token, and the answer relayed as it arrives.
//!
//! It decides only what is Gemini-specific: the model of a path, whether an answer is a stream,
//! and how to end a broken stream. Keys, retries and hygiene belong to `upstream`.

use std::io::Read;

use chrono::Utc;

use crate::App;
use crate::affinity;
use crate::error::{ProxyError, Reply};
use crate::quota;
use crate::router::Target;
use crate::server::Exchange;
use crate::upstream::{self, KeyStyle, KeyUsed, Outgoing};

/// Largest non-streamed answer buffered in memory (anything bigger is relayed as a stream).
const MAX_BUFFERED_ANSWER: u64 = 64 << 20;

/// Serve a native route (or Gemini's own OpenAI layer, with `KeyStyle::Bearer`).
pub fn handle(app: &App, ex: &mut Exchange, target: &Target, key_style: KeyStyle) -> Result<(), ProxyError> {
    let body = ex.read_body(app.config.max_body_bytes)?;
    let model = quota::model_from_path(&target.path);
    ex.record.model = model.clone();
    let query = upstream::strip_key_param(&target.query);
    let path_and_query =
        if query.is_empty() { target.path.clone() } else { format!("{}?{query}", target.path) };
    let method = ex.method.clone();
    let out = Outgoing {
        method: &method,
        path_and_query,
        headers: upstream::forward_request_headers(&ex.headers),
        body: &body,
        key_style,
    };
    let names = affinity::referenced(&target.path, target.query_param("upload_id").as_deref(), &body);
    let pinned = if names.is_empty() { None } else { app.affinity.lock().pinned(&names, Utc::now()) };
    let (resp, used) = upstream::call_with_keys(app, ex, model.as_deref(), &out, pinned.as_deref())?;
    // A 204 or 304 has no body to stream (chunked framing would put one on the wire).
    let streaming = !crate::server::bodiless(resp.status().as_u16())
        && (target.path.contains(":streamGenerateContent")
            || content_type(&resp).starts_with("text/event-stream")
            || !is_json(&resp) && resp.body().content_length().is_none());
    relay(app, ex, resp, &used, model.as_deref(), streaming)
}

fn content_type(resp: &ureq::http::Response<ureq::Body>) -> String {
    resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase()
}

fn is_json(resp: &ureq::http::Response<ureq::Body>) -> bool {
    content_type(resp).contains("json")
}

/// Relay a successful upstream answer to the client, whole or streamed.
fn relay(
    app: &App,
    ex: &mut Exchange,
    resp: ureq::http::Response<ureq::Body>,
    used: &KeyUsed,
    model: Option<&str>,
    streaming: bool,
) -> Result<(), ProxyError> {
    let status = resp.status().as_u16();
    let mut headers = upstream::forward_response_headers(resp.headers());
    rewrite_upload_url(app, ex, &mut headers, used);
    if !streaming {
        let body = read_whole(resp.into_body())?;
        let tokens = quota::usage_tokens_of(&body);
        app.record_success(used, model, tokens.unwrap_or(0));
        remember_created(app, &body, used);
        ex.respond(Reply { status, headers, body });
        return Ok(());
    }

    let mut writer = match ex.start_stream(status, &headers) {
        Ok(w) => w,
        Err(e) => {
            ex.record.client_gone = true;
            log::debug!("client left before the stream started: {e}");
            return Ok(());
        }
    };
    let mut reader = resp.into_body().into_reader();
    let mut usage = crate::sse::UsageScanner::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => {
                app.record_success(used, model, usage.tokens().unwrap_or(0));
                if let Err(e) = writer.finish() {
                    ex.record.client_gone = true;
                    log::debug!("client left at the end of the stream: {e}");
                }
                return Ok(());
            }
            Ok(n) => {
                if ex.record.first_byte.is_none() {
                    ex.record.first_byte = Some(ex.started.elapsed());
                }
                usage.feed(&buf[..n]);
                if let Err(e) = writer.send(&buf[..n]) {
                    // The client went away: dropping the reader drops the upstream request.
                    ex.record.client_gone = true;
                    log::debug!("client left mid-stream: {e}");
                    app.record_success(used, model, usage.tokens().unwrap_or(0));
                    return Ok(());
                }
            }
            Err(e) => {
                let timeout = upstream::is_timeout(&e);
                ex.record.note = Some(
                    if timeout { "upstream timeout mid-stream" } else { "upstream broke mid-stream" }.into(),
                );
                log::warn!(
                    "upstream {} after {} bytes of a stream; ending it",
                    if timeout { "went silent" } else { "failed" },
                    writer.bytes
                );
                app.record_success(used, model, usage.tokens().unwrap_or(0));
                // No retry once bytes went out: break the chunked framing so the client sees an
                // incomplete body instead of a clean end.
                writer.abort();
                return Ok(());
            }
        }
    }
}

/// Read a whole (non-streamed) answer, sized once from its `Content-Length` when it has one.
fn read_whole(body: ureq::Body) -> Result<Vec<u8>, ProxyError> {
    let fail = |e: std::io::Error| {
        if upstream::is_timeout(&e) {
            ProxyError::UpstreamTimeout
        } else {
            ProxyError::UpstreamIo { message: format!("reading the answer failed: {e}") }
        }
    };
    let expected = body.content_length().unwrap_or(0).min(MAX_BUFFERED_ANSWER);
    // One byte more than announced, so that reaching the end needs no second allocation.
    let mut out = Vec::with_capacity(expected as usize + 1);
    body.into_with_config().limit(MAX_BUFFERED_ANSWER).reader().read_to_end(&mut out).map_err(fail)?;
    Ok(out)
}

/// Files and caches an answer created belong to the key that made them.
fn remember_created(app: &App, body: &[u8], used: &KeyUsed) {
    if !affinity::mentions_resource(body) {
        return;
    }
    let names = affinity::created(body);
    if names.is_empty() {
        return;
    }
    let now = Utc::now();
    let mut aff = app.affinity.lock();
    for n in &names {
        aff.remember(n, &used.fingerprint, now);
    }
    drop(aff);
    app.save.wanted();
}

/// Point a resumable upload's `X-Goog-Upload-URL` back at the proxy and remember which key
/// started the session: the follow-up must go out with the same key.
fn rewrite_upload_url(app: &App, ex: &Exchange, headers: &mut [(String, String)], used: &KeyUsed) {
    let Some((_, url)) = headers.iter_mut().find(|(n, _)| n == "x-goog-upload-url") else { return };
    let path_and_query = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or("/"),
        None => url.as_str(),
    };
    let target = Target::parse(path_and_query);
    let Some(upload_id) = target.query_param("upload_id") else { return };
    let query = upstream::strip_key_param(&target.query);
    let scheme = match ex.header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host = ex.header("host").filter(|h| !h.is_empty() && !h.contains(['/', ' '])).unwrap_or("localhost");
    *url = format!("{scheme}://{host}{}?{query}", target.path);
    app.affinity.lock().remember(&affinity::upload_name(&upload_id), &used.fingerprint, Utc::now());
    app.save.wanted();
}
