//! The Live API (SPEC §11): one WebSocket session per client connection, tunnelled to Google's
//! with a pool key. It owns admission (the client token or an ephemeral token the proxy issued,
//! checked before the upgrade; the `--max-live-sessions` cap), the setup frame and its model, the
//! walk over keys at setup, the two relay loops, token booking from `usageMetadata` frames, and
//! the session's log line (the registry of open sessions is `live_sessions.rs`).
//!
//! It never holds the pool lock across a socket call, never retries once a server frame has
//! reached the client, and passes every close reason and server frame through the redactor.
//! A session takes no worker slot: it runs on its connection's thread (client → Google) and one
//! scoped thread (Google → client), and both end, their sockets shut, when either side closes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::{Condvar, Mutex};

use crate::App;
use crate::error::ProxyError;
use crate::live_sessions::SessionStats;
use crate::live_upstream::{self, OpenError, Origin};
use crate::pool::Pick;
use crate::quota::{self, Outcome};
use crate::router::{Presented, Target};
use crate::server::Exchange;
use crate::ws::{self, CloseFrame, Endpoint, Message};

/// How long one side may take to answer our close (or to notice its peer went) before both
/// sockets are shut.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Close codes the proxy itself sends (RFC 6455 §7.4.1).
const POLICY: u16 = 1008;
const INVALID_DATA: u16 = 1007;
const INTERNAL: u16 = 1011;
const TRY_AGAIN_LATER: u16 = 1013;
const GOING_AWAY: u16 = 1001;
const TOO_BIG: u16 = 1009;

/// How the client authenticated, which decides the upstream credential.
enum Credential {
    /// The proxy's client token: a pool key is picked for the session.
    Pool,
    /// An ephemeral token the proxy issued: passed on as the client sent it, billed to the key
    /// that made it.
    Ephemeral { token: String, owner: crate::resources::Owner, header: Option<&'static str>, query: bool },
}

/// The key a session uses: a pool key or the key behind an ephemeral token.
struct Used {
    idx: usize,
    fingerprint: String,
    /// The named client the session is booked to.
    client: Option<std::sync::Arc<str>>,
}

/// `GET` on a Live route with `Upgrade: websocket`: check the token, take a place, switch
/// protocols, and run the session until either side closes. Errors before the `101` are HTTP
/// answers; after it, close frames.
pub fn handle(app: &App, ex: &mut Exchange) -> Result<(), ProxyError> {
    let target = Target::parse(&ex.target);
    ex.record.path = target.path.clone();
    ex.record.route = "live";
    ex.record.surface = Some(crate::error::Surface::Native);
    let Some(path) = crate::router::live_path(&target.path).map(str::to_string) else {
        return Err(ProxyError::NotFound { message: "not a Live API route".into() });
    };
    // A named client (SPEC §13): its session is booked to it and held against its budget.
    let presented = Presented::from_request(&ex.headers, &target);
    let caller = app.authorize(&presented, false);
    let _ticket = match caller.as_ref().ok().and_then(Option::as_ref) {
        Some(c) => {
            ex.record.client = Some(std::sync::Arc::from(c.name.as_str()));
            Some(app.clients.admit(c, Utc::now())?)
        }
        None => None,
    };
    let credential = credential(app, ex, &target, caller.is_ok())?;
    let accept = match (ex.header("sec-websocket-key"), ex.header("sec-websocket-version")) {
        (Some(key), Some("13")) => ws::accept_key(key),
        _ => {
            return Err(ProxyError::bad_request(
                "a WebSocket upgrade needs Sec-WebSocket-Key and version 13",
                None,
            ));
        }
    };
    let Some(admitted) = app.live.admit(app.config.max_live_sessions) else {
        ex.record.note = Some("live sessions full".into());
        return Err(ProxyError::Overloaded);
    };
    let headers = [
        ("Upgrade".to_string(), "websocket".to_string()),
        ("Connection".to_string(), "Upgrade".to_string()),
        ("Sec-WebSocket-Accept".to_string(), accept),
    ];
    let socket = ex.switch_protocols(&headers).map_err(|_| ProxyError::ClientGone)?;
    app.live.accepted();
    let tcp = socket.tcp().map_err(|e| ProxyError::Internal { message: format!("client socket: {e}") })?;
    let _ = socket2::SockRef::from(&tcp).set_keepalive(true);
    let read =
        socket.try_clone().map_err(|e| ProxyError::Internal { message: format!("client socket: {e}") })?;
    let client = Endpoint::server(Box::new(read), Box::new(socket), tcp);
    let outcome = session(app, ex, client, &path, &target, &credential, admitted.stats());
    ex.record.note = Some(outcome.note(admitted.stats()));
    Ok(())
}

/// The client's credential: a client token (header or `?key=`), else an `auth_tokens/…` the
/// proxy issued (`Authorization: Token`, `?access_token=`, `x-goog-api-key`); 401 otherwise.
fn credential(
    app: &App,
    ex: &Exchange,
    target: &Target,
    client_token: bool,
) -> Result<Credential, ProxyError> {
    if client_token {
        return Ok(Credential::Pool);
    }
    let auth = ex.header("authorization").and_then(|a| {
        let (scheme, token) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("token").then(|| token.trim().to_string())
    });
    let goog = ex.header("x-goog-api-key").map(|t| t.trim().to_string());
    let query = target.query_param("access_token");
    let candidates =
        [(auth, Some("authorization"), false), (goog, Some("x-goog-api-key"), false), (query, None, true)];
    for (token, header, query) in candidates {
        let Some(token) = token.filter(|t| t.starts_with("auth_tokens/")) else { continue };
        if let Some(owner) = app.resources.lock().owner(&token, Utc::now()) {
            return Ok(Credential::Ephemeral { token, owner, header, query });
        }
    }
    Err(ProxyError::Unauthorized)
}

/// How a session ended, for its log line.
struct Ending {
    close: Option<u16>,
    /// Set when the session never reached Google (setup refused, no key).
    why: Option<String>,
}

impl Ending {
    fn note(&self, s: &SessionStats) -> String {
        let v = s.view(|_| String::new());
        format!(
            "live frames_in={} frames_out={} bytes_in={} bytes_out={} tokens={} close={}{}",
            v.frames_in,
            v.frames_out,
            v.bytes_in,
            v.bytes_out,
            v.tokens,
            self.close.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            self.why.as_deref().map(|w| format!(" ({w})")).unwrap_or_default(),
        )
    }
}

/// The session after the `101`: the setup frame, a key, the upstream, the relay.
fn session(
    app: &App,
    ex: &mut Exchange,
    mut client: Endpoint,
    path: &str,
    target: &Target,
    credential: &Credential,
    stats: &SessionStats,
) -> Ending {
    // The setup frame is due within the client timeout (the socket's, inherited).
    let _ = client.tcp.set_read_timeout(Some(app.config.client_timeout));
    let setup = loop {
        match client.reader.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => break m,
            Ok(Message::Ping(_)) => {
                let _ = client.reader.flush();
            }
            Ok(Message::Close(_)) | Err(_) => {
                client.shut();
                return Ending { close: None, why: Some("client left before setup".into()) };
            }
            Ok(_) => {}
        }
    };
    app.live.count(stats, true, setup.len());
    let Some(model) = setup_model(&setup) else {
        return refuse(
            &mut client,
            ws::close_frame(INVALID_DATA, "the first message must be a setup message"),
        );
    };
    ex.record.model = model.clone();
    stats.set_model(model.clone());
    if let Err(e) = app.clients.check_model(ex.record.client.as_deref(), model.as_deref()) {
        return refuse(&mut client, ws::close_frame(POLICY, &e.message()));
    }
    let (upstream, used, first) =
        match open_with_keys(app, ex, path, target, credential, model.as_deref(), &setup) {
            Ok(opened) => opened,
            Err(frame) => return refuse(&mut client, frame),
        };
    stats.set_key(&used.fingerprint);
    relay(app, client, upstream, &used, model.as_deref(), first, stats)
}

/// Close the client's session before it reached Google.
fn refuse(client: &mut Endpoint, frame: CloseFrame) -> Ending {
    let code = u16::from(frame.code);
    let why = frame.reason.to_string();
    let _ = client.sender.close(Some(frame));
    // Its answer to our close, briefly.
    let _ = client.tcp.set_read_timeout(Some(CLOSE_GRACE));
    while client.reader.read().is_ok_and(|m| !m.is_close()) {}
    client.shut();
    Ending { close: Some(code), why: Some(why) }
}

/// The model a setup message names (`setup.model`, without `models/`). `None` (outer) when the
/// message is not a setup message at all.
fn setup_model(message: &Message) -> Option<Option<String>> {
    let v: serde_json::Value = serde_json::from_slice(&message.clone().into_data()).ok()?;
    let setup = v.get("setup")?;
    Some(
        setup
            .get("model")
            .and_then(|m| m.as_str())
            .map(|m| m.strip_prefix("models/").unwrap_or(m).to_string()),
    )
}

/// The upstream path and query: the client's, less its `key` (and, unless it is the credential,
/// `access_token`).
fn upstream_target(path: &str, target: &Target, keep_access_token: bool) -> String {
    let query = crate::upstream::strip_key_param(&target.query);
    let query: Vec<&str> = query
        .split('&')
        .filter(|p| {
            !p.is_empty()
                && (keep_access_token
                    || !crate::router::param_name_is(p.split('=').next().unwrap_or(""), "access_token"))
        })
        .collect();
    if query.is_empty() { path.to_string() } else { format!("{path}?{}", query.join("&")) }
}

/// Open the upstream session for `setup`: a key for the model, the upgrade with it, the setup
/// frame, and Google's first frame. A quota or key error (an HTTP refusal, or a close before the
/// first frame whose reason says so) is recorded as SPEC §5 says and the next key tried; the
/// walk has the budget of a request (`--max-attempts` transient failures, `--request-deadline`).
/// Err: the close frame for the client.
fn open_with_keys(
    app: &App,
    ex: &mut Exchange,
    path: &str,
    target: &Target,
    credential: &Credential,
    model: Option<&str>,
    setup: &Message,
) -> Result<(Endpoint, Used, Message), CloseFrame> {
    let Some(origin) = Origin::of(&app.config.upstream, app.config.ca_file.as_deref()) else {
        return Err(ws::close_frame(INTERNAL, "the upstream URL cannot carry a WebSocket"));
    };
    let deadline = Instant::now() + app.config.request_deadline;
    let redactor = crate::redact::current();
    let mut tried: Vec<String> = Vec::new();
    let mut transient = 0u32;
    let mut last: Option<(CloseFrame, bool)> = None;
    let forwarded = crate::upstream::forward_request_headers(&ex.headers);
    loop {
        let now = Utc::now();
        if !tried.is_empty() && (Instant::now() >= deadline || transient >= app.config.max_attempts) {
            return Err(match last {
                Some((frame, true)) => frame,
                _ => exhausted_close(app, app.pool.lock().exhausted(model, now)),
            });
        }
        let (used, mut headers, path_and_query) = match credential {
            Credential::Pool => match app.pool.lock().pick(model, &tried, now) {
                Pick::Key { idx, key, fingerprint } => {
                    let headers = vec![("x-goog-api-key".to_string(), key)];
                    (
                        Used { idx, fingerprint, client: ex.record.client.clone() },
                        headers,
                        upstream_target(path, target, false),
                    )
                }
                exhausted @ Pick::Exhausted { .. } => {
                    return Err(match last {
                        Some((frame, true)) => frame,
                        _ => exhausted_close(app, exhausted),
                    });
                }
            },
            Credential::Ephemeral { token, owner, header, query } => {
                if let Some((frame, _)) = last {
                    return Err(frame);
                }
                let mut headers = Vec::new();
                if let Some(h) = header {
                    let value = if *h == "authorization" { format!("Token {token}") } else { token.clone() };
                    headers.push((h.to_string(), value));
                }
                let used = Used {
                    idx: usize::MAX,
                    fingerprint: owner.fingerprint.clone(),
                    client: ex.record.client.clone(),
                };
                (used, headers, upstream_target(path, target, *query))
            }
        };
        headers.extend(forwarded.iter().cloned());
        tried.push(used.fingerprint.clone());
        ex.record.attempts += 1;
        ex.record.keys.push(used.fingerprint.clone());
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let timeout = app.config.read_timeout.min(left);
        let proxy = app.upstream.egress().route(&used.fingerprint);
        let attempt = live_upstream::open(
            &origin,
            proxy.as_deref(),
            &path_and_query,
            &headers,
            app.config.connect_timeout.min(left),
            timeout,
        )
        .and_then(|mut up| first_frame(&mut up, setup).map(|first| (up, first)));
        let (outcome, effect, frame) = match attempt {
            Ok((up, Ok(first))) => {
                app.metrics.attempt(&Outcome::Success);
                app.pool.lock().record(used.idx, &used.fingerprint, model, &Outcome::Success, 0, Utc::now());
                if let Some(c) = &used.client {
                    app.clients.book(c, model, 1, 0, Utc::now());
                }
                app.save.wanted();
                return Ok((up, used, first));
            }
            Ok((_, Err(close))) => {
                let reason = redactor.text(&close.reason).into_owned();
                let frame = ws::close_frame(u16::from(close.code), &reason);
                match quota::classify_live_close(&close.reason) {
                    Some(outcome) => (outcome, None, frame),
                    // Any other close is the session's answer: the client gets it.
                    None => return Err(frame),
                }
            }
            Err(OpenError::Refused { status, body }) => {
                let outcome = quota::classify(status, &body);
                let effect = quota::quota_model(status, &body);
                let message = crate::google_error::GoogleError::parse(&body)
                    .map(|e| e.message)
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| format!("the upstream refused the session with {status}"));
                let code = if outcome == Outcome::Transient { INTERNAL } else { POLICY };
                let frame = ws::close_frame(code, &redactor.text(&message));
                if !outcome.retry_on_next_key() {
                    return Err(frame);
                }
                (outcome, effect, frame)
            }
            Err(OpenError::Timeout) => {
                (Outcome::Transient, None, ws::close_frame(INTERNAL, "the upstream did not answer in time"))
            }
            Err(OpenError::Io(e)) => {
                log::debug!("live attempt {} key {}: {e}", ex.record.attempts, used.fingerprint);
                (Outcome::Transient, None, ws::close_frame(INTERNAL, "the upstream could not be reached"))
            }
        };
        log::debug!("live attempt {} key {}: {outcome:?}", ex.record.attempts, used.fingerprint);
        if outcome == Outcome::Transient {
            transient += 1;
            app.metrics.attempt_network();
        } else {
            app.metrics.attempt(&outcome);
        }
        crate::upstream::record_failure(
            app,
            used.idx,
            &used.fingerprint,
            effect.as_deref().or(model),
            &outcome,
        );
        last = Some((frame, outcome == Outcome::Transient));
    }
}

/// Send the setup frame and wait for Google's first frame. `Ok(Err(close))`: it closed first.
fn first_frame(up: &mut Endpoint, setup: &Message) -> Result<Result<Message, CloseFrame>, OpenError> {
    let io = |e: tungstenite::Error| OpenError::Io(crate::logging::redact(&e.to_string()));
    up.sender.send(setup.clone()).map_err(io)?;
    loop {
        match up.reader.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => return Ok(Ok(m)),
            Ok(Message::Close(frame)) => {
                let _ = up.reader.flush();
                up.shut();
                return Ok(Err(frame.unwrap_or_else(|| ws::close_frame(1005, ""))));
            }
            Ok(Message::Ping(_)) => {
                let _ = up.reader.flush();
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) =>
            {
                return Err(OpenError::Timeout);
            }
            Err(e) => return Err(io(e)),
        }
    }
}

/// The close frame for "no key available" (the 503 of SPEC §4, as a close: try again later).
fn exhausted_close(app: &App, pick: Pick) -> CloseFrame {
    let error = crate::upstream::exhausted_error(app, pick);
    ws::close_frame(TRY_AGAIN_LATER, &error.message())
}

/// Both directions' shared state: which side has had our close frame, and the end of the two
/// loops (the second to end, or the first after `CLOSE_GRACE`, shuts both sockets).
struct Tunnel {
    client_closed: AtomicBool,
    upstream_closed: AtomicBool,
    ended: Mutex<u8>,
    cv: Condvar,
    close_code: Mutex<Option<u16>>,
}

impl Tunnel {
    fn finish(&self, client: &std::net::TcpStream, upstream: &std::net::TcpStream) {
        let mut ended = self.ended.lock();
        *ended += 1;
        self.cv.notify_all();
        if *ended < 2 {
            let _ = self.cv.wait_while_for(&mut ended, |n| *n < 2, CLOSE_GRACE);
        }
        drop(ended);
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = upstream.shutdown(std::net::Shutdown::Both);
    }

    fn closed_with(&self, code: u16) {
        self.close_code.lock().get_or_insert(code);
    }
}

/// Relay frames both ways until either side closes: client → Google on this thread, Google →
/// client on a scoped one. `first` is Google's first frame, still to be sent to the client.
fn relay(
    app: &App,
    client: Endpoint,
    upstream: Endpoint,
    used: &Used,
    model: Option<&str>,
    first: Message,
    stats: &SessionStats,
) -> Ending {
    let Endpoint { reader: mut client_reader, sender: client_sender, tcp: client_tcp } = client;
    let Endpoint { reader: mut up_reader, sender: up_sender, tcp: up_tcp } = upstream;
    // Each sender is used by its own direction, and by the other one only to close.
    let (client_sender, up_sender) = (Mutex::new(client_sender), Mutex::new(up_sender));
    // Sessions may be silent for long: no read timeouts from here on (TCP keep-alive notices a
    // vanished peer; a client that stops reading still meets the write timeout).
    let _ = client_tcp.set_read_timeout(None);
    let _ = up_tcp.set_read_timeout(None);
    let tunnel = Tunnel {
        client_closed: AtomicBool::new(false),
        upstream_closed: AtomicBool::new(false),
        ended: Mutex::new(0),
        cv: Condvar::new(),
        close_code: Mutex::new(None),
    };
    let redactor = crate::redact::current();
    let (tunnel, client_tcp, up_tcp, client_sender, up_sender) =
        (&tunnel, &client_tcp, &up_tcp, &client_sender, &up_sender);
    let mut down = |first: Message| {
        // Google → client.
        let mut next = Some(first);
        loop {
            let message = match next.take().map(Ok).unwrap_or_else(|| up_reader.read()) {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => m,
                Ok(Message::Ping(_)) => {
                    let _ = up_reader.flush();
                    continue;
                }
                Ok(Message::Close(frame)) => {
                    let frame = frame.unwrap_or_else(|| ws::close_frame(1005, ""));
                    if !tunnel.upstream_closed.swap(true, Ordering::SeqCst) {
                        // Google closed first: answer it, pass its close on.
                        let _ = up_reader.flush();
                        tunnel.closed_with(u16::from(frame.code));
                        if !tunnel.client_closed.swap(true, Ordering::SeqCst) {
                            let reason = redactor.text(&frame.reason).into_owned();
                            let _ = client_sender
                                .lock()
                                .close(Some(ws::close_frame(u16::from(frame.code), &reason)));
                        }
                    }
                    break;
                }
                Ok(_) => continue,
                Err(_) => {
                    if !tunnel.client_closed.swap(true, Ordering::SeqCst) {
                        tunnel.closed_with(INTERNAL);
                        let _ = client_sender
                            .lock()
                            .close(Some(ws::close_frame(INTERNAL, "the upstream connection was lost")));
                    }
                    break;
                }
            };
            let message = redact_message(&redactor, message);
            let data = message.clone().into_data();
            app.live.count(stats, false, data.len());
            book_usage(app, used, model, &data, stats);
            if tunnel.client_closed.load(Ordering::SeqCst) || client_sender.lock().send(message).is_err() {
                break;
            }
        }
        tunnel.finish(client_tcp, up_tcp);
    };
    std::thread::scope(|scope| {
        let spawned =
            std::thread::Builder::new().name("live-down".into()).spawn_scoped(scope, move || down(first));
        if spawned.is_err() {
            log::warn!("cannot start a Live relay thread");
            let _ = client_tcp.shutdown(std::net::Shutdown::Both);
            let _ = up_tcp.shutdown(std::net::Shutdown::Both);
            return;
        }
        // Client → Google.
        loop {
            match client_reader.read() {
                Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                    app.live.count(stats, true, m.len());
                    if tunnel.upstream_closed.load(Ordering::SeqCst) || up_sender.lock().send(m).is_err() {
                        break;
                    }
                }
                Ok(Message::Ping(_)) => {
                    let _ = client_reader.flush();
                }
                Ok(Message::Close(frame)) => {
                    let frame = frame.unwrap_or_else(|| ws::close_frame(1005, ""));
                    if !tunnel.client_closed.swap(true, Ordering::SeqCst) {
                        // The client closed first: answer it, pass its close on.
                        let _ = client_reader.flush();
                        tunnel.closed_with(u16::from(frame.code));
                        if !tunnel.upstream_closed.swap(true, Ordering::SeqCst) {
                            let _ = up_sender.lock().close(Some(frame));
                        }
                    }
                    break;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Capacity(_)) => {
                    // Over 16 MiB: the client hears why; Google hears we are going.
                    if !tunnel.client_closed.swap(true, Ordering::SeqCst) {
                        tunnel.closed_with(TOO_BIG);
                        let _ = client_sender
                            .lock()
                            .close(Some(ws::close_frame(TOO_BIG, "a message over 16 MiB")));
                    }
                    if !tunnel.upstream_closed.swap(true, Ordering::SeqCst) {
                        let _ = up_sender
                            .lock()
                            .close(Some(ws::close_frame(GOING_AWAY, "the client sent too much")));
                    }
                    break;
                }
                Err(_) => {
                    // The client vanished (or broke the protocol): tell Google, free everything.
                    if !tunnel.upstream_closed.swap(true, Ordering::SeqCst) {
                        tunnel.closed_with(GOING_AWAY);
                        let _ =
                            up_sender.lock().close(Some(ws::close_frame(GOING_AWAY, "the client went away")));
                    }
                    let _ = client_tcp.shutdown(std::net::Shutdown::Both);
                    break;
                }
            }
        }
        tunnel.finish(client_tcp, up_tcp);
    });
    Ending { close: *tunnel.close_code.lock(), why: None }
}

/// A server frame with every pool key masked (Google's error frames may echo one).
fn redact_message(redactor: &crate::redact::Redactor, message: Message) -> Message {
    match &message {
        Message::Text(t) => match redactor.text(t.as_str()) {
            std::borrow::Cow::Owned(clean) => Message::text(clean),
            std::borrow::Cow::Borrowed(_) => message,
        },
        Message::Binary(b) => match redactor.bytes(b) {
            std::borrow::Cow::Owned(clean) => Message::binary(clean),
            std::borrow::Cow::Borrowed(_) => message,
        },
        _ => message,
    }
}

/// Book the tokens of a `usageMetadata` frame against the session's key and model.
fn book_usage(app: &App, used: &Used, model: Option<&str>, data: &[u8], stats: &SessionStats) {
    if !contains(data, b"usageMetadata") {
        return;
    }
    let Some(tokens) = crate::usage::tokens_of(data).filter(|t| *t > 0) else { return };
    stats.add_tokens(tokens);
    app.pool.lock().add_tokens(used.idx, &used.fingerprint, model, tokens, Utc::now());
    if let Some(c) = &used.client {
        app.clients.book(c, model, 0, tokens, Utc::now());
    }
    app.save.wanted();
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_comes_from_the_setup_message() {
        let m = |s: &str| setup_model(&Message::text(s.to_string()));
        assert_eq!(
            m(r#"{"setup":{"model":"models/gemini-live-2.5-flash"}}"#),
            Some(Some("gemini-live-2.5-flash".into()))
        );
        assert_eq!(m(r#"{"setup":{"model":"gemini-x"}}"#), Some(Some("gemini-x".into())));
        assert_eq!(m(r#"{"setup":{}}"#), Some(None));
        assert_eq!(m(r#"{"clientContent":{}}"#), None);
        assert_eq!(m("not json"), None);
    }

    #[test]
    fn the_upstream_query_loses_the_client_token() {
        let t = Target::parse("/ws/x?key=T&alt=1&access_token=auth_tokens/a");
        assert_eq!(upstream_target("/ws/x", &t, false), "/ws/x?alt=1");
        assert_eq!(upstream_target("/ws/x", &t, true), "/ws/x?alt=1&access_token=auth_tokens/a");
        assert_eq!(upstream_target("/ws/x", &Target::parse("/ws/x?key=T"), false), "/ws/x");
    }
}
