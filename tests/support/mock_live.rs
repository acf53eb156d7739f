//! A scripted mock of Gemini's Live API on loopback: a small WebSocket server (tungstenite over
//! blocking sockets, one thread per connection) that answers `setup` with `setupComplete`, echoes
//! a client's text in several `serverContent` frames spread over time, ends each turn with
//! `usageMetadata`, and can refuse chosen keys at setup (HTTP 429 with Google's JSON, or a close
//! with Google's code and reason). Plain HTTP requests get `POST /v1alpha/auth_tokens` (an
//! ephemeral token, remembered with its key) and 404 otherwise. It records every session: the
//! key or token it came with, its path, its setup and how it closed.
//!
//! Text commands a client can send instead of a turn: `close:CODE:REASON` (the mock closes),
//! `big:N` (one text frame of N bytes back), `leak` (a frame that echoes the key it was called
//! with), `len:…` (the length of the message is echoed, for big client frames).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket};

/// How the mock refuses a key at setup.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The upgrade is answered with this status and JSON body.
    Http { status: u16, body: String },
    /// The upgrade succeeds, and the session is closed right after `setup` with this code and reason.
    Close { code: u16, reason: String },
}

/// Google's per-day quota error as a JSON body.
pub fn quota_per_day_body(model: &str) -> String {
    json!({"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
        "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": model}}]}]}})
    .to_string()
}

/// One session the mock saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub path: String,
    pub query: String,
    /// `x-goog-api-key` as it came.
    pub key: Option<String>,
    /// `Authorization` as it came.
    pub authorization: Option<String>,
    pub setup: Option<Value>,
    /// The close code the client (the proxy) sent, when the session ended that way.
    pub client_close: Option<u16>,
    pub ended: bool,
}

#[derive(Default)]
struct State {
    refusals: HashMap<String, Refusal>,
    /// When not empty, the only keys that may open a session.
    accepted: Vec<String>,
    sessions: Vec<Seen>,
    /// Ephemeral tokens issued: token → key that made it.
    tokens: HashMap<String, String>,
    pieces: usize,
    delay: Duration,
    tokens_per_turn: u64,
}

pub struct MockLive {
    addr: std::net::SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
    open: Arc<AtomicUsize>,
}

impl MockLive {
    pub fn start() -> MockLive {
        MockLive::start_on_port(0)
    }

    pub fn start_on_port(port: u16) -> MockLive {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the mock Live server");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new((
            Mutex::new(State {
                pieces: 3,
                delay: Duration::from_millis(50),
                tokens_per_turn: 21,
                ..State::default()
            }),
            Condvar::new(),
        ));
        let open = Arc::new(AtomicUsize::new(0));
        let (st, op) = (state.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (st, op) = (st.clone(), op.clone());
                std::thread::spawn(move || {
                    op.fetch_add(1, Ordering::SeqCst);
                    let _ = serve(conn, &st);
                    op.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        MockLive { addr, state, open }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Refuse sessions with this key at setup.
    pub fn refuse(&self, key: &str, refusal: Refusal) {
        self.state.0.lock().refusals.insert(key.to_string(), refusal);
    }

    /// Only these keys (and tokens this mock issued) may open a session; others get 403.
    pub fn accept_only(&self, keys: &[&str]) {
        self.state.0.lock().accepted = keys.iter().map(|k| k.to_string()).collect();
    }

    /// Each echo comes in `pieces` frames, `delay` apart.
    pub fn set_echo(&self, pieces: usize, delay: Duration) {
        let mut st = self.state.0.lock();
        st.pieces = pieces.max(1);
        st.delay = delay;
    }

    pub fn tokens_per_turn(&self) -> u64 {
        self.state.0.lock().tokens_per_turn
    }

    pub fn sessions(&self) -> Vec<Seen> {
        self.state.0.lock().sessions.clone()
    }

    /// Connections being served now.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Wait until `n` sessions have ended (each with its close recorded).
    pub fn wait_ended(&self, n: usize, within: Duration) -> Vec<Seen> {
        let (st, cv) = &*self.state;
        let mut st = st.lock();
        let deadline = std::time::Instant::now() + within;
        while st.sessions.iter().filter(|s| s.ended).count() < n {
            if cv.wait_until(&mut st, deadline).timed_out() {
                panic!("{n} Live sessions did not end within {within:?}: {:?}", st.sessions);
            }
        }
        st.sessions.clone()
    }
}

fn serve(conn: TcpStream, state: &Arc<(Mutex<State>, Condvar)>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let request_line = head.first().cloned().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut out = conn.try_clone()?;
    let Some(ws_key) = header("sec-websocket-key") else {
        return rest(
            method,
            path,
            header("x-goog-api-key"),
            header("content-length"),
            &mut reader,
            &mut out,
            state,
        );
    };
    let key = header("x-goog-api-key");
    let index = {
        let mut st = state.0.lock();
        st.sessions.push(Seen {
            path: path.to_string(),
            query: query.to_string(),
            key: key.clone(),
            authorization: header("authorization"),
            ..Seen::default()
        });
        st.sessions.len() - 1
    };
    let end = |client_close: Option<u16>| {
        let (st, cv) = &**state;
        let mut st = st.lock();
        st.sessions[index].ended = true;
        st.sessions[index].client_close = client_close;
        cv.notify_all();
    };
    // The credential: the key, or an ephemeral token this mock issued.
    let token = header("authorization")
        .and_then(|a| a.strip_prefix("Token ").map(str::to_string))
        .or_else(|| query.split('&').find_map(|p| p.strip_prefix("access_token=").map(str::to_string)));
    let credential = {
        let st = state.0.lock();
        let known_key = key.clone().filter(|k| st.accepted.is_empty() || st.accepted.contains(k));
        known_key.or_else(|| token.clone().filter(|t| st.tokens.contains_key(t)))
    };
    let refusal = key.as_ref().and_then(|k| state.0.lock().refusals.get(k).cloned());
    if credential.is_none() {
        let body = r#"{"error":{"code":403,"message":"The caller does not have permission","status":"PERMISSION_DENIED"}}"#;
        write!(
            out,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        end(None);
        return Ok(());
    }
    if let Some(Refusal::Http { status, body }) = &refusal {
        write!(
            out,
            "HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        end(None);
        return Ok(());
    }
    let accept = tungstenite::handshake::derive_accept_key(ws_key.as_bytes());
    write!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )?;
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let mut ws = WebSocket::from_raw_socket(conn, Role::Server, Some(config));
    let setup = match ws.read() {
        Ok(m) => serde_json::from_slice::<Value>(&m.into_data()).ok(),
        Err(_) => {
            end(None);
            return Ok(());
        }
    };
    state.0.lock().sessions[index].setup = setup;
    if let Some(Refusal::Close { code, reason }) = refusal {
        let _ = ws.close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }));
        let _ = ws.read();
        end(None);
        return Ok(());
    }
    let _ = ws.send(Message::binary(
        json!({"setupComplete": {"sessionId": format!("s{index}")}}).to_string().into_bytes(),
    ));
    let credential = credential.unwrap_or_default();
    loop {
        let message = match ws.read() {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => m,
            Ok(Message::Close(frame)) => {
                let _ = ws.flush();
                end(Some(frame.map(|f| u16::from(f.code)).unwrap_or(1005)));
                return Ok(());
            }
            Ok(_) => continue,
            Err(_) => {
                end(None);
                return Ok(());
            }
        };
        let len = message.len();
        let text = text_of(&message.into_data());
        if let Some(rest) = text.strip_prefix("close:") {
            let (code, reason) = rest.split_once(':').unwrap_or((rest, ""));
            let code: u16 = code.parse().unwrap_or(1000);
            let _ =
                ws.close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.to_string().into() }));
            while ws.read().is_ok() {}
            end(None);
            return Ok(());
        }
        if let Some(n) = text.strip_prefix("big:") {
            let n: usize = n.parse().unwrap_or(0);
            let _ = ws.send(Message::text("x".repeat(n)));
            continue;
        }
        let reply = match text.as_str() {
            "leak" => format!("the key {credential} is not valid"),
            t if t.starts_with("len:") => format!("len={len}"),
            _ => text,
        };
        let (mut pieces, delay, tokens) = {
            let st = state.0.lock();
            (st.pieces, st.delay, st.tokens_per_turn)
        };
        if reply.starts_with("the key ") {
            pieces = 1; // Google's error frames are whole
        }
        for piece in split(&reply, pieces) {
            std::thread::sleep(delay);
            let frame = json!({"serverContent": {"modelTurn": {"parts": [{"text": piece}]}}});
            if ws.send(Message::binary(frame.to_string().into_bytes())).is_err() {
                end(None);
                return Ok(());
            }
        }
        let done = json!({"serverContent": {"turnComplete": true},
            "usageMetadata": {"promptTokenCount": 1, "responseTokenCount": tokens - 1, "totalTokenCount": tokens}});
        let _ = ws.send(Message::binary(done.to_string().into_bytes()));
    }
}

/// Plain HTTP: `POST …/auth_tokens` issues an ephemeral token; anything else is 404.
fn rest(
    method: &str,
    path: &str,
    key: Option<String>,
    length: Option<String>,
    reader: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    state: &Arc<(Mutex<State>, Condvar)>,
) -> std::io::Result<()> {
    let mut body = vec![0u8; length.and_then(|l| l.parse().ok()).unwrap_or(0)];
    reader.read_exact(&mut body)?;
    let (status, answer) = match (method, path.ends_with("/auth_tokens"), key) {
        ("POST", true, Some(key)) => {
            let mut st = state.0.lock();
            let token = format!("auth_tokens/mock-{}", st.tokens.len() + 1);
            st.tokens.insert(token.clone(), key);
            (200, json!({"name": token}).to_string())
        }
        _ => (404, r#"{"error":{"code":404,"message":"not found","status":"NOT_FOUND"}}"#.to_string()),
    };
    write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    )?;
    Ok(())
}

/// The text a client sent: every `text` field of its message (`clientContent` turns' parts,
/// `realtimeInput.text`, in either spelling of the field names), else the raw text.
fn text_of(data: &[u8]) -> String {
    fn collect(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("text", Value::String(t)) => out.push_str(t),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return String::from_utf8_lossy(data).into_owned();
    };
    let mut out = String::new();
    collect(&v, &mut out);
    out
}

/// `text` in `n` pieces of about the same length (at character boundaries).
fn split(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let size = chars.len().div_ceil(n).max(1);
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}
