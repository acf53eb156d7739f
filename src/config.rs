//! Command line and environment → one validated, immutable `Config` (SPEC §2).
//!
//! Two stages, as ripgrep does it: `RawOptions` holds strings exactly as the flag, the variable
//! or the default gave them; `Config::from_raw` validates every one and reports *all* bad options,
//! one line each. This module never opens a file or a socket; it only reads `std::env` through the
//! lookup function it is given, so tests pass their own environment.

use std::path::PathBuf;
use std::time::Duration;

/// The public default client token; anyone who has read the README knows it.
pub const DEFAULT_TOKEN: &str = "PLACEHOLDER_GEMINI_TOKEN";

/// One option of SPEC §2: flag, environment variable, default, and help text.
struct OptSpec {
    flag: &'static str,
    env: &'static str,
    default: &'static str,
    help: &'static str,
}

const OPTIONS: &[OptSpec] = &[
    OptSpec { flag: "host", env: "LISTEN_HOST", default: "0.0.0.0", help: "address to listen on" },
    OptSpec {
        flag: "port",
        env: "LISTEN_PORT",
        default: "5000",
        help: "port to listen on (0 = any free port)",
    },
    OptSpec {
        flag: "key-file",
        env: "API_KEY_FILE",
        default: "key.txt",
        help: "file of Gemini API keys, one per line, optional project label",
    },
    OptSpec {
        flag: "usage-file",
        env: "USAGE_DATA_FILE",
        default: "key_usage.txt",
        help: "JSON usage/state file",
    },
    OptSpec {
        flag: "token",
        env: "PLACEHOLDER_TOKEN",
        default: DEFAULT_TOKEN,
        help: "client token(s) clients must present, comma-separated",
    },
    OptSpec {
        flag: "tokens-file",
        env: "TOKENS_FILE",
        default: "",
        help: "named client tokens: NAME TOKEN [rpd=N] [tpd=N] [models=P|P] [admin] per line (replaces --token)",
    },
    OptSpec {
        flag: "admin-token",
        env: "ADMIN_TOKEN",
        default: "",
        help: "token of /status, /metrics, /dashboard, /admin/** (unset: any client token)",
    },
    OptSpec {
        flag: "upstream",
        env: "GEMINI_API_BASE_URL",
        default: "https://generativelanguage.googleapis.com",
        help: "Gemini API base URL",
    },
    OptSpec {
        flag: "upstream-proxy",
        env: "UPSTREAM_PROXY",
        default: "",
        help: "http://[user:pass@]host:port, socks5:// or socks5h:// (remote DNS) proxy, or a comma-separated \
               list (each key keeps one); unset: HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, NO_PROXY always applies",
    },
    OptSpec {
        flag: "ca-file",
        env: "UPSTREAM_CA_FILE",
        default: "",
        help: "PEM file of CA certificates trusted besides the built-in roots (e.g. a TLS-inspecting proxy's)",
    },
    OptSpec {
        flag: "log-dir",
        env: "LOG_DIRECTORY",
        default: ".",
        help: "directory of gemini-key-manager.log (empty: console only)",
    },
    OptSpec {
        flag: "log-level",
        env: "LOG_LEVEL",
        default: "info",
        help: "error, warn, info, debug or trace",
    },
    OptSpec {
        flag: "workers",
        env: "WORKERS",
        default: "64",
        help: "requests served at once (worker slots)",
    },
    OptSpec {
        flag: "queue-size",
        env: "QUEUE_SIZE",
        default: "64",
        help: "requests waiting for a worker before 503",
    },
    OptSpec {
        flag: "reset-timezone",
        env: "RESET_TIMEZONE",
        default: "America/Los_Angeles",
        help: "IANA zone whose midnight resets daily quotas",
    },
    OptSpec {
        flag: "max-body-bytes",
        env: "MAX_BODY_BYTES",
        default: "33554432",
        help: "largest request body accepted",
    },
    OptSpec {
        flag: "connect-timeout",
        env: "UPSTREAM_CONNECT_TIMEOUT",
        default: "10",
        help: "seconds to connect to the upstream",
    },
    OptSpec {
        flag: "read-timeout",
        env: "UPSTREAM_READ_TIMEOUT",
        default: "300",
        help: "seconds of upstream silence before 504",
    },
    OptSpec {
        flag: "reprobe-interval",
        env: "REPROBE_INTERVAL",
        default: "3600",
        help: "seconds between re-probes of disabled keys",
    },
    OptSpec {
        flag: "log-max-bytes",
        env: "LOG_MAX_BYTES",
        default: "10485760",
        help: "log file size before it rotates",
    },
    OptSpec { flag: "log-keep", env: "LOG_KEEP", default: "5", help: "rotated log files kept" },
    OptSpec {
        flag: "model-alias",
        env: "MODEL_ALIASES",
        default: "",
        help: "PATTERN=MODEL,... : the Gemini model for a model a client names (* glob, first match wins)",
    },
    OptSpec {
        flag: "model-fallback",
        env: "MODEL_FALLBACK",
        default: "",
        help: "A>B>C,... : when no key can serve A, serve the request with B, then C",
    },
    OptSpec {
        flag: "limits",
        env: "LIMITS",
        default: "",
        help: "PATTERN=rpm:N/rpd:N/tpm:N,... : known limits per project and model (* glob, first match wins)",
    },
    OptSpec {
        flag: "learn-limits",
        env: "LEARN_LIMITS",
        default: "true",
        help: "learn each project's limits from Google's 429s and stop sending what they would refuse (true/false)",
    },
    OptSpec {
        flag: "metrics-per-key",
        env: "METRICS_PER_KEY",
        default: "auto",
        help: "series per key on /metrics (true/false; auto: only below 100 keys, the per-model and per-state sums always)",
    },
    OptSpec {
        flag: "keepalive-secs",
        env: "STREAM_KEEPALIVE_SECS",
        default: "15",
        help: "seconds of upstream silence before a stream gets a keep-alive (0 = never)",
    },
    OptSpec {
        flag: "max-attempts",
        env: "MAX_ATTEMPTS",
        default: "3",
        help: "keys tried for one request after transient failures (5xx, timeouts)",
    },
    OptSpec {
        flag: "max-live-sessions",
        env: "MAX_LIVE_SESSIONS",
        default: "64",
        help: "Live API WebSocket sessions open at once (503 past it)",
    },
    OptSpec {
        flag: "tls-cert",
        env: "TLS_CERT",
        default: "",
        help: "PEM certificate chain: listen with TLS (https/wss; needs --tls-key)",
    },
    OptSpec { flag: "tls-key", env: "TLS_KEY", default: "", help: "PEM private key of --tls-cert" },
    OptSpec {
        flag: "request-deadline",
        env: "REQUEST_DEADLINE",
        default: "120",
        help: "seconds for all attempts of one request before its answer starts",
    },
];

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Serve,
    Usage { json: bool },
    CheckKeys,
    Healthcheck,
    Help,
    Version,
}

/// Where requests go: always this scheme, host and port, whatever a client's request line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `scheme://host[:port]` with no trailing slash and no path.
    pub origin: String,
    /// A path prefix of the base URL (usually empty), without trailing slash.
    pub base_path: String,
}

/// The validated configuration, passed explicitly to everything that needs it.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub key_file: PathBuf,
    pub usage_file: PathBuf,
    pub tokens: Vec<String>,
    pub upstream: Upstream,
    pub log_dir: Option<PathBuf>,
    pub log_level: log::LevelFilter,
    pub workers: usize,
    pub queue_size: usize,
    pub reset_timezone: chrono_tz::Tz,
    pub max_body_bytes: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub reprobe_interval: Duration,
    pub log_max_bytes: u64,
    pub log_keep: usize,
    /// `--model-alias`: the Gemini model for a model a client names.
    pub aliases: crate::alias::Aliases,
    /// `--model-fallback`: the chains of models that stand in for each other.
    pub fallbacks: crate::fallback::Fallbacks,
    /// `--limits`: configured limits per model.
    pub limits: crate::limits::Configured,
    /// `--learn-limits`: whether 429s teach the pool each project's limits.
    pub learn_limits: bool,
    /// `--metrics-per-key`: whether `/metrics` has series per key; `None` (`auto`): only below
    /// 100 keys (`admin::metrics_per_key`).
    pub metrics_per_key: Option<bool>,
    /// Upstream silence before a stream gets a keep-alive; zero: never.
    pub keepalive: Duration,
    /// Transient failures (5xx, timeouts, connection errors) retried on at most this many keys.
    pub max_attempts: u32,
    /// All attempts of one request fit in this (SPEC §5 retry budget).
    pub request_deadline: Duration,
    /// Live API sessions open at once (SPEC §11).
    pub max_live_sessions: usize,
    /// Listen with TLS: (certificate chain, private key), PEM files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `--tokens-file`: named clients (SPEC §13); when set, `tokens` is not used.
    pub tokens_file: Option<PathBuf>,
    /// `--admin-token`: the token of the admin routes (SPEC §13).
    pub admin_token: Option<String>,
    /// Read/write timeout of client sockets. Not an option of SPEC §2 (always 30 s there);
    /// tests shorten it.
    pub client_timeout: Duration,
    /// How long a request body may stop arriving before 408 (not an option of SPEC §2; tests
    /// shorten it).
    pub body_timeout: Duration,
    /// Where upstream traffic leaves from (SPEC §15): `--upstream-proxy` or the environment.
    pub egress: crate::egress::Plan,
    /// `--ca-file`: PEM roots every upstream path trusts besides the built-in ones.
    pub ca_file: Option<PathBuf>,
}

impl Config {
    /// True when clients authenticate with the token everyone knows.
    pub fn uses_default_token(&self) -> bool {
        self.tokens.iter().any(|t| t == DEFAULT_TOKEN)
    }

    /// A configuration for tests and embedding: defaults, loopback, any free port, console logs.
    pub fn for_tests(key_file: PathBuf, usage_file: PathBuf, upstream: &str) -> Config {
        let raw = RawOptions::collect(&[], &|_| None).expect("no arguments");
        let mut cfg = Config::from_raw(&raw).expect("defaults are valid");
        cfg.host = "127.0.0.1".into();
        cfg.port = 0;
        cfg.key_file = key_file;
        cfg.usage_file = usage_file;
        cfg.log_dir = None;
        cfg.workers = 8;
        cfg.upstream = parse_upstream(upstream).expect("valid test upstream");
        cfg
    }
}

/// Stage one: every option as text, from flag, environment or default.
#[derive(Debug, Clone)]
pub struct RawOptions {
    pub command: Command,
    values: Vec<(&'static str, String)>,
    /// The proxy variables of the environment (`egress::PROXY_ENV`) that are set.
    proxy_env: Vec<(&'static str, String)>,
}

/// A bad command line: the message is one line per problem; exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub Vec<String>);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.join("\n"))
    }
}

impl RawOptions {
    /// Parse `args` (without the program name); `env` looks up an environment variable.
    pub fn collect(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<RawOptions, ConfigError> {
        let mut errors = Vec::new();
        let mut flags: Vec<(&'static str, String)> = Vec::new();
        let mut command: Option<Command> = None;
        let mut json = false;
        let mut i = 0;
        while i < args.len() {
            let arg = &args[i];
            i += 1;
            if arg == "--help" || arg == "-h" {
                return Ok(RawOptions { command: Command::Help, values: Vec::new(), proxy_env: Vec::new() });
            }
            if arg == "--version" || arg == "-V" {
                return Ok(RawOptions {
                    command: Command::Version,
                    values: Vec::new(),
                    proxy_env: Vec::new(),
                });
            }
            if arg == "--json" {
                json = true;
                continue;
            }
            if let Some(body) = arg.strip_prefix("--") {
                let (name, inline) = match body.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (body, None),
                };
                let Some(spec) = OPTIONS.iter().find(|o| o.flag == name) else {
                    errors.push(format!("unknown option --{name} (see --help)"));
                    continue;
                };
                let value = match inline {
                    Some(v) => v,
                    None if i < args.len() => {
                        i += 1;
                        args[i - 1].clone()
                    }
                    None => {
                        errors.push(format!("--{name}: a value is required"));
                        continue;
                    }
                };
                flags.retain(|(f, _)| *f != spec.flag);
                flags.push((spec.flag, value));
                continue;
            }
            let sub = match arg.as_str() {
                "serve" => Command::Serve,
                "usage" => Command::Usage { json: false },
                "check-keys" => Command::CheckKeys,
                "healthcheck" => Command::Healthcheck,
                "help" => Command::Help,
                other => {
                    errors.push(format!("unknown command or argument '{other}' (see --help)"));
                    continue;
                }
            };
            if command.is_some() {
                errors.push(format!("only one command may be given, found another: '{arg}'"));
            }
            command = Some(sub);
        }
        let mut command = command.unwrap_or(Command::Serve);
        if json {
            match &mut command {
                Command::Usage { json: j } => *j = true,
                _ => errors.push("--json: only the usage command takes it".to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let values = OPTIONS
            .iter()
            .map(|o| {
                let v = flags
                    .iter()
                    .find(|(f, _)| *f == o.flag)
                    .map(|(_, v)| v.clone())
                    .or_else(|| env(o.env))
                    .unwrap_or_else(|| o.default.to_string());
                (o.flag, v)
            })
            .collect();
        let proxy_env =
            crate::egress::PROXY_ENV.iter().filter_map(|name| env(name).map(|v| (*name, v))).collect();
        Ok(RawOptions { command, values, proxy_env })
    }

    fn get(&self, flag: &str) -> &str {
        self.values.iter().find(|(f, _)| *f == flag).map(|(_, v)| v.as_str()).unwrap_or("")
    }
}

fn origin(flag: &str) -> String {
    let env = OPTIONS.iter().find(|o| o.flag == flag).map(|o| o.env).unwrap_or("");
    format!("--{flag} ({env})")
}

impl Config {
    /// Stage two: validate every option; all problems are reported together.
    pub fn from_raw(raw: &RawOptions) -> Result<Config, ConfigError> {
        let mut errors: Vec<String> = Vec::new();
        let mut num = |flag: &str, min: u64, max: u64| -> u64 {
            let text = raw.get(flag).trim();
            match text.parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => v,
                Ok(v) => {
                    errors.push(format!("{}: {v} is out of range {min}..={max}", origin(flag)));
                    min
                }
                Err(_) => {
                    errors.push(format!("{}: '{text}' is not a whole number", origin(flag)));
                    min
                }
            }
        };
        let port = num("port", 0, 65535) as u16;
        let workers = num("workers", 1, 4096) as usize;
        let queue_size = num("queue-size", 0, 1_000_000) as usize;
        let max_body_bytes = num("max-body-bytes", 1, 1 << 40);
        let connect_timeout = Duration::from_secs(num("connect-timeout", 1, 3600));
        let read_timeout = Duration::from_secs(num("read-timeout", 1, 86_400));
        let reprobe_interval = Duration::from_secs(num("reprobe-interval", 1, 7 * 86_400));
        let log_max_bytes = num("log-max-bytes", 1024, 1 << 40);
        let log_keep = num("log-keep", 0, 1000) as usize;
        let max_attempts = num("max-attempts", 1, 1000) as u32;
        let keepalive = Duration::from_secs(num("keepalive-secs", 0, 3600));
        let request_deadline = Duration::from_secs(num("request-deadline", 1, 86_400));
        let max_live_sessions = num("max-live-sessions", 0, 100_000) as usize;

        let host = raw.get("host").trim().to_string();
        if host.is_empty() || host.parse::<std::net::IpAddr>().is_err() && !is_hostname(&host) {
            errors.push(format!("{}: '{host}' is not an IP address or host name", origin("host")));
        }
        let tokens: Vec<String> =
            raw.get("token").split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
        if tokens.is_empty() {
            errors.push(format!("{}: at least one non-empty token is required", origin("token")));
        }
        let upstream = match parse_upstream(raw.get("upstream")) {
            Ok(u) => u,
            Err(e) => {
                errors.push(format!("{}: {e}", origin("upstream")));
                Upstream { origin: String::new(), base_path: String::new() }
            }
        };
        let log_level = match raw.get("log-level").trim().to_ascii_lowercase().as_str() {
            "error" => log::LevelFilter::Error,
            "warn" | "warning" => log::LevelFilter::Warn,
            "info" => log::LevelFilter::Info,
            "debug" => log::LevelFilter::Debug,
            "trace" => log::LevelFilter::Trace,
            other => {
                errors.push(format!(
                    "{}: '{other}' is not one of error, warn, info, debug, trace",
                    origin("log-level")
                ));
                log::LevelFilter::Info
            }
        };
        let tz_name = raw.get("reset-timezone").trim();
        let reset_timezone = match tz_name.parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                errors.push(format!(
                    "{}: '{tz_name}' is not an IANA time zone name (e.g. America/Los_Angeles)",
                    origin("reset-timezone")
                ));
                chrono_tz::America::Los_Angeles
            }
        };
        let key_file = PathBuf::from(raw.get("key-file"));
        if raw.get("key-file").trim().is_empty() {
            errors.push(format!("{}: a path is required", origin("key-file")));
        }
        let usage_file = PathBuf::from(raw.get("usage-file"));
        if raw.get("usage-file").trim().is_empty() {
            errors.push(format!("{}: a path is required", origin("usage-file")));
        }
        let aliases = crate::alias::Aliases::parse(raw.get("model-alias")).unwrap_or_else(|e| {
            errors.push(format!("{}: {e}", origin("model-alias")));
            crate::alias::Aliases::default()
        });
        let fallbacks = crate::fallback::Fallbacks::parse(raw.get("model-fallback")).unwrap_or_else(|e| {
            errors.push(format!("{}: {e}", origin("model-fallback")));
            crate::fallback::Fallbacks::default()
        });
        let limits = crate::limits::Configured::parse(raw.get("limits")).unwrap_or_else(|e| {
            errors.push(format!("{}: {e}", origin("limits")));
            crate::limits::Configured::default()
        });
        let learn_limits = boolean(raw.get("learn-limits")).unwrap_or_else(|other| {
            errors.push(format!("{}: '{other}' is not true or false", origin("learn-limits")));
            true
        });
        let metrics_per_key = match raw.get("metrics-per-key").trim().to_ascii_lowercase().as_str() {
            "auto" | "" => None,
            text => Some(boolean(text).unwrap_or_else(|other| {
                errors.push(format!("{}: '{other}' is not true, false or auto", origin("metrics-per-key")));
                false
            })),
        };
        let tls = match (raw.get("tls-cert").trim(), raw.get("tls-key").trim()) {
            ("", "") => None,
            (cert, "") => {
                errors.push(format!("{}: {cert} needs --tls-key too", origin("tls-cert")));
                None
            }
            ("", key) => {
                errors.push(format!("{}: {key} needs --tls-cert too", origin("tls-key")));
                None
            }
            (cert, key) => Some((PathBuf::from(cert), PathBuf::from(key))),
        };
        let tokens_file = Some(raw.get("tokens-file").trim()).filter(|p| !p.is_empty()).map(PathBuf::from);
        let admin_token = Some(raw.get("admin-token").trim()).filter(|t| !t.is_empty()).map(str::to_string);
        let proxy_env = |name: &str| raw.proxy_env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());
        let egress = crate::egress::Plan::decide(raw.get("upstream-proxy"), &proxy_env, &upstream.origin)
            .unwrap_or_else(|e| {
                errors.extend(e);
                crate::egress::Plan::default()
            });
        let ca_file = Some(raw.get("ca-file").trim()).filter(|f| !f.is_empty()).map(PathBuf::from);
        let log_dir = match raw.get("log-dir") {
            "" => None,
            d => Some(PathBuf::from(d)),
        };
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(Config {
            host,
            port,
            key_file,
            usage_file,
            tokens,
            upstream,
            log_dir,
            log_level,
            workers,
            queue_size,
            reset_timezone,
            max_body_bytes,
            connect_timeout,
            read_timeout,
            reprobe_interval,
            log_max_bytes,
            log_keep,
            aliases,
            fallbacks,
            limits,
            learn_limits,
            metrics_per_key,
            keepalive,
            max_attempts,
            request_deadline,
            max_live_sessions,
            tls,
            tokens_file,
            admin_token,
            client_timeout: crate::server::CLIENT_TIMEOUT,
            body_timeout: crate::server::BODY_TIMEOUT,
            egress,
            ca_file,
        })
    }
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`, any case); `Err` with the trimmed text.
fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(text.trim().to_string()),
    }
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// `https://host[:port][/prefix]` → `Upstream`; http:// is allowed (tests, local mocks).
pub fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("'{url}' is not a URL (expected https://host[:port])"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(format!("scheme '{scheme}' is not http or https"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') || rest.contains(['?', '#']) {
        return Err(format!("'{url}' must be scheme://host[:port] with an optional path and no query"));
    }
    let host_part = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            if p.parse::<u16>().is_err() && !authority.ends_with(']') {
                return Err(format!("port '{p}' is not a number"));
            }
            h
        }
        _ => authority,
    };
    if host_part.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    Ok(Upstream {
        origin: format!("{scheme}://{authority}"),
        base_path: path.trim_end_matches('/').to_string(),
    })
}

/// The `--help` text: every option with its variable and default.
pub fn help_text() -> String {
    let mut s = String::from(
        "gemini-key-manager: one client token in front of a pool of Gemini API keys\n\n\
         USAGE:\n  gemini-key-manager [serve] [OPTIONS]       run the proxy (default)\n  \
         gemini-key-manager usage [--usage-file F] [--json]\n                                             \
         print today's usage per key and model\n  \
         gemini-key-manager check-keys [OPTIONS]    probe every key; exit 1 if any is invalid\n  \
         gemini-key-manager healthcheck [--port N]  GET /healthz on 127.0.0.1; exit 0 on 200\n\n\
         OPTIONS (flag wins over variable, variable over default):\n",
    );
    for o in OPTIONS {
        s.push_str(&format!(
            "  --{:<18} {:<26} {}\n  {:<20} {:<26} default: {}\n",
            format!("{} <v>", o.flag),
            o.env,
            o.help,
            "",
            "",
            if o.default.is_empty() { "\"\"" } else { o.default }
        ));
    }
    s.push_str(
        "  -h, --help                 print this help\n  -V, --version              print the version\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<(Command, Config), ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let raw = RawOptions::collect(&args, &lookup)?;
        Ok((raw.command.clone(), Config::from_raw(&raw)?))
    }

    #[test]
    fn defaults_match_the_spec() {
        let (cmd, c) = parse(&[], &[]).unwrap();
        assert_eq!(cmd, Command::Serve);
        assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 5000));
        assert_eq!(c.key_file, PathBuf::from("key.txt"));
        assert_eq!(c.usage_file, PathBuf::from("key_usage.txt"));
        assert_eq!(c.tokens, vec![DEFAULT_TOKEN.to_string()]);
        assert_eq!(c.upstream.origin, "https://generativelanguage.googleapis.com");
        assert_eq!(c.log_dir, Some(PathBuf::from(".")));
        assert_eq!(c.log_level, log::LevelFilter::Info);
        assert_eq!((c.workers, c.queue_size), (64, 64));
        assert_eq!(c.reset_timezone, chrono_tz::America::Los_Angeles);
        assert_eq!(c.max_body_bytes, 33_554_432);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.read_timeout, Duration::from_secs(300));
        assert_eq!(c.reprobe_interval, Duration::from_secs(3600));
        assert_eq!((c.log_max_bytes, c.log_keep), (10_485_760, 5));
        assert!(c.uses_default_token());
    }

    #[test]
    fn flag_wins_over_variable_and_variable_over_default() {
        let (_, c) = parse(&["--port", "7000"], &[("LISTEN_PORT", "6000"), ("WORKERS", "3")]).unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.workers, 3);
        let (_, c) = parse(&["--port=7001"], &[]).unwrap();
        assert_eq!(c.port, 7001);
    }

    #[test]
    fn several_tokens_and_empty_log_dir() {
        let (_, c) = parse(&["--token", "a, b,,c", "--log-dir", ""], &[]).unwrap();
        assert_eq!(c.tokens, vec!["a", "b", "c"]);
        assert_eq!(c.log_dir, None);
        assert!(!c.uses_default_token());
    }

    #[test]
    fn every_bad_option_is_reported_on_its_own_line() {
        let err = parse(
            &[
                "--port",
                "99999",
                "--workers",
                "x",
                "--reset-timezone",
                "Mars/Olympus",
                "--upstream",
                "ftp://x",
            ],
            &[("LOG_LEVEL", "loud")],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        assert!(err.0[0].contains("--port (LISTEN_PORT)") && err.0[0].contains("99999"));
        assert!(err.0.iter().any(|l| l.contains("--workers") && l.contains("'x'")));
        assert!(err.0.iter().any(|l| l.contains("Mars/Olympus")));
        assert!(err.0.iter().any(|l| l.contains("--upstream") && l.contains("ftp")));
        assert!(err.0.iter().any(|l| l.contains("--log-level (LOG_LEVEL)") && l.contains("loud")));
    }

    #[test]
    fn unknown_flags_and_missing_values_are_errors() {
        assert!(parse(&["--nope"], &[]).unwrap_err().0[0].contains("unknown option --nope"));
        assert!(parse(&["--port"], &[]).unwrap_err().0[0].contains("a value is required"));
        assert!(parse(&["frobnicate"], &[]).unwrap_err().0[0].contains("frobnicate"));
        assert!(parse(&["--token", " , "], &[]).unwrap_err().0[0].contains("token"));
    }

    #[test]
    fn subcommands() {
        assert_eq!(parse(&["usage", "--json"], &[]).unwrap().0, Command::Usage { json: true });
        assert_eq!(parse(&["healthcheck", "--port", "1"], &[]).unwrap().0, Command::Healthcheck);
        assert_eq!(parse(&["check-keys"], &[]).unwrap().0, Command::CheckKeys);
        let raw = RawOptions::collect(&["--help".to_string()], &|_| None).unwrap();
        assert_eq!(raw.command, Command::Help);
    }

    #[test]
    fn help_lists_every_option_with_variable_and_default() {
        let h = help_text();
        for o in OPTIONS {
            assert!(h.contains(&format!("--{}", o.flag)), "{}", o.flag);
            assert!(h.contains(o.env), "{}", o.env);
            assert!(h.contains(o.default), "{}", o.default);
        }
    }

    #[test]
    fn metrics_per_key_is_auto_unless_set() {
        assert_eq!(parse(&[], &[]).unwrap().1.metrics_per_key, None);
        assert_eq!(parse(&["--metrics-per-key", "auto"], &[]).unwrap().1.metrics_per_key, None);
        assert_eq!(parse(&["--metrics-per-key", "true"], &[]).unwrap().1.metrics_per_key, Some(true));
        assert_eq!(parse(&["--metrics-per-key=FALSE"], &[]).unwrap().1.metrics_per_key, Some(false));
        let env = [("METRICS_PER_KEY", "on")];
        assert_eq!(parse(&[], &env).unwrap().1.metrics_per_key, Some(true));
        assert_eq!(parse(&["--metrics-per-key", "off"], &env).unwrap().1.metrics_per_key, Some(false));
        let err = parse(&["--metrics-per-key", "sometimes"], &[]).unwrap_err();
        assert_eq!(err.0, ["--metrics-per-key (METRICS_PER_KEY): 'sometimes' is not true, false or auto"]);
        let err = parse(&["--learn-limits", "maybe"], &[]).unwrap_err();
        assert_eq!(err.0, ["--learn-limits (LEARN_LIMITS): 'maybe' is not true or false"]);
    }

    #[test]
    fn upstream_urls() {
        let u = parse_upstream("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.origin.as_str(), u.base_path.as_str()), ("http://127.0.0.1:8080", ""));
        let u = parse_upstream("https://example.com/prefix/").unwrap();
        assert_eq!((u.origin.as_str(), u.base_path.as_str()), ("https://example.com", "/prefix"));
        assert!(parse_upstream("example.com").is_err());
        assert!(parse_upstream("http://user@host").is_err());
        assert!(parse_upstream("http://host:xx").is_err());
        assert!(parse_upstream("http://host/?q=1").is_err());
    }
}
