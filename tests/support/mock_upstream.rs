//! Scripted mock of Google's Gemini API (generativelanguage.googleapis.com) for integration tests.
//!
//! A real HTTP/1.1 server on `127.0.0.1:0` (a thread per connection, keep-alive, Content-Length
//! and chunked request bodies) that answers like Gemini by default and can be scripted to fail.
//! Depends only on `std` and `serde_json`.
//!
//! ```text
//! let mock = MockUpstream::start(&["KEY1", "KEY2"]);
//! mock.set_key_reply("KEY1", quota_per_day_429("gemini-2.5-flash")); // KEY1 is out of quota
//! mock.set_script(|rec| (rec.model()? == "gemini-2.5-pro").then(overloaded_503));
//! // ... point the proxy at mock.url() and exercise it ...
//! let seen = mock.wait_for_requests(2, Duration::from_secs(5));
//! ```
//! Each request is answered by the script if it returns `Some`, else by the reply set for its key,
//! else by the default behaviour (valid keys, models, streams, files, cached contents: see below).
//!
//! Every server-side resource (files, cached contents, upload sessions, batches, file search
//! stores, interactions and the rest of the Interactions family) belongs to the Cloud *project* of
//! the key that made it, as at Google: any key of that project may use it, a key of another
//! project is refused (see `mock_resources.rs` and `mock_interactions.rs`). Keys are their own
//! project unless `set_projects` groups them. Routes exist under `/v1/`, `/v1beta/` and `/v1alpha/`.
//!
//! Wire framing of the two streaming forms of `:streamGenerateContent`:
//! * `?alt=sse`: `text/event-stream`, one `data: <one-line json>\r\n\r\n` per event, each event in
//!   its own HTTP chunk. Google terminates events with CRLF pairs (see mokksy/ai-mocks#703 and
//!   envoyproxy/ai-gateway#1536); its JSON puts a space after `:` but none after `,`, copied here.
//! * no `alt`: `application/json; charset=UTF-8`, a JSON array streamed element by element:
//!   chunk 1 = `[` + element, chunk i>1 = `\n,\r\n` + element, last chunk = `\n]`; the elements are
//!   pretty-printed. The delimiter is the one Gemini clients split on (cequence-io
//!   openai-scala-client, GeminiServiceImpl: `framingDelimiter = "\n,\r\n"`, strip `[` and `]`).
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

#[path = "mock_interactions.rs"]
mod interactions;
#[path = "mock_resources.rs"]
mod resources;

/// How a scripted stream ends once its events are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Terminate properly (JSON-array `]`, then the zero-length chunk); keep-alive goes on.
    Finish,
    /// Drop the socket right after the events, without the terminating chunk.
    CloseAbruptly,
}

/// What the mock answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `Content-Type: application/json; charset=UTF-8`, pretty-printed body.
    Json { status: u16, body: Value },
    /// Any complete response; `Content-Length` is added unless present in `headers`.
    Http { status: u16, headers: Vec<(String, String)>, body: Vec<u8> },
    /// Bytes written verbatim (garbage, not HTTP, a truncated response), then the socket closes.
    Raw(Vec<u8>),
    /// 200 `text/event-stream`, `data: {json}\r\n\r\n` per event, `delay` between events.
    Sse { events: Vec<Value>, delay: Duration, then: StreamEnd },
    /// 200 JSON-array stream (framing in the module docs), `delay` between elements.
    JsonArray { chunks: Vec<Value>, delay: Duration, then: StreamEnd },
    /// A chunked response whose chunks are given verbatim, `delay` between chunks.
    Chunked {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Vec<u8>>,
        delay: Duration,
        then: StreamEnd,
    },
    /// Read the request, never answer; the connection stays open until the client leaves or the
    /// mock is dropped.
    Hang,
    /// Close the connection without answering.
    Close,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Json { status, body }
    }

    /// Adds a response header to a `Json` (which becomes the equivalent `Http`) or `Http` reply.
    pub fn with_header(self, name: &str, value: &str) -> Reply {
        let (status, mut headers, body) = match self {
            Reply::Json { status, body } => (status, vec![json_content_type()], pretty(&body)),
            Reply::Http { status, headers, body } => (status, headers, body),
            other => return other,
        };
        headers.push((name.to_string(), value.to_string()));
        Reply::Http { status, headers, body }
    }

    /// The JSON body of a `Json` reply (e.g. to embed a ready-made error in a stream event).
    pub fn json_body(&self) -> Option<&Value> {
        match self {
            Reply::Json { body, .. } => Some(body),
            _ => None,
        }
    }
}

// ---- Ready-made Google error replies -----------------------------------------------------------

const RATE_LIMIT_DOCS: &str = "https://ai.google.dev/gemini-api/docs/rate-limits";

/// `{"error":{"code","message","status"}}`, the envelope of every Google API error.
pub fn google_error(code: u16, status: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message, "status": status}})
}

fn google_error_reply(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(code, google_error(code, status, message))
}

fn quota_429(model: &str, quota_id: &str, limit: u32, retry_delay: &str) -> Reply {
    let metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests";
    let message = format!(
        "You exceeded your current quota, please check your plan and billing details. For more \
         information on this error, head to: {RATE_LIMIT_DOCS}. To monitor your current usage, \
         head to: https://ai.dev/usage?tab=rate-limit. \n* Quota exceeded for metric: {metric}, \
         limit: {limit}, model: {model}\nPlease retry in {retry_delay}."
    );
    // Google's detail order: QuotaFailure, Help, RetryInfo.
    let body = json!({"error": {"code": 429, "message": message, "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                "quotaMetric": metric, "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": model},
                "quotaValue": limit.to_string()}]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
                "description": "Learn more about Gemini API quotas", "url": RATE_LIMIT_DOCS}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}]}});
    Reply::json(429, body)
}

/// Free-tier requests-per-day exhausted. Like Google it still carries a short RetryInfo.
pub fn quota_per_day_429(model: &str) -> Reply {
    quota_429(model, "GenerateRequestsPerDayPerProjectPerModel-FreeTier", 250, "26s")
}

/// Free-tier requests-per-minute exhausted; `retry_delay` like `"26s"` or `"38.922534355s"`.
pub fn quota_per_minute_429(model: &str, retry_delay: &str) -> Reply {
    quota_429(model, "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", 10, retry_delay)
}

pub fn rate_limited_429_no_details() -> Reply {
    let msg = "Resource has been exhausted (e.g. check quota).";
    google_error_reply(429, "RESOURCE_EXHAUSTED", msg)
}

pub fn key_invalid_400() -> Reply {
    let msg = "API key not valid. Please pass a valid API key.";
    Reply::json(
        400,
        json!({"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": msg}]}}),
    )
}

/// What Google answers to a request that carries no key at all.
pub fn unregistered_403() -> Reply {
    let msg = "Method doesn't allow unregistered callers (callers without established identity). \
               Please use API Key or other form of API consumer identity to call this API.";
    google_error_reply(403, "PERMISSION_DENIED", msg)
}

pub fn suspended_403() -> Reply {
    let msg = "Permission denied: Consumer 'api_key:AIzaSyMockSuspendedKey' has been suspended.";
    Reply::json(
        403,
        json!({"error": {"code": 403, "message": msg, "status": "PERMISSION_DENIED",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com",
                         "consumer": "projects/123456789012"}}]}}),
    )
}

/// A suspended key's 403 as Google answers it in 2026: the whole key in `message`, in
/// `ErrorInfo.metadata.containerInfo` and in a `LocalizedMessage` (public error reports show it).
pub fn suspended_403_echoing(key: &str) -> Reply {
    let msg = format!("Permission denied: Consumer 'api_key:{key}' has been suspended.");
    Reply::json(
        403,
        json!({"error": {"code": 403, "message": msg, "status": "PERMISSION_DENIED",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "CONSUMER_SUSPENDED", "domain": "googleapis.com",
            "metadata": {"containerInfo": format!("api_key:{key}"),
                         "service": "generativelanguage.googleapis.com",
                         "consumer": "projects/123456789012"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg}]}}),
    )
}

/// An invalid key's 400 whose message and `LocalizedMessage` quote the key (as some of Google's
/// answers to a malformed or leaked key do).
pub fn key_invalid_400_echoing(key: &str) -> Reply {
    let msg = format!("API key not valid. Please pass a valid API key. (key: {key})");
    Reply::json(
        400,
        json!({"error": {"code": 400, "message": msg, "status": "INVALID_ARGUMENT",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": msg}]}}),
    )
}

/// A 500 whose message echoes the key that made the request.
pub fn internal_500_echoing(key: &str) -> Reply {
    google_error_reply(500, "INTERNAL", &format!("Internal error while serving api_key:{key}"))
}

pub fn overloaded_503() -> Reply {
    let msg = "The model is overloaded. Please try again later.";
    google_error_reply(503, "UNAVAILABLE", msg)
}

pub fn internal_500() -> Reply {
    let msg = "An internal error has occurred. Please retry or report in \
               https://developers.generativeai.google/guide/troubleshooting";
    google_error_reply(500, "INTERNAL", msg)
}

pub fn not_found_404(message: &str) -> Reply {
    google_error_reply(404, "NOT_FOUND", message)
}

// ---- Recorded requests -------------------------------------------------------------------------

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// The request path without the query, as sent (not percent-decoded).
    pub path: String,
    /// The raw query string without `?` (empty if none).
    pub query: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// `x-goog-api-key`, else `?key=`, else `Authorization: Bearer`.
    pub key: Option<String>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(k) == name).then(|| decode(v))
        })
    }

    /// The model, without `models/`: from `.../models/{model}[:method]`, else the JSON body's
    /// `model` field (OpenAI layer, cachedContents).
    pub fn model(&self) -> Option<String> {
        let path = percent_decode(&self.path);
        if let Some((_, rest)) = path.split_once("/models/") {
            let model = rest.split([':', '/']).next().unwrap_or_default();
            return (!model.is_empty()).then(|| model.to_string());
        }
        let model = self.json()?.get("model")?.as_str()?.to_string();
        Some(model.trim_start_matches("models/").to_string())
    }

    /// The bearer token of an `Authorization` header, if any.
    pub fn bearer(&self) -> Option<String> {
        let auth = self.header("authorization")?;
        let (scheme, token) = auth.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string())
    }
}

// ---- The mock ----------------------------------------------------------------------------------

type Script = Arc<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

struct Upload {
    project: String,
    /// The API version the session was started on; its upload URL keeps it.
    version: String,
    /// `fileSearchStores/{s}` for an upload into a file search store, else a plain file.
    store: Option<String>,
    mime_type: String,
    display_name: Option<String>,
    received: Vec<u8>,
}

#[derive(Default)]
struct State {
    valid_keys: HashSet<String>,
    script: Option<Script>,
    key_replies: HashMap<String, Reply>,
    stream_delay: Duration,
    stream_events: usize,
    models_page_size: usize,
    requests: Vec<Recorded>,
    uploads: HashMap<String, Upload>,
    /// key -> Cloud project; a key not listed is its own project.
    projects: HashMap<String, String>,
    /// Every server-side resource, with its owning project, in creation order.
    res: resources::Resources,
    /// Default page size of the resource lists (default 10).
    list_page_size: usize,
    /// Hops of an interaction: the first `n - 1` answer `requires_continuation` (default 1).
    interaction_hops: usize,
    /// Mixed into the opaque ids (interactions, continuation tokens) so two mocks differ.
    id_seed: u64,
    next_id: u64,
    conns: HashMap<u64, TcpStream>,
    streams_aborted: usize,
}

impl State {
    fn project_of(&self, key: &str) -> String {
        self.projects.get(key).cloned().unwrap_or_else(|| key.to_string())
    }

    /// `{prefix}{n:06}` with a number unique in this mock.
    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:06}", self.next_id)
    }

    /// `{prefix}` and 16 hex digits that look random but never repeat (splitmix64 of a counter).
    fn opaque(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        let mut z = self.id_seed.wrapping_add(self.next_id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        format!("{prefix}{:016x}", z ^ (z >> 31))
    }
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
    addr: SocketAddr,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits `d` unless the mock stops first; returns false if it stopped.
    fn pause(&self, d: Duration) -> bool {
        let guard = self.lock();
        let _unused = self.changed.wait_timeout_while(guard, d, |_| !self.stopped());
        !self.stopped()
    }

    fn wait_until<T>(&self, timeout: Duration, mut done: impl FnMut(&State) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(out) = done(&state) {
                return Some(out);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn fresh_id(&self, prefix: &str) -> String {
        self.lock().fresh(prefix)
    }
}

/// The mock upstream. Dropping it stops the server and closes every open connection.
pub struct MockUpstream {
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts on an ephemeral port of 127.0.0.1.
    pub fn start(valid_keys: &[&str]) -> MockUpstream {
        MockUpstream::start_on_port(0, valid_keys)
    }

    pub fn start_on_port(port: u16, valid_keys: &[&str]) -> MockUpstream {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind mock upstream");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                valid_keys: valid_keys.iter().map(|k| k.to_string()).collect(),
                stream_events: 3,
                models_page_size: 50,
                list_page_size: 10,
                interaction_hops: 1,
                id_seed: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                ..State::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            addr: listener.local_addr().expect("mock upstream address"),
        });
        let accept_shared = shared.clone();
        let accept_thread = thread::Builder::new()
            .name("mock-upstream-accept".into())
            .spawn(move || accept_loop(accept_shared, listener))
            .expect("spawn mock upstream");
        MockUpstream { shared, accept_thread: Some(accept_thread) }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.shared.url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Consulted first for every request: `Some` answers it, `None` falls through to the per-key
    /// replies, then to the default behaviour.
    pub fn set_script(&self, f: impl Fn(&Recorded) -> Option<Reply> + Send + Sync + 'static) {
        self.shared.lock().script = Some(Arc::new(f));
    }

    pub fn clear_script(&self) {
        self.shared.lock().script = None;
    }

    /// Every request carrying `key` gets `reply` (after the script, before the defaults).
    pub fn set_key_reply(&self, key: &str, reply: Reply) {
        self.shared.lock().key_replies.insert(key.to_string(), reply);
    }

    pub fn clear_key_reply(&self, key: &str) {
        self.shared.lock().key_replies.remove(key);
    }

    pub fn set_valid_keys(&self, keys: &[&str]) {
        self.shared.lock().valid_keys = keys.iter().map(|k| k.to_string()).collect();
    }

    /// Delay between the events of default streams (default 0).
    pub fn set_stream_delay(&self, d: Duration) {
        self.shared.lock().stream_delay = d;
    }

    /// Number of events of default streams (default 3, at least 1).
    pub fn set_stream_events(&self, n: usize) {
        self.shared.lock().stream_events = n.max(1);
    }

    /// Page size of `models.list` when the request has no `pageSize` (default 50).
    pub fn set_models_page_size(&self, n: usize) {
        self.shared.lock().models_page_size = n.max(1);
    }

    /// Groups keys into Cloud projects: `(key, project)` pairs; replaces the previous grouping. A key
    /// not listed is its own project (the default for every key).
    pub fn set_projects(&self, pairs: &[(&str, &str)]) {
        self.shared.lock().projects = pairs.iter().map(|(k, p)| (k.to_string(), p.to_string())).collect();
    }

    /// The project of `key` (the key itself unless `set_projects` named one). Tests tell which
    /// project served a request with `mock.project_of(rec.key.as_deref().unwrap_or_default())`.
    pub fn project_of(&self, key: &str) -> String {
        self.shared.lock().project_of(key)
    }

    /// The project owning a resource, by its name (`files/abc`, `cachedContents/c`, `batches/b`,
    /// `fileSearchStores/s`, `interactions/v1_…`, `agents/agent_…`, `auth_tokens/…`, …).
    pub fn owner_of(&self, name: &str) -> Option<String> {
        self.shared.lock().res.get(name).map(|e| e.project.clone())
    }

    /// An uploaded file `files/{id}` owned by `project`, made "outside the proxy"; returns its name.
    pub fn add_file(&self, project: &str, id: &str) -> String {
        resources::seed_file(&self.shared, project, id)
    }

    /// A cached content `cachedContents/{id}` (of gemini-2.5-flash) owned by `project`.
    pub fn add_cache(&self, project: &str, id: &str) -> String {
        resources::seed_cache(&self.shared, project, id)
    }

    /// An empty file search store `fileSearchStores/{id}` owned by `project`.
    pub fn add_file_search_store(&self, project: &str, id: &str) -> String {
        resources::seed_store(&self.shared, project, id)
    }

    /// A stored, completed interaction of `model` owned by `project`; returns its id.
    pub fn add_interaction(&self, project: &str, model: &str) -> String {
        interactions::seed(&self.shared, project, model)
    }

    /// Default page size of the resource lists (files, cachedContents, batches, fileSearchStores,
    /// documents, the Interactions family) when the request has none (default 10, at least 1).
    pub fn set_list_page_size(&self, n: usize) {
        self.shared.lock().list_page_size = n.max(1);
    }

    /// An interaction takes `n` hops (default 1): the first `n - 1` creates of a turn answer
    /// `requires_continuation` with a `continuation_token` (background ones excepted).
    pub fn set_interaction_hops(&self, n: usize) {
        self.shared.lock().interaction_hops = n.max(1);
    }

    /// Every request seen, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Waits until at least `n` requests arrived (or `timeout`), then returns all of them.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let done = |s: &State| (s.requests.len() >= n).then(|| s.requests.clone());
        self.shared.wait_until(timeout, done).unwrap_or_else(|| self.requests())
    }

    /// Client connections currently open.
    pub fn connections_open(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Waits until no client connection is open; false on timeout.
    pub fn wait_connections_closed(&self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |s| s.conns.is_empty().then_some(())).is_some()
    }

    /// Streams whose writing failed because the peer went away.
    pub fn stream_aborted_count(&self) -> usize {
        self.shared.lock().streams_aborted
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.shared.addr); // wakes the accept loop
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
        for conn in self.shared.lock().conns.values() {
            let _ = conn.shutdown(Shutdown::Both); // unblocks readers, hanging replies included
        }
        self.shared.changed.notify_all(); // wakes streams pausing between events
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut next_conn = 0u64;
    for stream in listener.incoming() {
        if shared.stopped() {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(registered) = stream.try_clone() else {
            continue;
        };
        next_conn += 1;
        let id = next_conn;
        shared.lock().conns.insert(id, registered);
        let conn_shared = shared.clone();
        let spawned = thread::Builder::new().name(format!("mock-upstream-conn-{id}")).spawn(move || {
            let _closed = ConnGuard { shared: &conn_shared, id };
            serve_connection(&conn_shared, stream);
        });
        if spawned.is_err() {
            shared.lock().conns.remove(&id);
        }
    }
}

/// Unregisters a connection when its thread ends (after the thread's own handle was dropped).
struct ConnGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.shared.lock().conns.remove(&self.id) {
            let _ = conn.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
    }
}

// ---- HTTP/1.1 ----------------------------------------------------------------------------------

fn json_content_type() -> (String, String) {
    ("Content-Type".to_string(), "application/json; charset=UTF-8".to_string())
}

fn serve_connection(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(&stream);
    loop {
        let (rec, keep_alive) = match read_request(&mut reader, &stream) {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(_) => {
                let body = pretty(&google_error(400, "INVALID_ARGUMENT", "Malformed request."));
                let _ = write_plain(&stream, 400, &[json_content_type()], &body, false);
                return;
            }
        };
        let script = {
            let mut state = shared.lock();
            state.requests.push(rec.clone());
            state.script.clone()
        };
        shared.changed.notify_all();
        let scripted = script.and_then(|f| f(&rec));
        let keyed = || rec.key.as_ref().and_then(|k| shared.lock().key_replies.get(k).cloned());
        let reply = scripted.or_else(keyed).unwrap_or_else(|| default_reply(shared, &rec));
        if !write_reply(shared, &stream, reply, keep_alive) || !keep_alive || shared.stopped() {
            return;
        }
    }
}

fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if reader.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// Reads one request; `Ok(None)` on a clean end of the connection.
fn read_request(
    reader: &mut BufReader<&TcpStream>,
    mut out: &TcpStream,
) -> io::Result<Option<(Recorded, bool)>> {
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // tolerate stray CRLF between requests
            Some(l) => break l,
        }
    };
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("bad request line"));
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("eof in headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad("bad header"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.to_ascii_lowercase());
    if header("expect").is_some_and(|v| v == "100-continue") {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let size_line = read_line(reader)?.ok_or_else(|| bad("eof in chunk size"))?;
            let size_hex = size_line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                while !read_line(reader)?.ok_or_else(|| bad("eof in trailers"))?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            read_line(reader)?;
        }
    } else if let Some(len) = header("content-length") {
        body.resize(len.parse().map_err(|_| bad("bad content-length"))?, 0);
        reader.read_exact(&mut body)?;
    }
    let keep_alive = match header("connection") {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => version == "HTTP/1.1",
    };
    // Absolute-form targets (`http://host/path`) are reduced to the path.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut rec = Recorded {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
        key: None,
    };
    rec.key = (rec.header("x-goog-api-key").map(str::to_string))
        .or_else(|| rec.query_param("key"))
        .or_else(|| rec.bearer());
    Ok(Some((rec, keep_alive)))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn head(status: u16, headers: &[(String, String)], keep_alive: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

fn write_plain(
    mut out: &TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut headers = headers.to_vec();
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
        headers.push(("Content-Length".into(), body.len().to_string()));
    }
    let mut bytes = head(status, &headers, keep_alive);
    bytes.extend_from_slice(body);
    out.write_all(&bytes)?;
    out.flush()
}

/// Writes `reply`; returns whether the connection may serve another request.
fn write_reply(shared: &Shared, stream: &TcpStream, reply: Reply, keep_alive: bool) -> bool {
    match reply {
        Reply::Json { status, body } => {
            write_plain(stream, status, &[json_content_type()], &pretty(&body), keep_alive).is_ok()
        }
        Reply::Http { status, headers, body } => {
            write_plain(stream, status, &headers, &body, keep_alive).is_ok()
        }
        Reply::Raw(bytes) => {
            let mut out = stream;
            let _ = out.write_all(&bytes).and_then(|_| out.flush());
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Reply::Close => {
            let _ = stream.shutdown(Shutdown::Both);
            false
        }
        Reply::Hang => {
            // Blocks until the client leaves or the mock's Drop shuts the socket down.
            let (mut input, mut sink) = (stream, [0u8; 1024]);
            while matches!(input.read(&mut sink), Ok(n) if n > 0) {}
            false
        }
        Reply::Sse { events, delay, then } => {
            let headers = [("Content-Type", "text/event-stream"), ("Content-Disposition", "attachment")];
            let head = head(200, &headers.map(|(n, v)| (n.into(), v.into())), keep_alive);
            write_chunked(shared, stream, head, events.iter().map(sse_event).collect(), delay, then)
        }
        Reply::JsonArray { chunks, delay, then } => {
            let last = chunks.len().saturating_sub(1);
            let parts = chunks.iter().enumerate().map(|(i, element)| {
                let mut part = if i == 0 { b"[".to_vec() } else { b"\n,\r\n".to_vec() };
                part.extend(serde_json::to_vec_pretty(element).unwrap_or_default());
                if i == last && then == StreamEnd::Finish {
                    part.extend_from_slice(b"\n]");
                }
                part
            });
            let parts = if chunks.is_empty() { vec![b"[]".to_vec()] } else { parts.collect() };
            write_chunked(shared, stream, head(200, &[json_content_type()], keep_alive), parts, delay, then)
        }
        Reply::Chunked { status, headers, chunks, delay, then } => {
            write_chunked(shared, stream, head(status, &headers, keep_alive), chunks, delay, then)
        }
    }
}

/// A chunked response (`head` must not carry a length), one HTTP chunk per element of `chunks`,
/// each flushed at once, `delay` between them.
fn write_chunked(
    shared: &Shared,
    mut out: &TcpStream,
    mut head: Vec<u8>,
    chunks: Vec<Vec<u8>>,
    delay: Duration,
    then: StreamEnd,
) -> bool {
    let aborted = || {
        shared.lock().streams_aborted += 1;
        shared.changed.notify_all();
        false
    };
    head.truncate(head.len() - 2); // reopen the header block
    head.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
    if out.write_all(&head).and_then(|_| out.flush()).is_err() {
        return aborted();
    }
    for (i, chunk) in chunks.iter().enumerate().filter(|(_, c)| !c.is_empty()) {
        if i > 0 && !delay.is_zero() && !shared.pause(delay) {
            return false; // the mock is shutting down
        }
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if out.write_all(&framed).and_then(|_| out.flush()).is_err() {
            return aborted();
        }
    }
    if then == StreamEnd::CloseAbruptly {
        let _ = out.shutdown(Shutdown::Both);
        return false;
    }
    out.write_all(b"0\r\n\r\n").and_then(|_| out.flush()).is_ok() || aborted()
}

fn pretty(value: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// `data: <json>\r\n\r\n`, the JSON in Google's SSE style: `{"a": 1,"b": [2]}`.
fn sse_event(value: &Value) -> Vec<u8> {
    fn google_json(value: &Value) -> String {
        let join = |items: Vec<String>| items.join(",");
        match value {
            Value::Object(map) => format!(
                "{{{}}}",
                join(map.iter().map(|(k, v)| format!("{}: {}", json!(k), google_json(v))).collect())
            ),
            Value::Array(items) => format!("[{}]", join(items.iter().map(google_json).collect())),
            scalar => scalar.to_string(),
        }
    }
    format!("data: {}\r\n\r\n", google_json(value)).into_bytes()
}

/// Decodes `%XX` escapes (a `+` stays a `+`).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- Default behaviour: a small, consistent imitation of the Gemini API ------------------------

const GENERATE: &[&str] = &["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"];
const EMBED: &[&str] = &["embedContent", "batchEmbedContents", "countTokens"];

/// (id, display name, input limit, output limit, methods)
const MODELS: &[(&str, &str, u64, u64, &[&str])] = &[
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1_048_576, 65_536, GENERATE),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1_048_576, 65_536, GENERATE),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1_048_576, 65_536, GENERATE),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1_048_576, 8_192, GENERATE),
    ("gemini-3-pro-preview", "Gemini 3 Pro Preview", 1_048_576, 65_536, GENERATE),
    // Answers every generateContent with a per-minute 429 (for clients' rate-limit paths).
    ("exhausted-model", "Always rate-limited", 1_048_576, 8_192, GENERATE),
    ("gemini-embedding-001", "Gemini Embedding 001", 2_048, 1, EMBED),
    ("text-embedding-004", "Text Embedding 004", 2_048, 1, EMBED),
];

const CREATE_TIME: &str = "2025-01-01T00:00:00.000000Z";
const EXPIRE_TIME: &str = "2025-01-03T00:00:00.000000Z";

fn model_json(&(id, display, input, output, methods): &(&str, &str, u64, u64, &[&str])) -> Value {
    json!({"name": format!("models/{id}"), "version": "001", "displayName": display,
        "description": format!("{display}, as served by the mock upstream"),
        "inputTokenLimit": input, "outputTokenLimit": output,
        "supportedGenerationMethods": methods})
}

fn find_model(id: &str) -> Option<&'static (&'static str, &'static str, u64, u64, &'static [&'static str])> {
    let id = id.trim_start_matches("models/");
    MODELS.iter().find(|m| m.0 == id)
}

fn permission_denied(message: String) -> Reply {
    google_error_reply(403, "PERMISSION_DENIED", &message)
}

fn file_denied(id: &str) -> Reply {
    permission_denied(format!("You do not have permission to access the File {id} or it may not exist."))
}

fn cache_denied() -> Reply {
    permission_denied("CachedContent not found (or permission denied)".to_string())
}

fn invalid_argument(message: &str) -> Reply {
    google_error_reply(400, "INVALID_ARGUMENT", message)
}

fn route_not_found() -> Reply {
    not_found_404("Method not found.")
}

fn check_key(shared: &Shared, key: Option<&str>) -> Result<String, Reply> {
    let key = key.ok_or_else(unregistered_403)?;
    if shared.lock().valid_keys.contains(key) { Ok(key.to_string()) } else { Err(key_invalid_400()) }
}

/// One request to an API route: its key checked, its JSON body parsed.
struct Call<'a> {
    shared: &'a Shared,
    rec: &'a Recorded,
    /// `v1`, `v1beta` or `v1alpha`, as the path named it.
    version: &'a str,
    /// The project of the request's key.
    project: String,
    body: Value,
}

const VERSIONS: [&str; 3] = ["v1", "v1beta", "v1alpha"];

/// `(prefix, version, rest)` of a path: `/upload/v1beta/files` gives `("upload", "v1beta", "files")`,
/// `/v1/models` gives `("", "v1", "models")`; the prefix is `upload`, `download` or empty.
fn split_version(path: &str) -> Option<(&'static str, &str, &str)> {
    let path = path.strip_prefix('/')?;
    let (prefix, path) = ["upload", "download"]
        .into_iter()
        .find_map(|p| path.strip_prefix(p)?.strip_prefix('/').map(|rest| (p, rest)))
        .unwrap_or(("", path));
    let (version, rest) = path.split_once('/')?;
    VERSIONS.contains(&version).then_some((prefix, version, rest))
}

fn default_reply(shared: &Shared, rec: &Recorded) -> Reply {
    let path = percent_decode(&rec.path);
    let method = rec.method.as_str();
    if path == "/v1beta/openai/chat/completions" && method == "POST" {
        return openai_chat(shared, rec);
    }
    let Some((prefix, version, rest)) = split_version(&path) else {
        return route_not_found();
    };
    if prefix == "upload"
        && method == "POST"
        && let Some(upload_id) = rec.query_param("upload_id")
    {
        return upload_continue(shared, rec, &upload_id);
    }
    let key = match check_key(shared, rec.key.as_deref()) {
        Ok(key) => key,
        Err(reply) => return reply,
    };
    let project = shared.lock().project_of(&key);
    if prefix == "upload" {
        return match (method, rest.strip_suffix(":uploadToFileSearchStore")) {
            ("POST", None) if rest == "files" => upload_start(shared, rec, project, version, None),
            ("POST", Some(store)) => match resources::owned_store(shared, &project, store) {
                Ok(store) => upload_start(shared, rec, project, version, Some(store)),
                Err(reply) => reply,
            },
            _ => route_not_found(),
        };
    }
    let body = if rec.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice::<Value>(&rec.body) {
            Ok(body) => body,
            Err(_) => return invalid_argument("Invalid JSON payload received. Unexpected token."),
        }
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let call = Call { shared, rec, version, project, body };
    if prefix == "download" {
        return match (method, segments.as_slice()) {
            ("GET", ["files", file]) => resources::download(&call, file),
            _ => route_not_found(),
        };
    }
    match (method, segments.as_slice()) {
        ("GET", ["models"]) => list_models(shared, rec),
        ("GET", ["models", id]) if !id.contains(':') => match find_model(id) {
            Some(m) => Reply::json(200, model_json(m)),
            None => not_found_404(&format!("Model is not found: models/{id} for api version {version}")),
        },
        ("POST", ["models", call_name]) => match call_name.split_once(':') {
            Some((model, action)) => call_model(&call, model, action),
            None => route_not_found(),
        },
        _ => resources::route(&call, &segments)
            .or_else(|| interactions::route(&call, &segments))
            .unwrap_or_else(route_not_found),
    }
}

fn list_models(shared: &Shared, rec: &Recorded) -> Reply {
    let default_size = shared.lock().models_page_size;
    let page_size = rec.query_param("pageSize").and_then(|s| s.parse::<usize>().ok());
    let page_size = page_size.filter(|&n| n > 0).unwrap_or(default_size);
    let start = match rec.query_param("pageToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => match token.strip_prefix("page-").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n < MODELS.len() => n,
            _ => return invalid_argument("Invalid page token."),
        },
    };
    let end = (start + page_size).min(MODELS.len());
    let mut body = json!({"models": MODELS[start..end].iter().map(model_json).collect::<Vec<_>>()});
    if end < MODELS.len() {
        body["nextPageToken"] = json!(format!("page-{end}"));
    }
    Reply::json(200, body)
}

fn call_model(c: &Call, model: &str, action: &str) -> Reply {
    let (shared, rec, body, version) = (c.shared, c.rec, &c.body, c.version);
    let unsupported = || {
        not_found_404(&format!(
            "models/{model} is not found for API version {version}, or is not supported for \
             {action}. Call ListModels to see the list of available models and their supported \
             methods."
        ))
    };
    let Some(&(_, _, _, _, methods)) = find_model(model) else {
        return unsupported();
    };
    let generates = methods.contains(&"generateContent");
    let prompt = count_words(body).max(1);
    match action {
        "generateContent" | "streamGenerateContent" if generates => {
            let note = match resources::check_references(&shared.lock(), &c.project, body) {
                Ok(stores) => resources::grounding_note(&stores),
                Err(denied) => return denied,
            };
            let response_id = shared.fresh_id("mock-response-");
            if action == "generateContent" {
                return answer_generate(model, &response_id, body, prompt, &note);
            }
            let (delay, n) = {
                let state = shared.lock();
                (state.stream_delay, state.stream_events)
            };
            // A function call (tools offered, no tool result yet) streams as one event, as Gemini
            // sends it; an answer the unary path refuses is refused here too.
            let events = match answer_generate(model, &response_id, body, prompt, &note) {
                Reply::Json { status: 200, body: whole }
                    if whole.pointer("/candidates/0/content/parts/0/functionCall").is_some() =>
                {
                    vec![whole]
                }
                Reply::Json { status: 200, .. } => stream_events(model, &response_id, prompt, n, &note),
                refused => return refused,
            };
            if rec.query_param("alt").as_deref() == Some("sse") {
                Reply::Sse { events, delay, then: StreamEnd::Finish }
            } else {
                Reply::JsonArray { chunks: events, delay, then: StreamEnd::Finish }
            }
        }
        "countTokens" => match resources::check_references(&shared.lock(), &c.project, body) {
            Ok(_) => Reply::json(
                200,
                json!({"totalTokens": prompt,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}),
            ),
            Err(denied) => denied,
        },
        "batchGenerateContent" if generates => resources::create_batch(c, model, false),
        "asyncBatchEmbedContent" if !generates => resources::create_batch(c, model, true),
        "embedContent" if !generates => Reply::json(200, json!({"embedding": embedding(body)})),
        "batchEmbedContents" if !generates => match body.get("requests").and_then(Value::as_array) {
            Some(requests) => Reply::json(
                200,
                json!({"embeddings":
                requests.iter().map(embedding).collect::<Vec<_>>()}),
            ),
            None => invalid_argument("* BatchEmbedContentsRequest.requests: requests is required"),
        },
        _ => unsupported(),
    }
}

/// The thought signature the mock attaches to function calls (base64, as Gemini 3 sends them).
pub const THOUGHT_SIGNATURE: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";

/// generateContent as a model would answer it: a function call when tools are offered and no
/// tool result is in the last turn (with a thought signature the next turn must bring back, as
/// Gemini 3 requires); JSON text when JSON was asked for; `candidateCount` candidates. `note` ends
/// the plain text (the file search stores that grounded it).
fn answer_generate(model: &str, id: &str, body: &Value, prompt: u64, note: &str) -> Reply {
    if model == "exhausted-model" {
        return quota_per_minute_429(model, "30s");
    }
    let contents = body.get("contents").and_then(Value::as_array).cloned().unwrap_or_default();
    let last_parts =
        contents.last().and_then(|c| c.get("parts")).and_then(Value::as_array).cloned().unwrap_or_default();
    let tool = body.pointer("/tools/0/functionDeclarations/0/name").and_then(Value::as_str);
    let tool_result = last_parts.iter().find_map(|p| p.get("functionResponse"));
    if let Some(result) = tool_result {
        let signed = contents
            .iter()
            .flat_map(|c| c.get("parts").and_then(Value::as_array).cloned().unwrap_or_default())
            .any(|p| {
                p.get("functionCall").is_some()
                    && p.get("thoughtSignature").and_then(Value::as_str) == Some(THOUGHT_SIGNATURE)
            });
        if !signed {
            return invalid_argument("Function call is missing a thought_signature in functionCall parts.");
        }
        let text = format!("The tool said: {}", result.get("response").cloned().unwrap_or(Value::Null));
        return Reply::json(200, generate_response(model, id, &text, prompt, 5, true));
    }
    if let Some(name) = tool {
        let mut body = generate_response(model, id, "", prompt, 3, true);
        body["candidates"][0]["content"]["parts"] = json!([{"functionCall": {"name": name, "args": {"city": "Paris"}}, "thoughtSignature": THOUGHT_SIGNATURE}]);
        return Reply::json(200, body);
    }
    let json_wanted = body.pointer("/generationConfig/responseMimeType").and_then(Value::as_str)
        == Some("application/json");
    let text = if json_wanted {
        json!({"answer": format!("Hello from {model}")}).to_string()
    } else {
        format!("Hello from {model}{note}")
    };
    let words = text.split_whitespace().count() as u64;
    let mut answer = generate_response(model, id, &text, prompt, words, true);
    let n = body.pointer("/generationConfig/candidateCount").and_then(Value::as_u64).unwrap_or(1).clamp(1, 8);
    if n > 1 {
        let first = answer["candidates"][0].clone();
        answer["candidates"] = (0..n)
            .map(|i| {
                let mut c = first.clone();
                c["index"] = json!(i);
                c["content"]["parts"][0]["text"] = json!(format!("{text} (candidate {i})"));
                c
            })
            .collect();
    }
    Reply::json(200, answer)
}

/// A `GenerateContentResponse`; `candidates` counts the candidate tokens so far.
fn generate_response(model: &str, id: &str, text: &str, prompt: u64, candidates: u64, finish: bool) -> Value {
    let mut candidate = json!({"content": {"parts": [{"text": text}], "role": "model"}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    json!({"candidates": [candidate],
        "usageMetadata": {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
            "totalTokenCount": prompt + candidates,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]},
        "modelVersion": model, "responseId": id})
}

/// `n` streamed responses; every one carries usageMetadata (cumulative, as Google does), only the
/// last one carries `finishReason: STOP`.
fn stream_events(model: &str, id: &str, prompt: u64, n: usize, note: &str) -> Vec<Value> {
    let mut so_far = 0;
    (1..=n)
        .map(|i| {
            let text =
                if i == n { format!("Hello from {model}{note}.") } else { format!("Part {i} of {n}, ") };
            so_far += text.split_whitespace().count() as u64;
            generate_response(model, id, &text, prompt, so_far, i == n)
        })
        .collect()
}

/// Word count of every string under a `text` or `content` key: the mock's token count.
fn count_words(value: &Value) -> u64 {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if k == "text" || k == "content" => s.split_whitespace().count() as u64,
                other => count_words(other),
            })
            .sum(),
        Value::Array(items) => items.iter().map(count_words).sum(),
        _ => 0,
    }
}

fn embedding(request: &Value) -> Value {
    let dims = request.get("outputDimensionality").and_then(Value::as_u64).unwrap_or(8).clamp(1, 3072);
    let values: Vec<f64> = (1..=dims).map(|i| i as f64 / 100.0).collect();
    json!({"values": values})
}

fn upload_start(
    shared: &Shared,
    rec: &Recorded,
    project: String,
    version: &str,
    store: Option<String>,
) -> Reply {
    let protocol = rec.header("x-goog-upload-protocol").unwrap_or_default();
    let command = rec.header("x-goog-upload-command").unwrap_or_default();
    if !protocol.eq_ignore_ascii_case("resumable") || !command.eq_ignore_ascii_case("start") {
        return invalid_argument("The mock upstream supports resumable uploads only.");
    }
    // Files: `{"file": {...}}`; file search stores: the metadata at the top level.
    let body = rec.json().unwrap_or(json!({}));
    let meta = if store.is_some() { body } else { body.get("file").cloned().unwrap_or(json!({})) };
    let meta_str = |a: &str, b: &str| meta.get(a).or(meta.get(b)).and_then(Value::as_str).map(str::to_string);
    let mime_type = (rec.header("x-goog-upload-header-content-type").map(str::to_string))
        .or_else(|| meta_str("mimeType", "mime_type"))
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let display_name = meta_str("displayName", "display_name");
    let upload_id = shared.fresh_id("mock-upload-");
    let target =
        store.as_ref().map_or_else(|| "files".to_string(), |s| format!("{s}:uploadToFileSearchStore"));
    let url =
        format!("{}/upload/{version}/{target}?upload_id={upload_id}&upload_protocol=resumable", shared.url());
    let version = version.to_string();
    let upload = Upload { project, version, store, mime_type, display_name, received: Vec::new() };
    shared.lock().uploads.insert(upload_id.clone(), upload);
    Reply::Http {
        status: 200,
        headers: vec![
            ("X-Goog-Upload-Status".into(), "active".into()),
            ("X-Goog-Upload-URL".into(), url.clone()),
            ("X-Goog-Upload-Control-URL".into(), url),
            ("X-Goog-Upload-Chunk-Granularity".into(), "8388608".into()),
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
        ],
        body: Vec::new(),
    }
}

/// The upload URL is a capability: a follow-up without a key is accepted, one with a key of
/// another project than the starter's is refused.
fn upload_continue(shared: &Shared, rec: &Recorded, upload_id: &str) -> Reply {
    if let Some(Err(reply)) = rec.key.as_deref().map(|key| check_key(shared, Some(key))) {
        return reply;
    }
    let command = rec.header("x-goog-upload-command").unwrap_or_default().to_ascii_lowercase();
    let mut state = shared.lock();
    let caller = rec.key.as_deref().map(|k| state.project_of(k));
    let Some(upload) = state.uploads.get_mut(upload_id) else {
        return not_found_404(&format!("Upload {upload_id} not found."));
    };
    if caller.is_some_and(|p| p != upload.project) {
        return file_denied(upload_id);
    }
    if command.contains("upload") {
        upload.received.extend_from_slice(&rec.body);
    }
    if !command.contains("finalize") {
        let received = upload.received.len().to_string();
        return Reply::Http {
            status: 200,
            headers: vec![
                ("X-Goog-Upload-Status".into(), "active".into()),
                ("X-Goog-Upload-Size-Received".into(), received),
            ],
            body: Vec::new(),
        };
    }
    let upload = state.uploads.remove(upload_id).expect("upload present");
    let answer = resources::finish_upload(&mut state, &shared.url(), upload);
    Reply::json(200, answer).with_header("X-Goog-Upload-Status", "final")
}

/// Gemini's OpenAI compatibility layer: Bearer auth only, errors wrapped in a JSON array.
fn openai_chat(shared: &Shared, rec: &Recorded) -> Reply {
    let wrap = |reply: Reply| match reply {
        Reply::Json { status, body } => Reply::json(status, json!([body])),
        other => other,
    };
    if let Err(reply) = check_key(shared, rec.bearer().as_deref()) {
        return wrap(reply);
    }
    let Some(body) = rec.json() else {
        return wrap(invalid_argument("Invalid JSON payload received."));
    };
    let model = rec.model().unwrap_or_default();
    if find_model(&model).is_none_or(|m| !m.4.contains(&"generateContent")) {
        return wrap(not_found_404(&format!("models/{model} is not found for API version v1main")));
    }
    let prompt = count_words(&body).max(1);
    let id = shared.fresh_id("mock-chatcmpl-");
    let created =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let text = format!("Hello from {model}");
    let completion = 3;
    let usage = json!({"completion_tokens": completion, "prompt_tokens": prompt,
        "total_tokens": prompt + completion});
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return wrap(invalid_argument(
            "The mock upstream does not stream chat completions (script a reply).",
        ));
    }
    Reply::json(
        200,
        json!({"id": id, "object": "chat.completion", "created": created,
        "model": model, "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": text}}], "usage": usage}),
    )
}
