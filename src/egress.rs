//! Where upstream traffic leaves from (SPEC §15): proxy URLs, the environment fallback and
//! `NO_PROXY`, which key goes through which proxy, the extra CA roots of `--ca-file`, and the
//! tunnel of the Live API's own socket.
//!
//! The plan is decided once, at startup, from the flag or the environment (a URL that is used is
//! a URL that parses: nothing is skipped in silence). A key's own `proxy=` field of the key file
//! wins over the plan; with a list, each key keeps the proxy its fingerprint chooses (rendezvous
//! hashing: adding or removing a proxy moves only the keys of that proxy). Nothing here ever
//! prints a proxy's credentials: people see `host:port`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use sha2::{Digest, Sha256};

/// The kinds of proxy the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// HTTP CONNECT (`http://`).
    Http,
    /// SOCKS5, the upstream's name resolved here (`socks5://`).
    Socks5,
    /// SOCKS5, the upstream's name resolved by the proxy (`socks5h://`).
    Socks5h,
}

/// One outbound proxy, parsed and checked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ProxyUrl {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    user: Option<String>,
    password: Option<String>,
    /// The URL as given (credentials included): what ureq is configured with.
    url: String,
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}({})", self.kind, self.label())
    }
}

impl ProxyUrl {
    /// `scheme://[user[:password]@]host[:port][/]` with scheme `http`, `socks5` or `socks5h`.
    /// The error names the URL without its password.
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let text = text.trim();
        let shown = without_password(text);
        let bad = |why: &str| format!("'{shown}' is not a usable proxy URL: {why}");
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(bad("expected http://, socks5:// or socks5h://HOST:PORT"));
        };
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            other => {
                return Err(bad(&format!("scheme '{other}' is not supported (http, socks5 or socks5h)")));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("a proxy URL has no path, query or fragment"));
        }
        if rest.matches('@').count() > 1 {
            return Err(bad("percent-encode '@' in a user name or password as %40"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((a, b)) => (a, Some(b)),
                    None => (u, None),
                };
                let user =
                    percent_decode(user).ok_or_else(|| bad("bad percent-encoding in the user name"))?;
                let pass = pass
                    .map(|p| percent_decode(p).ok_or_else(|| bad("bad percent-encoding in the password")))
                    .transpose()?;
                if user.is_empty() {
                    return Err(bad("empty user name"));
                }
                (Some(user), pass)
            }
        };
        let default_port = if kind == ProxyKind::Http { 80 } else { 1080 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else { return Err(bad("unclosed '['")) };
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse::<u16>().map_err(|_| bad("bad port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("bad port")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| bad("bad port"))?),
                None => (hostport.to_string(), default_port),
            }
        };
        let host_ok = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'));
        if !host_ok {
            return Err(bad("bad host name"));
        }
        if port == 0 {
            return Err(bad("port 0"));
        }
        // The HTTP client must read it as we do (else its requests could not take this proxy).
        crate::upstream::client_accepts_proxy(text).map_err(|e| bad(&e))?;
        Ok(ProxyUrl { kind, host, port, user, password, url: text.to_string() })
    }

    /// `host:port`: how a proxy is shown (`/status`, logs), never with its credentials.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL with its credentials, for the HTTP client's configuration only.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The password, to register with the redactor.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

/// `scheme://user:***@host`: a proxy URL fit to print.
pub fn without_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else { return text.to_string() };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => text.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The environment variables read for the fallback, in the order they are considered.
pub const PROXY_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The startup decision: the proxies upstream traffic may take (empty: direct).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub proxies: Vec<ProxyUrl>,
    /// The upstream's host is in `NO_PROXY`: every key goes direct, its own `proxy=` included.
    pub bypass: bool,
    /// Where the proxies came from: `--upstream-proxy (UPSTREAM_PROXY)` or a variable's name.
    pub source: String,
}

impl Plan {
    /// From `--upstream-proxy` (a comma-separated list, may be empty) or, when it is empty, the
    /// variable that serves the upstream's scheme (`HTTPS_PROXY` for https, `HTTP_PROXY` for
    /// http, then `ALL_PROXY`); `NO_PROXY` is matched against the upstream's host. `env` gives
    /// the values of `PROXY_ENV`. Every URL that is used must parse.
    pub fn decide(
        flag: &str,
        env: &dyn Fn(&str) -> Option<String>,
        upstream_origin: &str,
    ) -> Result<Plan, Vec<String>> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let https = upstream_origin.starts_with("https://");
        let host = upstream_host(upstream_origin);
        let no_proxy = get("NO_PROXY").or_else(|| get("no_proxy")).unwrap_or_default();
        let bypass = no_proxy_matches(&no_proxy, &host);
        let mut errors = Vec::new();
        let (source, text) = if !flag.trim().is_empty() {
            ("--upstream-proxy (UPSTREAM_PROXY)".to_string(), flag.to_string())
        } else {
            let names: &[&str] = if https {
                &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
            } else {
                &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            };
            match names.iter().find_map(|n| get(n).map(|v| (n.to_string(), v))) {
                Some(found) => found,
                None => return Ok(Plan { proxies: Vec::new(), bypass, source: String::new() }),
            }
        };
        let mut proxies = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match ProxyUrl::parse(part) {
                Ok(p) if !proxies.contains(&p) => proxies.push(p),
                Ok(_) => {}
                Err(e) => errors.push(format!("{source}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Plan { proxies, bypass, source })
    }
}

/// The host of `scheme://host[:port]`, lowercased, without brackets.
fn upstream_host(origin: &str) -> String {
    let rest = origin.split_once("://").map_or(origin, |(_, r)| r);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => rest.rsplit_once(':').map_or(rest, |(h, _)| h),
    };
    host.to_ascii_lowercase()
}

/// Does `NO_PROXY` (comma-separated: `*`, `host`, `.domain`, `*.domain`, optional `:port`)
/// name `host`? A name matches itself and its subdomains, as curl does it.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = match entry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None if entry.matches(':').count() == 1 => entry.split(':').next().unwrap_or(""),
            None => entry,
        };
        let entry = entry.trim_start_matches('*').trim_start_matches('.').to_ascii_lowercase();
        !entry.is_empty() && (host == entry || host.ends_with(&format!(".{entry}")))
    })
}

/// Which route each key takes, at run time: the plan, and the keys' own `proxy=` fields (by
/// fingerprint; replaced on every key-file load).
#[derive(Debug, Default)]
pub struct Egress {
    plan: Plan,
    proxies: Vec<Arc<ProxyUrl>>,
    own: RwLock<HashMap<String, Arc<ProxyUrl>>>,
}

impl Egress {
    pub fn new(plan: &Plan) -> Egress {
        for p in &plan.proxies {
            register_password(p);
        }
        Egress {
            proxies: plan.proxies.iter().cloned().map(Arc::new).collect(),
            plan: plan.clone(),
            own: RwLock::new(HashMap::new()),
        }
    }

    /// The keys' own proxies, from a (re)load of the key file.
    pub fn set_own(&self, keys: &[crate::keyfile::KeySpec]) {
        let own: HashMap<String, Arc<ProxyUrl>> = keys
            .iter()
            .filter_map(|k| {
                let p = k.proxy.as_ref()?;
                register_password(p);
                Some((crate::keyfile::fingerprint(&k.key), Arc::new(p.clone())))
            })
            .collect();
        *self.own.write() = own;
    }

    /// The proxy every key takes when no key has a route of its own (`None` inside: direct);
    /// `None` when it depends on the key.
    pub fn uniform(&self) -> Option<Option<Arc<ProxyUrl>>> {
        if self.plan.bypass {
            return Some(None);
        }
        if self.proxies.len() > 1 || !self.own.read().is_empty() {
            return None;
        }
        Some(self.proxies.first().cloned())
    }

    /// The proxy of the key with this fingerprint (`None`: direct).
    pub fn route(&self, fingerprint: &str) -> Option<Arc<ProxyUrl>> {
        if self.plan.bypass {
            return None;
        }
        if let Some(p) = self.own.read().get(fingerprint) {
            return Some(p.clone());
        }
        self.proxies.iter().max_by_key(|p| score(fingerprint, p)).cloned()
    }

    /// The proxy of this key (`None`: direct), with no hashing when it cannot matter.
    pub fn route_of_key(&self, key: &str) -> Option<Arc<ProxyUrl>> {
        match self.uniform() {
            Some(route) => route,
            None => self.route(&crate::keyfile::fingerprint(key)),
        }
    }

    /// `/status`'s `egress` of a key: `host:port` of its proxy, or `direct`.
    pub fn label(&self, fingerprint: &str) -> String {
        self.route(fingerprint).map_or_else(|| "direct".to_string(), |p| p.label())
    }
}

/// Rendezvous weight of a key on a proxy: the proxy with the highest weight is the key's.
fn score(fingerprint: &str, proxy: &ProxyUrl) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(fingerprint.as_bytes());
    h.update(b"\0");
    h.update(proxy.label().as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn register_password(p: &ProxyUrl) {
    if let Some(pw) = p.password() {
        crate::redact::add_tokens([pw.to_string()]);
    }
}

/// What startup checks beyond `Config` (which opens no file): `--ca-file` holds PEM certificates;
/// and it says where upstream traffic goes (credentials never shown).
pub fn check(cfg: &crate::config::Config) -> Result<(), String> {
    if let Some(path) = &cfg.ca_file {
        let n = ca_certs(path)?.len();
        log::info!("trusting {n} certificate(s) of {} besides the built-in roots", path.display());
    }
    let plan = &cfg.egress;
    if plan.bypass && !plan.proxies.is_empty() {
        log::info!("upstream traffic goes direct: NO_PROXY names the upstream's host");
    } else if !plan.proxies.is_empty() {
        let labels: Vec<String> = plan.proxies.iter().map(|p| format!("{:?}", p)).collect();
        log::info!("upstream traffic goes through {} (from {})", labels.join(", "), plan.source);
    }
    Ok(())
}

/// The PEM certificates of `--ca-file`, as DER (an empty or unreadable file is an error).
pub fn ca_certs(path: &std::path::Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let what = |e: &dyn std::fmt::Display| format!("--ca-file (UPSTREAM_CA_FILE) {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(&e))?;
    if certs.is_empty() {
        return Err(what(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// TCP to `host:port` through `proxy` (or directly), for the Live API's socket: an HTTP
/// CONNECT tunnel, or SOCKS5 (the name resolved by the proxy for `socks5h`). Each phase within
/// `timeout`.
pub fn tunnel(proxy: Option<&ProxyUrl>, host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let Some(proxy) = proxy else { return connect(host, port, timeout) };
    let stream = connect(&proxy.host, proxy.port, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    match proxy.kind {
        ProxyKind::Http => http_connect(&stream, proxy, host, port)?,
        ProxyKind::Socks5 | ProxyKind::Socks5h => socks5_connect(&stream, proxy, host, port)?,
    }
    Ok(stream)
}

fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::AddrNotAvailable, format!("{host} resolves to nothing"));
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn http_connect(mut stream: &TcpStream, proxy: &ProxyUrl, host: &str, port: u16) -> io::Result<()> {
    use base64::Engine;
    let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(user) = &proxy.user {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", proxy.password.as_deref().unwrap_or("")));
        head.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // Read the answer's head byte by byte: nothing after it may be taken from the socket.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() > 16 * 1024 || stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "proxy refused: no answer to CONNECT"));
        }
        answer.push(byte[0]);
    }
    let line = String::from_utf8_lossy(answer.split(|b| *b == b'\r').next().unwrap_or_default()).to_string();
    match line.split_whitespace().nth(1) {
        Some(code) if code.starts_with('2') => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::ConnectionRefused, format!("proxy refused: {line}"))),
    }
}

/// SOCKS5 CONNECT (RFC 1928, user/password of RFC 1929): the same exchange as the HTTP
/// client's own SOCKS connector, on a plain socket the Live API can split.
fn socks5_connect(mut stream: &TcpStream, proxy: &ProxyUrl, host: &str, port: u16) -> io::Result<()> {
    let refused =
        |why: &str| io::Error::new(io::ErrorKind::ConnectionRefused, format!("proxy refused: {why}"));
    let greeting: &[u8] = if proxy.user.is_some() { &[5, 2, 0, 2] } else { &[5, 1, 0] };
    stream.write_all(greeting)?;
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply)?;
    match (reply, &proxy.user) {
        ([5, 0], _) => {}
        ([5, 2], Some(user)) => {
            let pass = proxy.password.as_deref().unwrap_or("");
            let (u, p) = (u8::try_from(user.len()), u8::try_from(pass.len()));
            let (Ok(ul), Ok(pl)) = (u, p) else { return Err(refused("credentials too long")) };
            let mut auth = vec![1, ul];
            auth.extend_from_slice(user.as_bytes());
            auth.push(pl);
            auth.extend_from_slice(pass.as_bytes());
            stream.write_all(&auth)?;
            stream.read_exact(&mut reply)?;
            if reply[1] != 0 {
                return Err(refused("password authentication failed"));
            }
        }
        _ => return Err(refused("no acceptable authentication method")),
    }
    let mut request = vec![5, 1, 0];
    let ip = host.parse::<std::net::IpAddr>().ok().or_else(|| {
        // socks5: the name is resolved here; socks5h: by the proxy.
        (proxy.kind == ProxyKind::Socks5)
            .then(|| (host, port).to_socket_addrs().ok()?.next().map(|a| a.ip()))
            .flatten()
    });
    match ip {
        Some(std::net::IpAddr::V4(v4)) => {
            request.push(1);
            request.extend_from_slice(&v4.octets());
        }
        Some(std::net::IpAddr::V6(v6)) => {
            request.push(4);
            request.extend_from_slice(&v6.octets());
        }
        None if proxy.kind == ProxyKind::Socks5 => {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("resolving {host} failed")));
        }
        None => {
            let len = u8::try_from(host.len()).map_err(|_| refused("host name too long"))?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request)?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head)?;
    if head[1] != 0 {
        return Err(refused(&format!("SOCKS5 reply {}", head[1])));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len)?;
            len[0] as usize + 2
        }
        _ => return Err(refused("bad SOCKS5 reply")),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_and_never_show_their_password() {
        let p = ProxyUrl::parse("http://user:s%40cret@proxy.example:3128").unwrap();
        assert_eq!((p.kind, p.host.as_str(), p.port), (ProxyKind::Http, "proxy.example", 3128));
        assert_eq!(p.password(), Some("s@cret"));
        assert_eq!(p.label(), "proxy.example:3128");
        assert!(!format!("{p:?}").contains("cret"));
        assert_eq!(ProxyUrl::parse("socks5h://10.0.0.1").unwrap().port, 1080);
        assert_eq!(ProxyUrl::parse("SOCKS5://[::1]:9050/").unwrap().label(), "[::1]:9050");
        for good in ["http://h", "socks5://u@h:1", "socks5h://u:p%3Aw@[::1]:2", "http://u:%25x@1.2.3.4:3/"] {
            assert!(ProxyUrl::parse(good).is_ok(), "{good}: {:?}", ProxyUrl::parse(good));
        }
        for bad in [
            "socks4://h:1",
            "https://h:1",
            "h:1",
            "http://h:99999",
            "http://:1",
            "http://h/x",
            "http://h:p",
            "http://u:p@ss@h:1",
            "http://u:%zz@h:1",
        ] {
            assert!(ProxyUrl::parse(bad).is_err(), "{bad}");
        }
        let e = ProxyUrl::parse("ftp://u:topsecret@h:1").unwrap_err();
        assert!(!e.contains("topsecret") && e.contains("u:***@h:1"), "{e}");
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_environment_serves_the_upstreams_scheme_and_no_proxy_applies_always() {
        let vars =
            &[("HTTPS_PROXY", "http://a:1"), ("HTTP_PROXY", "http://b:2"), ("ALL_PROXY", "socks5h://c:3")];
        let https = Plan::decide("", &env(vars), "https://generativelanguage.googleapis.com").unwrap();
        assert_eq!(https.proxies[0].label(), "a:1");
        assert_eq!(https.source, "HTTPS_PROXY");
        assert_eq!(Plan::decide("", &env(vars), "http://x:80").unwrap().proxies[0].label(), "b:2");
        let all = Plan::decide("", &env(&[("ALL_PROXY", "socks5://c:3")]), "https://g.com").unwrap();
        assert_eq!(all.proxies[0].kind, ProxyKind::Socks5, "a SOCKS URL is used, never skipped");
        let flag = Plan::decide("socks5h://d:4, http://e:5", &env(vars), "https://g.com").unwrap();
        assert_eq!(flag.proxies.len(), 2);
        assert!(Plan::decide("", &env(&[]), "https://g.com").unwrap().proxies.is_empty());
        let only_http = Plan::decide("", &env(&[("HTTP_PROXY", "http://b:2")]), "https://g.com").unwrap();
        assert!(only_http.proxies.is_empty(), "HTTP_PROXY does not serve an https upstream");
        let lower = Plan::decide("", &env(&[("https_proxy", "socks5://l:1")]), "https://g.com").unwrap();
        assert_eq!(lower.proxies[0].label(), "l:1");
        let errors = Plan::decide("", &env(&[("ALL_PROXY", "socks4://c:3")]), "https://g.com").unwrap_err();
        assert!(errors[0].starts_with("ALL_PROXY: 'socks4://c:3'"), "{errors:?}");
        assert!(Plan::decide("http://ok:1,garbage", &env(&[]), "https://g.com").is_err());
        let np = &[("NO_PROXY", "localhost,.googleapis.com"), ("HTTPS_PROXY", "http://a:1")];
        assert!(Plan::decide("", &env(np), "https://generativelanguage.googleapis.com").unwrap().bypass);
        assert!(
            Plan::decide("http://f:1", &env(np), "https://generativelanguage.googleapis.com").unwrap().bypass
        );
        assert!(!Plan::decide("", &env(np), "https://example.com").unwrap().bypass);
    }

    #[test]
    fn no_proxy_entries_match_names_and_subdomains() {
        assert!(no_proxy_matches("*", "x"));
        assert!(no_proxy_matches("example.com", "api.example.com"));
        assert!(no_proxy_matches("*.example.com", "api.example.com"));
        assert!(no_proxy_matches(" 127.0.0.1:8080 ", "127.0.0.1"));
        assert!(no_proxy_matches("[::1]", "::1"));
        assert!(!no_proxy_matches("ample.com", "example.com"));
        assert!(!no_proxy_matches("", "example.com"));
    }

    #[test]
    fn each_key_keeps_its_proxy_and_a_keys_own_field_wins() {
        let plan =
            Plan::decide("socks5://a:1,socks5://b:2,socks5://c:3", &|_| None, "https://g.com").unwrap();
        let egress = Egress::new(&plan);
        let fps: Vec<String> = (0..60).map(|i| crate::keyfile::fingerprint(&format!("key-{i}"))).collect();
        let first: Vec<String> = fps.iter().map(|f| egress.label(f)).collect();
        assert_eq!(first, fps.iter().map(|f| egress.label(f)).collect::<Vec<_>>(), "stable");
        for l in ["a:1", "b:2", "c:3"] {
            assert!(first.iter().filter(|x| *x == l).count() > 5, "spread: {first:?}");
        }
        // Removing a proxy moves only its own keys.
        let two =
            Egress::new(&Plan::decide("socks5://a:1,socks5://b:2", &|_| None, "https://g.com").unwrap());
        for (f, was) in fps.iter().zip(&first) {
            if was != "c:3" {
                assert_eq!(&two.label(f), was);
            }
        }
        let mut spec = crate::keyfile::KeySpec::new("key-0", None);
        spec.proxy = Some(ProxyUrl::parse("http://own:8").unwrap());
        egress.set_own(&[spec]);
        assert_eq!(egress.label(&fps[0]), "own:8");
        assert!(egress.uniform().is_none());
        assert_eq!(Egress::default().label(&fps[0]), "direct");
    }
}
