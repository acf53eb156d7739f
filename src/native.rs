//! The native Gemini pass-through: same method, path, query and body bytes on the upstream, with
//! the pool's key instead of the client's token, and the answer relayed as it arrives.
//!
//! It decides only what is Gemini-specific: the model of a path, whether an answer is a stream,
//! and what an answer created. Keys, retries and hygiene belong to `upstream`; streams are
//! relayed by `relay` (the identity transform).

use chrono::Utc;

use crate::App;
use crate::affinity;
use crate::error::{ProxyError, Reply};
use crate::quota;
use crate::relay;
use crate::router::Target;
use crate::server::Exchange;
use crate::upstream::{self, KeyStyle, KeyUsed, Outgoing};

/// Largest non-streamed answer buffered in memory (anything bigger is relayed as a stream).
const MAX_BUFFERED_ANSWER: u64 = 64 << 20;

/// Serve a native route (or Gemini's own OpenAI layer, with `KeyStyle::Bearer`).
pub fn handle(app: &App, ex: &mut Exchange, target: &Target, key_style: KeyStyle) -> Result<(), ProxyError> {
    let body = ex.read_body(app.config.max_body_bytes)?;
    let mut model = quota::model_from_path(&target.path);
    let mut path = target.path.clone();
    if let Some(asked) = model.clone()
        && let Some(gemini) = app.config.aliases.resolve(&asked)
    {
        path = alias_path(&path, &asked, gemini);
        model = Some(gemini.to_string());
    }
    // Else the model the body names (Interactions, caches, tuning, voices: SPEC §5); bodies pass
    // untouched, so no alias applies there.
    let model = model.or_else(|| quota::model_from_body(&body));
    ex.record.model = model.clone();
    let query = upstream::strip_key_param(&target.query);
    let path_and_query = if query.is_empty() { path } else { format!("{path}?{query}") };
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
    let (answer, used) = upstream::call_with_keys(app, ex, model.as_deref(), &out, pinned.as_deref())?;
    // A 204 or 304 has no body to stream (chunked framing would put one on the wire).
    let content_type = answer.content_type();
    let streaming = !crate::server::bodiless(answer.status())
        && (target.path.contains(":streamGenerateContent")
            || content_type.starts_with("text/event-stream")
            || !content_type.contains("json") && answer.content_length().is_none());
    let status = answer.status();
    let mut headers = answer.client_headers();
    rewrite_upload_url(app, ex, &mut headers, &used);
    if streaming {
        let mut identity = relay::Identity::default();
        return relay::stream(app, ex, answer, &used, model.as_deref(), (status, &headers), &mut identity);
    }
    let body = answer.read_whole(MAX_BUFFERED_ANSWER)?;
    let tokens = crate::usage::tokens_of(&body);
    app.record_success(&used, model.as_deref(), tokens.unwrap_or(0));
    remember_created(app, &body, &used);
    ex.respond(Reply { status, headers, body });
    Ok(())
}

/// `path` with the model segment `models/{asked}` (before `:method` or the end) naming `gemini`.
fn alias_path(path: &str, asked: &str, gemini: &str) -> String {
    for marker in ["/models/", "/tunedModels/"] {
        let mut from = 0;
        while let Some(i) = path[from..].find(marker) {
            let start = from + i + marker.len();
            let rest = &path[start..];
            if let Some(after) = rest.strip_prefix(asked)
                && (after.is_empty() || after.starts_with([':', '/']))
            {
                return format!("{}{gemini}{after}", &path[..start]);
            }
            from = start;
        }
    }
    path.to_string()
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

#[cfg(test)]
mod tests {
    #[test]
    fn an_alias_names_the_gemini_model_in_the_path() {
        let p =
            super::alias_path("/v1beta/models/claude-x:streamGenerateContent", "claude-x", "gemini-2.5-pro");
        assert_eq!(p, "/v1beta/models/gemini-2.5-pro:streamGenerateContent");
        assert_eq!(
            super::alias_path("/v1/models/gpt-4o", "gpt-4o", "gemini-2.5-flash"),
            "/v1/models/gemini-2.5-flash"
        );
        assert_eq!(super::alias_path("/v1/models/gpt-4o-mini:x", "gpt-4o", "g"), "/v1/models/gpt-4o-mini:x");
    }
}
