//! gemini-key-manager: one client token in front of a pool of Gemini API keys.
//!
//! `start(Config)` brings up the whole proxy in-process (tests use it with port 0) and returns a
//! `Handle`; `main.rs` only parses the command line and calls into here. See ARCHITECTURE.md for
//! the map of modules and the invariants they keep.

pub mod admin;
pub mod admin_keys;
pub mod alias;
pub mod anthropic;
pub mod anthropic_api;
pub mod background;
pub mod calendar;
pub mod clients;
pub mod commands;
pub mod config;
pub mod dashboard;
pub mod egress;
pub mod error;
pub mod fallback;
pub mod google_error;
pub mod history;
pub mod interactions;
pub mod keyfile;
pub mod limits;
pub mod listing;
pub mod live;
pub mod live_sessions;
pub mod live_upstream;
pub mod logging;
pub mod metrics;
pub mod native;
pub mod openai;
pub mod openai_api;
pub mod pool;
pub mod quota;
pub mod redact;
pub mod relay;
pub mod resources;
pub mod response_store;
pub mod responses;
pub mod responses_api;
pub mod router;
pub mod server;
pub mod sse;
pub mod status;
pub mod store;
pub mod store_format;
pub mod transport;
pub mod upstream;
pub mod usage;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::json;

use crate::config::Config;
use crate::error::{ProxyError, Reply, Surface};
use crate::pool::KeyState;
use crate::router::{Presented, Route, Target};
use crate::server::{Exchange, Handler, RequestRecord, Server};
use crate::upstream::{KeyStyle, KeyUsed, Upstream};

/// Everything the workers share.
pub struct App {
    pub config: Config,
    pub pool: Mutex<KeyState>,
    /// Server-side resources → the project of the key that made them (SPEC §5).
    pub resources: Mutex<resources::Resources>,
    pub upstream: Upstream,
    pub metrics: metrics::Metrics,
    /// Busy workers, queue, shed requests, panics (shared with the server).
    pub server_stats: Arc<server::ServerStats>,
    /// Ask the persistence thread for a save (never blocks).
    pub save: store::SaveSignal,
    /// Models' output token limits (the Anthropic route clamps `max_tokens` to them).
    pub output_limits: anthropic_api::OutputLimits,
    /// Responses kept for `previous_response_id` and `GET /v1/responses/{id}` (bounded, memory).
    pub responses: response_store::ResponseStore,
    /// The Live API sessions open now, and their totals.
    pub live: live_sessions::Sessions,
    /// Named clients of `--tokens-file`, their budgets and books (SPEC §13).
    pub clients: clients::Clients,
    /// `/admin/keys` changes to the key file, one at a time.
    pub key_edits: admin_keys::KeyEdits,
}

impl App {
    pub fn new(config: Config, keys: Vec<keyfile::KeySpec>, save: store::SaveSignal) -> App {
        let upstream = Upstream::new(&config);
        upstream.set_key_proxies(&keys);
        let mut pool = KeyState::new(keys, config.reset_timezone, Utc::now());
        pool.set_limits(config.limits.clone(), config.learn_limits);
        App {
            upstream,
            pool: Mutex::new(pool),
            resources: Mutex::new(resources::Resources::default()),
            metrics: metrics::Metrics::default(),
            server_stats: Arc::new(server::ServerStats::default()),
            save,
            output_limits: anthropic_api::OutputLimits::default(),
            responses: response_store::ResponseStore::default(),
            live: live_sessions::Sessions::default(),
            clients: clients::Clients::new(Vec::new(), config.reset_timezone),
            key_edits: admin_keys::KeyEdits::default(),
            config,
        }
    }

    /// Take over the books of a usage file read at startup.
    pub fn restore(&self, file: &store_format::UsageFile) {
        let now = Utc::now();
        let mut pool = self.pool.lock();
        pool.restore(file, now);
        self.clients.restore(file, now);
        *self.resources.lock() =
            resources::Resources::from_records(&file.resources, now, |fp| pool.project_of(fp));
    }

    /// An instant as RFC 3339 in the reset time zone.
    pub fn format_time(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.config.reset_timezone).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    }

    /// Count a successful answer against the key that got it.
    /// A fallback model's answer is booked to that model (SPEC §14).
    pub fn record_success(&self, used: &KeyUsed, model: Option<&str>, tokens: u64) {
        let now = Utc::now();
        let model = used.fallback.as_ref().map(|f| f.to.as_str()).or(model);
        self.pool.lock().record(used.idx, &used.fingerprint, model, &quota::Outcome::Success, tokens, now);
        if let Some(client) = &used.client {
            self.clients.book(client, model, 1, tokens, now);
        }
        self.save.wanted();
    }

    /// Server-side resources an answer with key `used` created or showed live in that key's
    /// project (SPEC §5).
    pub fn remember_resources(&self, created: &[resources::Created], used: &KeyUsed, model: Option<&str>) {
        let Some(project) = self.pool.lock().project_of(&used.fingerprint) else { return };
        let now = Utc::now();
        let mut table = self.resources.lock();
        for c in created {
            table.remember(&c.name, &project, &used.fingerprint, model, c.expires, now);
        }
        drop(table);
        self.save.wanted();
    }

    /// A resumable upload session the proxy itself started: its id is the follow-up's credential.
    fn known_upload(&self, target: &Target) -> bool {
        target.path.starts_with("/upload/")
            && target.query_param("upload_id").is_some_and(|id| {
                self.resources.lock().owner(&resources::upload_name(&id), Utc::now()).is_some()
            })
    }

    /// Who may make this request (SPEC §13): `Ok(Some(client))` for a named client (its requests
    /// are booked to it), `Ok(None)` for a plain `--token` or an admin credential, else 401.
    /// Admin routes need the admin token (`--admin-token` or a client marked `admin`) when one is
    /// configured, else any client token as in version 1.
    pub fn authorize(
        &self,
        presented: &Presented,
        admin_route: bool,
    ) -> Result<Option<Arc<clients::Client>>, ProxyError> {
        let named = self.config.tokens_file.is_some();
        let client = if named { self.clients.identify(presented, admin_route) } else { None };
        if admin_route && (self.config.admin_token.is_some() || self.clients.has_admin()) {
            let by_flag = self
                .config
                .admin_token
                .as_ref()
                .is_some_and(|t| presented.matches(std::slice::from_ref(t), true));
            let by_client = client.as_ref().is_some_and(|c| c.admin);
            return if by_flag | by_client { Ok(None) } else { Err(ProxyError::Unauthorized) };
        }
        match client {
            Some(c) if !admin_route => Ok(Some(c)),
            Some(_) => Ok(None),
            None if !named && presented.matches(&self.config.tokens, admin_route) => Ok(None),
            None => Err(ProxyError::Unauthorized),
        }
    }

    fn dispatch(&self, ex: &mut Exchange, target: &Target, route: &Route) -> Result<(), ProxyError> {
        match route {
            Route::Native => native::handle(self, ex, target, KeyStyle::GoogHeader),
            Route::GeminiOpenAi => native::handle(self, ex, target, KeyStyle::Bearer),
            Route::OpenAiChat => openai_api::chat(self, ex),
            Route::OpenAiModels { id } => openai_api::models(self, ex, id.as_deref()),
            Route::OpenAiEmbeddings => openai_api::embeddings(self, ex),
            Route::OpenAiResponses => responses_api::create(self, ex),
            Route::OpenAiResponse { id, delete: false } => responses_api::get(self, ex, id),
            Route::OpenAiResponse { id, delete: true } => responses_api::delete(self, ex, id),
            Route::OpenAiResponseInputItems { id } => responses_api::input_items(self, ex, target, id),
            Route::AnthropicMessages => anthropic_api::messages(self, ex),
            Route::AnthropicCountTokens => anthropic_api::count_tokens(self, ex),
            Route::Live => {
                Err(ProxyError::bad_request("the Live API is a WebSocket: send Upgrade: websocket", None))
            }
            Route::Status => {
                let form = admin::StatusForm::of(target)?;
                ex.respond(admin::status_reply(self, form)?);
                Ok(())
            }
            Route::Metrics => {
                ex.respond(admin::metrics_reply(self));
                Ok(())
            }
            Route::Dashboard => {
                let view = admin::dashboard_view(target)?;
                ex.respond(admin_keys::dashboard_reply(self, view));
                Ok(())
            }
            Route::AdminKeys(op) => admin_keys::handle(self, ex, op),
            Route::NotFound => Err(ProxyError::NotFound {
                message: format!("No route for {} {}", ex.method, crate::logging::redact(&target.path)),
            }),
        }
    }
}

impl Handler for App {
    fn handle(&self, ex: &mut Exchange) -> Result<(), ProxyError> {
        let target = Target::parse(&ex.target);
        ex.record.path = target.path.clone();
        let presented = Presented::from_request(&ex.headers, &target);
        let route = router::route(&ex.method, &target.path, presented.bearer.is_some());
        ex.record.route = route.name();
        ex.record.surface = Some(route.surface());
        if route == Route::NotFound {
            return self.dispatch(ex, &target, &route);
        }
        // Admin pages also take HTTP Basic (any user, the token as password): browsers prompt for it.
        let allow_basic = route.surface() == Surface::Admin;
        let upload_follow_up = route == Route::Native && self.known_upload(&target);
        let client = if upload_follow_up { None } else { self.authorize(&presented, allow_basic)? };
        // A request of a named client holds a ticket against its budget until it is answered.
        let _ticket = match client {
            Some(c) => {
                ex.record.client = Some(Arc::from(c.name.as_str()));
                Some(self.clients.admit(&c, Utc::now())?)
            }
            None => None,
        };
        if allow_basic && !matches!(ex.method.as_str(), "GET" | "HEAD") {
            admin_keys::check_same_origin(self, ex, &presented)?;
        }
        self.dispatch(ex, &target, &route)
    }

    fn healthz(&self) -> Reply {
        let now = Utc::now();
        let mut pool = self.pool.lock();
        pool.rollover(now);
        let (usable, total) = (pool.usable_count(now), pool.len());
        drop(pool);
        Reply::json(200, &json!({"status": "ok", "keys_usable": usable, "keys_total": total}))
    }

    fn upgrades(&self, method: &str, target: &str) -> bool {
        method == "GET" && router::live_path(&Target::parse(target).path).is_some()
    }

    fn upgrade(&self, ex: &mut Exchange) -> Result<(), ProxyError> {
        live::handle(self, ex)
    }

    fn surface_of(&self, method: &str, target: &str, bearer: bool) -> Surface {
        router::route(method, &Target::parse(target).path, bearer).surface()
    }

    fn finished(&self, r: &RequestRecord) {
        self.metrics.request(r);
        log_request(r);
    }
}

/// Key fingerprints listed in a request's log line.
const LOGGED_KEYS: usize = 5;

/// The one log line per request (SPEC §7).
fn log_request(r: &RequestRecord) {
    let level = if r.route == "healthz" { log::Level::Debug } else { log::Level::Info };
    if !log::log_enabled!(level) {
        return;
    }
    let keys = keys_field(&r.keys);
    let line = format!(
        "{} {} model={} surface={}{} status={} attempts={} keys={} latency_ms={:.1}{}{}{}",
        r.method,
        r.path,
        r.model.as_deref().unwrap_or("-"),
        r.surface.unwrap_or(Surface::Native).as_str(),
        r.client.as_deref().map(|c| format!(" client={c}")).unwrap_or_default(),
        r.status,
        r.attempts,
        keys,
        r.latency.as_secs_f64() * 1000.0,
        r.first_byte.map(|d| format!(" first_byte_ms={:.1}", d.as_secs_f64() * 1000.0)).unwrap_or_default(),
        if r.client_gone { " client_gone" } else { "" },
        r.note.as_deref().map(|n| format!(" note=\"{n}\"")).unwrap_or_default(),
    );
    log::log!(level, "{line}");
}

/// The `keys=` field of a log line: the first few keys tried, then how many more (a walk over a
/// big pool would fill a screen).
fn keys_field(keys: &[String]) -> String {
    match keys.len() {
        0 => "-".to_string(),
        n if n <= LOGGED_KEYS => keys.join(","),
        n => format!("{},+{} more", keys[..LOGGED_KEYS].join(","), n - LOGGED_KEYS),
    }
}

/// A running proxy.
pub struct Handle {
    pub app: Arc<App>,
    server: Server,
    persister: store::Persister,
    background: background::Background,
}

impl Handle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT` (tests).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn stats(&self) -> &server::ServerStats {
        &self.server.stats
    }

    /// Block until accepting fails (Err) or `stop_accepting` was called (Ok).
    pub fn wait(&self) -> Result<(), String> {
        self.server.wait()
    }

    pub fn stop_accepting(&self) {
        self.server.stop_accepting();
    }

    pub fn stopper(&self) -> server::Stopper {
        self.server.stopper()
    }

    /// Write the usage file now and wait for it.
    pub fn flush(&self) -> Result<(), String> {
        self.persister.flush()
    }

    /// Stop accepting, give in-flight requests up to `DRAIN_TIMEOUT`, then flush the usage file.
    /// Ok(true) if every request finished in time.
    pub fn shutdown(self) -> Result<bool, String> {
        let drained = self.server.shutdown(server::DRAIN_TIMEOUT);
        self.background.stop();
        self.persister.stop()?;
        Ok(drained)
    }
}

/// Load the keys and start serving. Errors are one clear line each.
pub fn start(config: Config) -> Result<Handle, String> {
    let parsed = keyfile::load(&config.key_file)?;
    for w in &parsed.warnings {
        log::warn!("key file {}: {w}", config.key_file.display());
    }
    egress::check(&config)?;
    redact::add_keys(parsed.keys.iter().map(|k| k.key.clone()));
    redact::add_tokens(config.tokens.iter().cloned());
    redact::add_tokens(config.admin_token.iter().cloned());
    redact::add_keys(admin_keys::disabled_in_file(&config.key_file).into_iter().map(|k| k.key));
    let named = match &config.tokens_file {
        Some(path) => {
            let parsed = clients::load(path)?;
            redact::add_tokens(parsed.tokens);
            parsed.clients
        }
        None => Vec::new(),
    };
    let (save, save_rx) = store::SaveSignal::new();
    let app = Arc::new(App::new(config.clone(), parsed.keys, save));
    app.clients.replace(named);
    if let Some(file) = store::load(&config.usage_file, config.reset_timezone)? {
        app.restore(&file);
        if file.converted_from_seed {
            log::warn!(
                "usage file {} was in the Python proxy's format; converted (no raw key is kept)",
                config.usage_file.display()
            );
        }
        app.save.wanted();
    }
    let persister = store::Persister::spawn(app.clone(), save_rx)?;
    let background = background::Background::spawn(app.clone())?;
    let handler: Arc<dyn Handler> = app.clone();
    let stats = app.server_stats.clone();
    let tls = match &config.tls {
        Some((cert, key)) => {
            let read = |p: &std::path::Path, flag: &str| {
                std::fs::read(p).map_err(|e| format!("--{flag} {}: cannot read it: {e}", p.display()))
            };
            Some((read(cert, "tls-cert")?, read(key, "tls-key")?))
        }
        None => None,
    };
    let opts = server::ServerOptions {
        host: config.host.clone(),
        port: config.port,
        workers: config.workers,
        queue_size: config.queue_size,
        client_timeout: config.client_timeout,
        body_timeout: config.body_timeout,
        tls,
    };
    let server = Server::start(&opts, handler, stats)?;
    log::info!(
        "listening on {}{} with {} keys, {} workers, upstream {}",
        server.addr(),
        if config.tls.is_some() { " (TLS)" } else { "" },
        app.pool.lock().len(),
        config.workers,
        config.upstream.origin
    );
    if config.tokens_file.is_none() && config.uses_default_token() && !is_loopback(&config.host) {
        log::warn!(
            "the client token is the public default (see --help) on a non-loopback address: anyone who knows \
             it can spend your keys. Set a token of your own with --token or PLACEHOLDER_TOKEN."
        );
    }
    Ok(Handle { app, server, persister, background })
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_log_line_lists_the_first_five_keys_and_counts_the_rest() {
        let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
        assert_eq!(super::keys_field(&[]), "-");
        assert_eq!(super::keys_field(&keys[..5]), "k0,k1,k2,k3,k4");
        assert_eq!(super::keys_field(&keys), "k0,k1,k2,k3,k4,+295 more");
    }
}
