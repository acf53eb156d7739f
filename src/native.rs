//! The native Gemini pass-through: same method, path, query and body bytes on the upstream, with
//! the pool's key instead of the client's token, and the answer relayed as it arrives.
//!
//! It decides only what is Gemini-specific: the model of a path, whether an answer is a stream,
//! which project the resources it names live in, what an answer created, and the list routes
//! that ask every project. Keys, retries and hygiene belong to `upstream`; streams are
//! relayed by `relay` (the identity transform).

use chrono::Utc;

use crate::App;
use crate::error::{ProxyError, Reply};
use crate::interactions::InteractionEvents;
use crate::resources::{self, Created, Pin};
use crate::router::Target;
use crate::server::Exchange;
use crate::upstream::{self, KeyStyle, KeyUsed, Outgoing};
use crate::{listing, quota, relay};

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
        path = quota::path_with_model(&path, &asked, gemini).unwrap_or(path);
        model = Some(gemini.to_string());
    }
    // Else the model the body names (Interactions, caches, tuning, voices: SPEC §5); bodies pass
    // untouched, so no alias applies there.
    let model = model.or_else(|| quota::model_from_body(&body));
    // The resources the request names decide the project (SPEC §5).
    let names = resources::referenced(&target.path, target.query_param("upload_id").as_deref(), &body);
    let owners = if names.is_empty() { Vec::new() } else { app.resources.lock().owners(&names, Utc::now()) };
    let pin = pin_of(&owners)?;
    // A read of an interaction is booked under the model it was made with.
    let model = model.or_else(|| owners.iter().find_map(|o| o.model.clone()));
    ex.record.model = model.clone();
    let method = ex.method.clone();
    let headers = upstream::forward_request_headers(&ex.headers);
    if method == "GET"
        && pin.is_none()
        && let Some(collection) = resources::list_collection(&target.path)
    {
        return list_all(app, ex, (&path, &target.query), collection, headers, key_style);
    }
    let query = upstream::strip_key_param(&target.query);
    let path_and_query = if query.is_empty() { path } else { format!("{path}?{query}") };
    let out = Outgoing { method: &method, path_and_query, headers, body: &body, key_style };
    let (answer, used) = upstream::call_with_keys(app, ex, model.as_deref(), &out, pin.as_ref())?;
    // A 204 or 304 has no body to stream (chunked framing would put one on the wire).
    let content_type = answer.content_type();
    let streaming = !crate::server::bodiless(answer.status())
        && (target.path.contains(":streamGenerateContent")
            || content_type.starts_with("text/event-stream")
            || !content_type.contains("json") && answer.content_length().is_none());
    let status = answer.status();
    let mut headers = answer.client_headers();
    rewrite_upload_url(app, ex, &mut headers, &used);
    let interactions = resources::collection(&target.path) == Some("interactions");
    if streaming && interactions {
        // A replay of an interaction already booked counts no tokens again.
        let booked =
            resources::path_resource(&target.path).is_some_and(|n| app.resources.lock().is_booked(&n));
        let mut events = InteractionEvents::new(!booked);
        relay::stream(app, ex, answer, &used, model.as_deref(), (status, &headers), &mut events)?;
        if let Some(id) = events.interaction_id().filter(|_| !booked) {
            app.resources.lock().book_once(&format!("interactions/{id}"));
        }
        return Ok(());
    }
    if streaming {
        let mut identity = relay::Identity::default();
        return relay::stream(app, ex, answer, &used, model.as_deref(), (status, &headers), &mut identity);
    }
    let body = answer.read_whole(MAX_BUFFERED_ANSWER)?;
    let created = resources::created(&target.path, &body);
    if !created.is_empty() {
        app.remember_resources(&created, &used, model.as_deref());
    }
    let mut tokens = crate::usage::tokens_of(&body).unwrap_or(0);
    if interactions && tokens > 0 {
        tokens = interaction_tokens_once(app, &body, tokens);
    }
    app.record_success(&used, model.as_deref(), tokens);
    if method == "DELETE"
        && let Some(name) = resources::path_resource(&target.path)
    {
        app.resources.lock().forget(&name);
        app.save.wanted();
    }
    ex.respond(Reply { status, headers, body });
    Ok(())
}

/// The project the named resources live in; two projects in one request is the client's error.
pub(crate) fn pin_of(owners: &[resources::Owner]) -> Result<Option<Pin>, ProxyError> {
    Pin::of(owners).map_err(|(a, b)| {
        ProxyError::bad_request(
            format!(
                "The request names resources of two projects: {} ({}) and {} ({}); Google keeps each in \
                 the project that made it, so one request cannot use both",
                a.name, a.project, b.name, b.project
            ),
            None,
        )
    })
}

/// An interaction's tokens count once: the first answer that shows its usage (the create, or
/// the poll that finds a background interaction done) books them; later reads book none.
fn interaction_tokens_once(app: &App, body: &[u8], tokens: u64) -> u64 {
    let id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id").and_then(serde_json::Value::as_str).map(str::to_string));
    match id {
        Some(id) if !app.resources.lock().book_once(&format!("interactions/{id}")) => 0,
        _ => tokens,
    }
}

/// A list route over every project (SPEC §5): one usable key of each project asked in turn, the
/// pages merged, and a page token that holds each project's cursor. A project without a usable
/// key is left out (logged); any other failure is the answer.
fn list_all(
    app: &App,
    ex: &mut Exchange,
    (path, query): (&str, &str),
    collection: &str,
    headers: Vec<(String, String)>,
    key_style: KeyStyle,
) -> Result<(), ProxyError> {
    let query = upstream::strip_key_param(query);
    let projects = app.pool.lock().projects();
    let cursors: listing::Cursors = match Target::parse(&format!("?{query}")).query_param("pageToken") {
        Some(token) if !token.is_empty() => listing::decode(&token).ok_or_else(|| {
            ProxyError::bad_request("pageToken is not a page token this proxy issued", Some("pageToken"))
        })?,
        _ => projects.iter().map(|(p, _)| (p.clone(), None)).collect(),
    };
    let mut pages = Vec::new();
    let mut next = Vec::new();
    let mut skipped = None;
    for (project, cursor) in cursors {
        let Some((_, first_key)) = projects.iter().find(|(p, _)| *p == project) else { continue };
        let pin = Pin {
            project: project.clone(),
            resource: format!("the {collection} list"),
            fingerprint: first_key.clone(),
        };
        let q = listing::with_page_token(&query, cursor.as_deref());
        let path_and_query = if q.is_empty() { path.to_string() } else { format!("{path}?{q}") };
        let out = Outgoing { method: "GET", path_and_query, headers: headers.clone(), body: &[], key_style };
        let (answer, used) = match upstream::call_with_keys(app, ex, None, &out, Some(&pin)) {
            Ok(got) => got,
            Err(e @ (ProxyError::ResourceBlocked { .. } | ProxyError::ResourceUnreachable { .. })) => {
                log::info!("listing {collection}: {project} left out, no usable key");
                skipped = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        let body = answer.read_whole(MAX_BUFFERED_ANSWER)?;
        app.record_success(&used, None, 0);
        let page: serde_json::Value = serde_json::from_slice(&body).map_err(|_| ProxyError::UpstreamIo {
            message: format!("the {collection} list of {project} was not JSON"),
        })?;
        let created = resources::created_in(Some(collection), &page);
        if !created.is_empty() {
            app.remember_resources(&created, &used, None);
        }
        if let Some(token) =
            page.get("nextPageToken").and_then(serde_json::Value::as_str).filter(|t| !t.is_empty())
        {
            next.push((project, token.to_string()));
        }
        pages.push(page);
    }
    if pages.is_empty()
        && let Some(e) = skipped
    {
        // No project could be asked: the pool's own answer for a request without a model.
        let pick = app.pool.lock().exhausted(None, Utc::now());
        log::debug!("no project could list {collection}: {e:?}");
        if let crate::pool::Pick::Exhausted { retry_after_secs, until, model } = pick {
            return Err(ProxyError::NoKeyAvailable {
                model,
                retry_after_secs,
                until: until.map(|t| app.format_time(t)),
            });
        }
    }
    ex.record.note = Some(format!("{} projects", pages.len()));
    ex.respond(Reply::json(200, &listing::merge(pages, &next)));
    Ok(())
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
    app.remember_resources(
        &[Created { name: resources::upload_name(&upload_id), expires: None }],
        used,
        None,
    );
}
