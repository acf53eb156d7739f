//! The upstream: the one shared `ureq` agent, request hygiene (header allowlist, token removal,
//! fixed origin), and the retry loop that walks the key pool.
//!
//! This is the only module that calls ureq. It never holds the pool lock across a call: the
//! lock is taken to pick a key and again to record the outcome. It never writes to the client;
//! it returns the first usable answer, body unread, to the caller.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ureq::http;

use crate::App;
use crate::error::ProxyError;
use crate::pool::{Pick, Recorded};
use crate::quota::{self, Outcome};
use crate::server::Exchange;

/// Largest error body read from the upstream to classify it.
const MAX_ERROR_BODY: u64 = 1 << 20;

/// Request headers a client may pass on to Gemini; everything else is dropped (hop-by-hop
/// headers, cookies, the client's credentials, `Host`, `Accept-Encoding`).
const FORWARD_REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "accept-language",
    "user-agent",
    "x-goog-api-client",
    "x-goog-upload-protocol",
    "x-goog-upload-command",
    "x-goog-upload-offset",
    "x-goog-upload-header-content-length",
    "x-goog-upload-header-content-type",
    "x-goog-upload-file-name",
    "x-server-timeout",
    "x-goog-request-params",
];

/// Response headers passed back to the client.
const FORWARD_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-disposition",
    "content-range",
    "accept-ranges",
    "cache-control",
    "etag",
    "last-modified",
    "vary",
    "retry-after",
    "server-timing",
    "x-goog-upload-status",
    "x-goog-upload-url",
    "x-goog-upload-chunk-granularity",
    "x-goog-upload-control-url",
    "x-goog-upload-size-received",
];

/// How the real key is presented to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// `x-goog-api-key: KEY` (native routes).
    GoogHeader,
    /// `Authorization: Bearer KEY` (Gemini's own OpenAI layer).
    Bearer,
}

/// One request to send, independent of the key.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub method: &'a str,
    /// Path and query relative to the upstream base, already free of the client's token.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    pub key_style: KeyStyle,
}

/// Why an upstream call produced no HTTP answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CallFailure {
    Timeout,
    /// The message starts with the reason in a few words (`refused`, `TLS verify`, `proxy
    /// refused`…), as the 502 and the request's log line say it.
    Io(String),
}

impl CallFailure {
    pub fn into_error(self) -> ProxyError {
        match self {
            CallFailure::Timeout => ProxyError::UpstreamTimeout,
            CallFailure::Io(message) => ProxyError::UpstreamIo { message },
        }
    }

    /// The reason in a few words, for the request's log line.
    pub fn why(&self) -> &str {
        match self {
            CallFailure::Timeout => "timeout",
            CallFailure::Io(message) => message.split(':').next().unwrap_or(message),
        }
    }
}

/// An upstream answer whose body is still unread: its status and headers, and the body as a
/// whole or as a reader. The rest of the proxy sees this, never ureq's types; every failure of
/// reading it becomes a `ProxyError` here (`read_failure`).
pub struct Answer {
    response: http::Response<ureq::Body>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    /// A header's value (name in any case), if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// `Content-Type`, lowercased (empty when absent).
    pub fn content_type(&self) -> String {
        self.header("content-type").unwrap_or("").to_ascii_lowercase()
    }

    /// The body's announced length.
    pub fn content_length(&self) -> Option<u64> {
        self.response.body().content_length()
    }

    /// The headers a client may see (the allowlist).
    pub fn client_headers(&self) -> Vec<(String, String)> {
        forward_response_headers(self.response.headers())
    }

    /// The whole body, at most `limit` bytes, sized once from `Content-Length` when it has one.
    pub fn read_whole(self, limit: u64) -> Result<Vec<u8>, ProxyError> {
        let body = self.response.into_body();
        let expected = body.content_length().unwrap_or(0).min(limit);
        // One byte more than announced, so that reaching the end needs no second allocation.
        let mut out = Vec::with_capacity(expected as usize + 1);
        body.into_with_config().limit(limit).reader().read_to_end(&mut out).map_err(|e| read_failure(&e))?;
        Ok(out)
    }

    /// The whole body (at most `limit` bytes), and the answer again with that body, for a look
    /// at it before it is returned.
    fn buffered(self, limit: u64) -> Result<(Answer, Vec<u8>), ProxyError> {
        let (parts, body) = self.response.into_parts();
        let mut bytes = Vec::new();
        body.into_with_config()
            .limit(limit)
            .reader()
            .read_to_end(&mut bytes)
            .map_err(|e| read_failure(&e))?;
        let copy = bytes.clone();
        let response = http::Response::from_parts(parts, ureq::Body::builder().data(bytes));
        Ok((Answer { response }, copy))
    }

    /// The body as a reader (for streams); map its errors with `read_failure`. Dropping it drops
    /// the upstream request.
    pub fn into_reader(self) -> impl Read + Send + 'static {
        self.response.into_body().into_reader()
    }
}

/// What a failed read of an upstream body means: a timeout (504) or a broken connection (502).
pub fn read_failure(e: &std::io::Error) -> ProxyError {
    if is_timeout(e) {
        ProxyError::UpstreamTimeout
    } else {
        ProxyError::UpstreamIo { message: crate::logging::redact(&format!("reading the answer failed: {e}")) }
    }
}

/// The key that produced a successful answer (to record usage against once it is known).
#[derive(Debug, Clone)]
pub struct KeyUsed {
    pub idx: usize,
    pub fingerprint: String,
    pub key: String,
    /// Set when a model of the requested one's fallback chain served the request (SPEC §14):
    /// its usage is booked to that model, and translated answers name it.
    pub fallback: Option<Fallback>,
    /// The named client the answer is booked to (SPEC §13).
    pub client: Option<std::sync::Arc<str>>,
}

/// The model that stood in for the requested one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    pub from: String,
    pub to: String,
}

/// Largest answer read whole to see whether it is empty.
const MAX_CHECKED_ANSWER: u64 = 64 << 20;

/// Connection pools per upstream (see `Upstream::agent`).
const POOL_SHARDS: usize = 4;

pub struct Upstream {
    /// Independent connection pools of the direct route; each thread always uses the same one
    /// (see `agent`).
    agents: Vec<ureq::Agent>,
    /// The same per proxy, made when a key first takes it (by the proxy's URL; `None`: the URL
    /// could not be used, and nothing is sent).
    via: parking_lot::RwLock<std::collections::HashMap<String, Option<Arc<Vec<ureq::Agent>>>>>,
    /// Which key takes which proxy (SPEC §15).
    egress: crate::egress::Egress,
    /// What every agent is made from.
    settings: AgentSettings,
    origin: String,
    base_path: String,
    /// The agents' timeouts for connecting and for an answer's head; an attempt with less of
    /// its request's deadline left gets that instead.
    connect_timeout: Duration,
    head_timeout: Duration,
}

/// The settings of the agents (the same for every route but the proxy).
struct AgentSettings {
    workers: usize,
    connect_timeout: Duration,
    read_timeout: Duration,
    request_deadline: Duration,
    tls: ureq::tls::TlsConfig,
}

impl AgentSettings {
    fn new(cfg: &crate::config::Config) -> AgentSettings {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &cfg.ca_file {
            // ureq's `Specific` roots replace its built-in ones: the built-in ones plus the file's.
            match crate::egress::ca_certs(path) {
                Ok(extra) => {
                    let roots: Vec<ureq::tls::Certificate<'static>> =
                        webpki_root_certs::TLS_SERVER_ROOT_CERTS
                            .iter()
                            .chain(extra.iter())
                            .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                            .collect();
                    tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)));
                }
                // `start` and `check-keys` refuse to run with a bad file before this.
                Err(e) => log::error!("{e}; only the built-in roots are trusted"),
            }
        }
        AgentSettings {
            workers: cfg.workers,
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            request_deadline: cfg.request_deadline,
            tls: tls.build(),
        }
    }

    /// `POOL_SHARDS` agents through `proxy` (`None`: direct; the environment is never read here,
    /// `egress` has decided). A proxy URL ureq does not read gives no agents, never direct ones
    /// (unreachable: `egress::ProxyUrl::parse` asks `client_accepts_proxy`).
    fn agents(&self, proxy: Option<&crate::egress::ProxyUrl>) -> Option<Vec<ureq::Agent>> {
        let proxy = match proxy.map(|p| ureq::Proxy::new(p.url())) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(_)) => return None,
        };
        let config = ureq::Agent::config_builder()
            .proxy(proxy)
            .tls_config(self.tls.clone())
            .http_status_as_error(false)
            .allow_non_standard_methods(true)
            .max_redirects(0)
            .user_agent(ureq::config::AutoHeaderValue::None)
            .accept(ureq::config::AutoHeaderValue::None)
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .max_idle_connections(self.workers.max(8) * 2)
            .max_idle_connections_per_host(self.workers.max(8))
            .max_idle_age(Duration::from_secs(50))
            .timeout_connect(Some(self.connect_timeout.min(self.request_deadline)))
            .timeout_send_request(Some(self.read_timeout))
            .timeout_send_body(Some(self.read_timeout))
            .timeout_recv_response(Some(self.read_timeout.min(self.request_deadline)))
            .timeout_per_read(Some(self.read_timeout))
            .timeout_per_write(Some(self.read_timeout))
            // Buffers are per connection: ureq's 128 KiB in + 128 KiB out by default made most of
            // the memory of 100 concurrent streams.
            .max_response_header_size(64 * 1024)
            .input_buffer_size(64 * 1024)
            .output_buffer_size(16 * 1024)
            .build();
        Some((0..POOL_SHARDS).map(|_| crate::transport::agent(config.clone())).collect())
    }
}

/// Does the HTTP client read this proxy URL as it is? `egress` accepts no other.
pub fn client_accepts_proxy(url: &str) -> Result<(), String> {
    ureq::Proxy::new(url).map(|_| ()).map_err(|e| e.to_string())
}

impl Upstream {
    pub fn new(cfg: &crate::config::Config) -> Upstream {
        let settings = AgentSettings::new(cfg);
        Upstream {
            agents: settings.agents(None).unwrap_or_default(),
            via: Default::default(),
            egress: crate::egress::Egress::new(&cfg.egress),
            settings,
            origin: cfg.upstream.origin.clone(),
            base_path: cfg.upstream.base_path.clone(),
            connect_timeout: cfg.connect_timeout.min(cfg.request_deadline),
            head_timeout: cfg.read_timeout.min(cfg.request_deadline),
        }
    }

    /// This thread's agent. ureq's pool sits behind one lock and scans all its idle connections
    /// on every take and give-back (`purge`: several key comparisons per connection); a quarter of
    /// the connections per pool cut that and the lock's contention (4% of the proxy's CPU at 32
    /// concurrent requests). Each connection is still reused by the threads of its shard.
    /// Through `proxy`, the agents of that proxy (made on first use); `None` when that proxy
    /// cannot be used (then nothing is sent: never direct instead).
    fn agent(&self, proxy: Option<&crate::egress::ProxyUrl>) -> Option<ureq::Agent> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let shard = SHARD.with(|s| *s) % POOL_SHARDS;
        let Some(proxy) = proxy else { return self.agents.get(shard).cloned() };
        if let Some(agents) = self.via.read().get(proxy.url()) {
            return agents.as_ref().map(|a| a[shard].clone());
        }
        // Making agents does no I/O: fine under the lock.
        let mut via = self.via.write();
        let agents = via
            .entry(proxy.url().to_string())
            .or_insert_with(|| self.settings.agents(Some(proxy)).map(Arc::new));
        agents.as_ref().map(|a| a[shard].clone())
    }

    /// Which key takes which proxy: the keys' own `proxy=` fields, from a (re)load of the key file.
    pub fn set_key_proxies(&self, keys: &[crate::keyfile::KeySpec]) {
        self.egress.set_own(keys);
    }

    /// The routes of the keys (`/status` `egress`).
    pub fn egress(&self) -> &crate::egress::Egress {
        &self.egress
    }

    /// The public URL prefix of the upstream (for rewriting upload URLs).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Send one request with `key`, its answer's head due within `left` (the rest of the
    /// request's deadline). Only the configured origin is ever contacted.
    pub fn send(&self, out: &Outgoing, key: &str, left: Duration) -> Result<Answer, CallFailure> {
        let url = format!("{}{}{}", self.origin, self.base_path, out.path_and_query);
        let method = http::Method::from_bytes(out.method.as_bytes())
            .map_err(|_| CallFailure::Io(format!("invalid method {}", out.method)))?;
        let mut builder = http::Request::builder().method(method).uri(&url);
        for (name, value) in &out.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder = match out.key_style {
            KeyStyle::GoogHeader => builder.header("x-goog-api-key", key),
            KeyStyle::Bearer => builder.header("authorization", format!("Bearer {key}")),
        };
        let proxy = self.egress.route_of_key(key);
        let Some(agent) = &self.agent(proxy.as_deref()) else {
            let label = proxy.as_ref().map(|p| p.label()).unwrap_or_default();
            return Err(CallFailure::Io(format!("proxy refused: the proxy URL of {label} cannot be used")));
        };
        let sent = if out.body.is_empty() && matches!(out.method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
            let request = builder.body(()).map_err(|e| CallFailure::Io(format!("bad request: {e}")))?;
            agent.run(self.within(agent, request, left))
        } else {
            let request = builder.body(out.body).map_err(|e| CallFailure::Io(format!("bad request: {e}")))?;
            agent.run(self.within(agent, request, left))
        };
        sent.map(|response| Answer { response }).map_err(|e| map_ureq_error(e, proxy.as_deref()))
    }

    /// The request with its timeouts cut to `left` where that is shorter than the agent's (a
    /// per-request configuration copies the agent's whole configuration: only when it matters).
    fn within<S: ureq::AsSendBody>(
        &self,
        agent: &ureq::Agent,
        request: http::Request<S>,
        left: Duration,
    ) -> http::Request<S> {
        if left >= self.head_timeout && left >= self.connect_timeout {
            return request;
        }
        let left = left.max(Duration::from_millis(1));
        agent
            .configure_request(request)
            .timeout_connect(Some(self.connect_timeout.min(left)))
            .timeout_recv_response(Some(self.head_timeout.min(left)))
            .build()
    }
}

/// ureq's error as a `CallFailure` whose message starts with the reason in a few words; through
/// a proxy it names the proxy (`host:port`, never its credentials).
fn map_ureq_error(e: ureq::Error, proxy: Option<&crate::egress::ProxyUrl>) -> CallFailure {
    use std::io::ErrorKind;
    let why = match &e {
        ureq::Error::Timeout(_) => return CallFailure::Timeout,
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            return CallFailure::Timeout;
        }
        ureq::Error::ConnectProxyFailed(_) => "proxy refused",
        ureq::Error::Rustls(r) => tls_reason(r),
        ureq::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(r) => tls_reason(r),
            None if io.kind() == ErrorKind::ConnectionRefused && proxy.is_some() => "proxy unreachable",
            None if io.kind() == ErrorKind::ConnectionRefused => "refused",
            // A SOCKS reply other than success, or a handshake cut short.
            None if proxy.is_some() => "proxy refused",
            None => "network",
        },
        ureq::Error::HostNotFound => "DNS",
        _ => "network",
    };
    let via = proxy.map(|p| format!(" (through proxy {})", p.label())).unwrap_or_default();
    CallFailure::Io(crate::logging::redact(&format!("{why}: {e}{via}")))
}

fn tls_reason(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(_) => "TLS verify",
        _ => "TLS",
    }
}

/// Is this failure of reading a body a timeout?
fn is_timeout(e: &std::io::Error) -> bool {
    if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) {
        return true;
    }
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|u| matches!(u, ureq::Error::Timeout(_)))
}

/// Keep only the request headers Gemini needs.
pub fn forward_request_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers.iter().filter(|(n, _)| FORWARD_REQUEST_HEADERS.contains(&n.as_str())).cloned().collect()
}

/// Keep only the response headers a client needs.
fn forward_response_headers(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| FORWARD_RESPONSE_HEADERS.contains(&n.as_str()))
        .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str().to_string(), v.to_string())))
        .collect()
}

/// Remove every `key` parameter (its name in any percent-encoding) from a query string, leaving
/// the rest byte for byte.
pub fn strip_key_param(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty() && !crate::router::param_name_is(p.split('=').next().unwrap_or(""), "key"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Seconds from a `Retry-After` header or a Google `RetryInfo`, for the client's 429/503.
fn retry_after_hint(outcome: &Outcome) -> Option<u64> {
    match outcome {
        Outcome::QuotaPerMinute { retry } => Some(retry.as_secs().max(1)),
        _ => None,
    }
}

/// Try the request on one key after another until an answer is worth returning.
///
/// Returns the first 2xx answer with its body unread, together with the key that got it; the
/// caller records the success (with tokens) once the body has been relayed. Answers that are the
/// request's own fault come back as `ProxyError::UpstreamStatus` untouched. With `pinned` (the
/// project holding a resource the request names) only that project's keys are tried; when none
/// is usable the answer is 503 (parked or cooling) or 409 (none enabled), never another project.
///
/// The retry budget (SPEC §5): transient failures are retried on at most `--max-attempts` keys;
/// quota and key errors walk on, but every attempt fits in `--request-deadline` (an attempt in
/// flight at the deadline is cut: 504); the walk stops as soon as the client has gone.
///
/// Quota intelligence (SPEC §14): when no key can serve the model, the next model of its
/// `--model-fallback` chain that can serves the request (the path names it; the answer carries
/// `X-Gemini-Model-Fallback: FROM>TO` and `KeyUsed::fallback`); a non-streamed
/// `generateContent` answer that is empty is retried once on another key, and returned if the
/// retry brings nothing better.
pub fn call_with_keys(
    app: &App,
    ex: &mut Exchange,
    model: Option<&str>,
    out: &Outgoing,
    pinned: Option<&crate::resources::Pin>,
) -> Result<(Answer, KeyUsed), ProxyError> {
    app.clients.check_model(ex.record.client.as_deref(), model)?;
    let mut empty: Option<(Answer, KeyUsed, u64)> = None;
    let result = match walk(app, ex, model, out, pinned, &mut empty) {
        Ok(got) => {
            if let Some((_, first, tokens)) = empty {
                // The empty answer was served too: it counts.
                app.record_success(&first, model, tokens);
            }
            Ok(got)
        }
        Err(e) => match empty {
            Some((answer, first, _)) => {
                log::debug!("the retry of an empty answer failed ({e:?}); the empty answer is returned");
                Ok((answer, first))
            }
            None => Err(e),
        },
    };
    if let Ok((_, used)) = &result
        && let Some(f) = &used.fallback
    {
        ex.extra_headers.push(("X-Gemini-Model-Fallback".into(), format!("{}>{}", f.from, f.to)));
        ex.record.model = Some(f.to.clone());
        if ex.record.note.is_none() {
            ex.record.note = Some(format!("fallback {}>{}", f.from, f.to));
        }
    }
    result
}

/// Whether a request is a non-streamed `generateContent` (whose empty answers are retried).
fn is_generate(path_and_query: &str) -> bool {
    path_and_query.split('?').next().is_some_and(|p| p.ends_with(":generateContent"))
}

/// The walk of [`call_with_keys`]; an empty answer it moved on from is left in `empty`.
fn walk<'a>(
    app: &App,
    ex: &mut Exchange,
    requested: Option<&str>,
    out: &Outgoing<'a>,
    pinned: Option<&crate::resources::Pin>,
    empty: &mut Option<(Answer, KeyUsed, u64)>,
) -> Result<(Answer, KeyUsed), ProxyError> {
    // A cache belongs to its model: no other model may read it. A named client is served only
    // by the models of its `models=` patterns, fallbacks included.
    let chain: Vec<&String> = match requested {
        Some(m) if pinned.is_none_or(|p| !p.resource.starts_with("cachedContents/")) => app
            .config
            .fallbacks
            .after(m)
            .iter()
            .filter(|to| app.clients.allows(ex.record.client.as_deref(), to))
            .collect(),
        _ => Vec::new(),
    };
    let mut next_fallback = 0;
    let mut serving: Option<String> = requested.map(str::to_string);
    let mut fallback_out: Option<Outgoing<'a>> = None;
    // The soonest "no key" of the models given up on, for the final 503.
    let mut soonest: Option<(u64, Option<chrono::DateTime<chrono::Utc>>)> = None;
    let deadline = std::time::Instant::now() + app.config.request_deadline;
    let mut tried: Vec<String> = Vec::new();
    let mut last: Option<ProxyError> = None;
    let mut last_was_transient = false;
    let mut transient = 0u32;
    let mut quota_model: Option<String> = None;
    let mut violations = Vec::new();
    // Why the last attempt had no answer at all (for the log line's note).
    let mut last_network: Option<String> = None;
    loop {
        let now = chrono::Utc::now();
        let model = serving.as_deref();
        let current = fallback_out.as_ref().unwrap_or(out);
        if !tried.is_empty() {
            // Between attempts: has the budget run out, or the client gone?
            if ex.client_gone() {
                log::debug!("client left after {} attempts; the walk stops", tried.len());
                return Err(ProxyError::ClientGone);
            }
            let out_of_time = std::time::Instant::now() >= deadline;
            if out_of_time || transient >= app.config.max_attempts {
                if let Some(e) = last.take().filter(|_| last_was_transient) {
                    let note = if out_of_time { "deadline" } else { "attempts" };
                    ex.record.note = Some(match &last_network {
                        Some(why) => format!("{note}; {why}"),
                        None => note.into(),
                    });
                    return Err(e);
                }
                // Every tried key was out of quota or disabled: the pool's answer for the model.
                ex.record.note = Some("deadline".into());
                return Err(match pinned {
                    Some(pin) => {
                        resource_error(app, pin, app.pool.lock().exhausted_in(&pin.project, model, now))
                    }
                    None => exhausted_error(app, app.pool.lock().exhausted(model, now)),
                });
            }
        }
        let pick = match pinned {
            Some(pin) => app.pool.lock().pick_in_project(&pin.project, model, &tried, now),
            None => app.pool.lock().pick(model, &tried, now),
        };
        let (idx, key, fingerprint) = match pick {
            Pick::Key { idx, key, fingerprint } => (idx, key, fingerprint),
            Pick::Exhausted { retry_after_secs, until, model: named } => {
                // 5xx and network failures return the last answer; quota and key problems
                // (this request's own, or older ones) are "no key available".
                if last_was_transient && let Some(e) = last {
                    if let Some(why) = last_network {
                        ex.record.note = Some(why);
                    }
                    return Err(e);
                }
                if soonest.is_none_or(|(s, _)| retry_after_secs < s) {
                    soonest = Some((retry_after_secs, until));
                }
                // No key for this model: the next model of its chain, if the path can name it.
                if let (Some(from), Some(to)) = (model, chain.get(next_fallback))
                    && let Some(path_and_query) = quota::path_with_model(&current.path_and_query, from, to)
                {
                    log::debug!("no key can serve {from}; falling back to {to}");
                    let next = Outgoing { path_and_query, ..current.clone() };
                    next_fallback += 1;
                    serving = Some(to.to_string());
                    fallback_out = Some(next);
                    tried.clear();
                    last = None;
                    continue;
                }
                // The answer names the requested model, and the soonest time any model frees.
                let exhausted = match soonest {
                    Some((retry_after_secs, until)) if next_fallback > 0 => {
                        Pick::Exhausted { retry_after_secs, until, model: requested.map(str::to_string) }
                    }
                    _ => Pick::Exhausted { retry_after_secs, until, model: named },
                };
                return Err(match (pinned, last) {
                    // This request's own attempt disabled the project's last key: Google's
                    // answer says why better than a 409 would.
                    (Some(_), Some(e)) if matches!(exhausted, Pick::Exhausted { until: None, .. }) => e,
                    (Some(pin), _) => resource_error(app, pin, exhausted),
                    (None, _) => exhausted_error(app, exhausted),
                });
            }
        };
        tried.push(fingerprint.clone());
        ex.record.attempts += 1;
        ex.record.keys.push(fingerprint.clone());
        let started = std::time::Instant::now();
        let left = deadline.saturating_duration_since(started);
        let result = app.upstream.send(current, &key, left);
        let outcome = match result {
            Ok(answer) if (200..300).contains(&answer.status()) => {
                log::debug!(
                    "attempt {} key {fingerprint}: {} in {:?}",
                    ex.record.attempts,
                    answer.status(),
                    started.elapsed()
                );
                app.metrics.attempt(&Outcome::Success);
                let fallback = match (requested, model) {
                    (Some(from), Some(to)) if from != to => {
                        Some(Fallback { from: from.to_string(), to: to.to_string() })
                    }
                    _ => None,
                };
                let used = KeyUsed { idx, fingerprint, key, fallback, client: ex.record.client.clone() };
                if empty.is_none()
                    && is_generate(&current.path_and_query)
                    && answer.content_type().contains("json")
                {
                    let (answer, body) = answer.buffered(MAX_CHECKED_ANSWER)?;
                    if quota::empty_answer(&body) {
                        log::info!(
                            "key {}: an empty answer for {}; retried once on another key",
                            used.fingerprint,
                            model.unwrap_or("-")
                        );
                        *empty = Some((answer, used, crate::usage::tokens_of(&body).unwrap_or(0)));
                        continue;
                    }
                    return Ok((answer, used));
                }
                return Ok((answer, used));
            }
            Ok(answer) => {
                let status = answer.status();
                let body = answer.read_whole(MAX_ERROR_BODY).unwrap_or_default();
                let outcome = quota::classify(status, &body);
                quota_model = quota::quota_model(status, &body);
                violations = quota::violations(status, &body);
                log::debug!("attempt {} key {fingerprint}: {status} {:?}", ex.record.attempts, outcome);
                let retry_after = retry_after_hint(&outcome);
                let error = ProxyError::UpstreamStatus { status, body, retry_after };
                if !outcome.retry_on_next_key() {
                    return Err(error);
                }
                last = Some(error);
                last_was_transient = outcome == Outcome::Transient;
                last_network = None;
                app.metrics.attempt(&outcome);
                outcome
            }
            Err(failure) => {
                log::debug!("attempt {} key {fingerprint}: {:?}", ex.record.attempts, failure);
                last_network = Some(failure.why().to_string());
                last = Some(failure.into_error());
                last_was_transient = true;
                app.metrics.attempt_network();
                Outcome::Transient
            }
        };
        if last_was_transient {
            transient += 1;
        }
        // The model a 429 names wins over the request's for its effect (SPEC §5).
        let effect = quota_model.take();
        let effect = effect.as_deref().or(model);
        if matches!(outcome, Outcome::QuotaPerDay | Outcome::QuotaPerMinute { .. } | Outcome::RateLimited) {
            // Google did not count what it refused; what its 429 says about the limits is learned.
            let mut pool = app.pool.lock();
            pool.refused(&fingerprint, model, now);
            let learned = pool.learn(&fingerprint, effect, &std::mem::take(&mut violations));
            drop(pool);
            if learned {
                log::debug!(
                    "key {fingerprint}: learned the limits of its project for {} from a 429",
                    effect.unwrap_or("all models")
                );
                app.save.wanted();
            }
        }
        record_failure(app, idx, &fingerprint, effect, &outcome);
    }
}

/// Record what a failed attempt with key (`idx`, `fingerprint`) means for `effect` (the model
/// it blocks; `None`: all models), with the log line of a park or a disabled key.
pub fn record_failure(app: &App, idx: usize, fingerprint: &str, effect: Option<&str>, outcome: &Outcome) {
    let recorded = app.pool.lock().record(idx, fingerprint, effect, outcome, 0, chrono::Utc::now());
    let what = effect.unwrap_or("all models");
    match recorded {
        Recorded::Parked { until } => {
            log::warn!(
                "key {fingerprint}: daily quota of {what} used up; parked until {}",
                app.format_time(until)
            )
        }
        Recorded::Disabled => log::warn!("key {fingerprint} disabled: {outcome:?}"),
        Recorded::Cooling { until } => {
            log::debug!("key {fingerprint}: cooling down for {what} until {}", app.format_time(until))
        }
        Recorded::Throttled { until } => {
            log::warn!(
                "bare 429s from several projects for {what}: Google is limiting this proxy's address; \
                 {what} cools down for every key until {}",
                app.format_time(until)
            )
        }
        _ => {}
    }
    if !matches!(recorded, Recorded::Nothing | Recorded::UnknownKey) {
        app.save.wanted();
    }
}

/// A pinned request's "no key available": its project's keys are blocked (503) or none is
/// enabled (409).
fn resource_error(app: &App, pin: &crate::resources::Pin, pick: Pick) -> ProxyError {
    match pick {
        Pick::Exhausted { retry_after_secs, until: Some(until), model } => ProxyError::ResourceBlocked {
            resource: pin.resource.clone(),
            model,
            retry_after_secs,
            until: Some(app.format_time(until)),
        },
        _ => ProxyError::ResourceUnreachable {
            resource: pin.resource.clone(),
            fingerprint: pin.fingerprint.clone(),
        },
    }
}

/// "No key available" from the pool's `Pick::Exhausted`.
pub fn exhausted_error(app: &App, pick: Pick) -> ProxyError {
    match pick {
        Pick::Exhausted { retry_after_secs, until, model } => {
            ProxyError::NoKeyAvailable { model, retry_after_secs, until: until.map(|t| app.format_time(t)) }
        }
        Pick::Key { .. } => ProxyError::Internal { message: "a key where none was expected".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_parameter_is_removed_and_nothing_else_changes() {
        assert_eq!(strip_key_param("alt=sse&key=TOKEN"), "alt=sse");
        assert_eq!(strip_key_param("key=a&key=b"), "");
        assert_eq!(strip_key_param("keys=1&key=x&pageToken=a%3D"), "keys=1&pageToken=a%3D");
        // Regression: a percent-encoded name reached Google (`?k%65y=TOKEN`).
        assert_eq!(strip_key_param("k%65y=TOKEN&alt=sse&%6B%45%79=x&%6b%65%79=y"), "alt=sse&%6B%45%79=x");
        assert_eq!(strip_key_param(""), "");
    }

    #[test]
    fn credentials_and_hop_by_hop_headers_are_not_forwarded() {
        let h = |n: &str| (n.to_string(), "v".to_string());
        let kept = forward_request_headers(&[
            h("x-goog-api-key"),
            h("authorization"),
            h("connection"),
            h("keep-alive"),
            h("transfer-encoding"),
            h("host"),
            h("cookie"),
            h("accept-encoding"),
            h("content-type"),
            h("x-goog-upload-protocol"),
        ]);
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, vec!["content-type", "x-goog-upload-protocol"]);
    }
}
