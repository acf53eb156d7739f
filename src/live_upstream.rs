//! The Live API's upstream socket: TCP to the configured origin, TLS (`wss://`) with the roots
//! and crypto provider ureq uses, and the WebSocket handshake with a pool key. ureq cannot hand
//! a socket over after `101 Switching Protocols`, so this is the one place besides
//! `upstream.rs`/`transport.rs` that opens a connection to Google; it never names ureq.
//!
//! Under TLS the connection is split like the listening side's (vendor/tiny_http patch 18): the
//! socket is read without the session lock, and the lock is taken only to decrypt what was read
//! or to encrypt and write, so the two relay loops never wait for each other.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::Role;

use crate::ws::{self, Duplex, Endpoint, SharedWriter};

/// Why no WebSocket to the upstream was opened.
#[derive(Debug)]
pub enum OpenError {
    /// The upstream answered the upgrade with an HTTP status (429, 400, 403…) and this body.
    Refused { status: u16, body: Vec<u8> },
    /// It did not answer in time.
    Timeout,
    /// Connecting, TLS or the handshake failed.
    Io(String),
}

/// Where the Live WebSocket goes: scheme, host, port and base path of `--upstream`.
#[derive(Debug, Clone)]
pub struct Origin {
    tls: bool,
    host: String,
    port: u16,
    base_path: String,
    /// PEM roots trusted besides the built-in ones (`--ca-file`).
    extra_roots: Option<std::path::PathBuf>,
}

impl Origin {
    /// From the configured upstream (`https://host[:port]` or `http://host[:port]`).
    pub fn of(upstream: &crate::config::Upstream, extra_roots: Option<&std::path::Path>) -> Option<Origin> {
        let (tls, rest) = if let Some(r) = upstream.origin.strip_prefix("https://") {
            (true, r)
        } else {
            (false, upstream.origin.strip_prefix("http://")?)
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)
            }
            _ => (rest.to_string(), if tls { 443 } else { 80 }),
        };
        let extra_roots = extra_roots.map(std::path::Path::to_path_buf);
        Some(Origin { tls, host, port, base_path: upstream.base_path.clone(), extra_roots })
    }

    fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("{scheme}://{host}:{}{}{path_and_query}", self.port, self.base_path)
    }
}

/// The rustls client settings: ureq's provider (ring) and roots (webpki), plus the PEM roots of
/// `extra` when given, HTTP/1.1 only.
fn tls_config(extra: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let build = || {
        let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        if let Some(path) = extra {
            for cert in crate::egress::ca_certs(path)? {
                roots.add(cert).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    };
    match extra {
        None => CONFIG.get_or_init(build).clone(),
        Some(_) => build(),
    }
}

/// Open the WebSocket `path_and_query` upstream with `headers` (the credential among them): TCP
/// (through the key's `proxy`, if it has one) within `connect_timeout`, the handshake's answer
/// within `read_timeout`, which stays the socket's read timeout until the caller clears it (the
/// first server frame is due too).
pub fn open(
    origin: &Origin,
    proxy: Option<&crate::egress::ProxyUrl>,
    path_and_query: &str,
    headers: &[(String, String)],
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<Endpoint, OpenError> {
    let tcp = connect(proxy, &origin.host, origin.port, connect_timeout)?;
    let io = |what: &str, e: std::io::Error| OpenError::Io(format!("{what}: {e}"));
    tcp.set_nodelay(true).map_err(|e| io("TCP_NODELAY", e))?;
    tcp.set_read_timeout(Some(read_timeout)).map_err(|e| io("read timeout", e))?;
    tcp.set_write_timeout(Some(read_timeout)).map_err(|e| io("write timeout", e))?;
    let _ = socket2::SockRef::from(&tcp).set_keepalive(true);
    // `rest` reads what tungstenite leaves of a refusal's body on the socket.
    let (read, write, rest): (Box<dyn Read + Send>, Box<dyn Write + Send>, Box<dyn Read + Send>) =
        if origin.tls {
            let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
                .map_err(|e| OpenError::Io(format!("TLS server name {}: {e}", origin.host)))?;
            let conn = rustls::ClientConnection::new(
                tls_config(origin.extra_roots.as_deref()).map_err(OpenError::Io)?,
                name,
            )
            .map_err(|e| OpenError::Io(format!("TLS: {e}")))?;
            let tls = TlsStream::new(conn, tcp.try_clone().map_err(|e| io("socket", e))?);
            (Box::new(tls.clone()), Box::new(tls.clone()), Box::new(tls))
        } else {
            let clone = || tcp.try_clone().map_err(|e| io("socket", e));
            (Box::new(clone()?), Box::new(clone()?), Box::new(clone()?))
        };
    let mut request = origin
        .url(path_and_query)
        .into_client_request()
        .map_err(|e| OpenError::Io(crate::logging::redact(&format!("bad upstream URL: {e}"))))?;
    for (name, value) in headers {
        let (Ok(name), Ok(value)) = (
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()),
            tungstenite::http::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        request.headers_mut().insert(name, value);
    }
    let write = SharedWriter::new(write);
    let stream = Duplex::new(Some(read), write.clone());
    match tungstenite::client::client_with_config(request, stream, Some(ws::config())) {
        Ok((reader, _response)) => Ok(Endpoint::new(reader, write, tcp, Role::Client)),
        Err(tungstenite::HandshakeError::Failure(e)) => Err(handshake_failure(e, rest)),
        Err(tungstenite::HandshakeError::Interrupted(_)) => Err(OpenError::Timeout),
    }
}

/// Largest refusal body read to classify it.
const MAX_REFUSAL_BODY: u64 = 1 << 20;

fn handshake_failure(e: tungstenite::Error, rest: Box<dyn Read + Send>) -> OpenError {
    match e {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let length = response
                .headers()
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            // tungstenite keeps only the bytes it read with the head: the rest of the body (by
            // `Content-Length`, else to the end) is still on the socket.
            let mut body = response.into_body().unwrap_or_default();
            let want = length.unwrap_or(MAX_REFUSAL_BODY).min(MAX_REFUSAL_BODY);
            if (body.len() as u64) < want {
                let _ = rest.take(want - body.len() as u64).read_to_end(&mut body);
            }
            OpenError::Refused { status, body }
        }
        tungstenite::Error::Io(io)
            if matches!(io.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) =>
        {
            OpenError::Timeout
        }
        other => OpenError::Io(crate::logging::redact(&format!("WebSocket handshake: {other}"))),
    }
}

/// TCP to `host:port` (through `proxy`), each resolved address tried within `timeout`.
fn connect(
    proxy: Option<&crate::egress::ProxyUrl>,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, OpenError> {
    let tcp = crate::egress::tunnel(proxy, host, port, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => OpenError::Timeout,
        _ => {
            let via = proxy.map(|p| format!(" through proxy {}", p.label())).unwrap_or_default();
            OpenError::Io(crate::logging::redact(&format!("connecting to {host}:{port}{via}: {e}")))
        }
    })?;
    // The tunnel's handshake timeouts are replaced by the caller's from here on.
    Ok(tcp)
}

/// A rustls client session and the plaintext it decrypted that nobody has read yet.
struct Session {
    conn: rustls::ClientConnection,
    plaintext: Vec<u8>,
    taken: usize,
    closed: bool,
}

/// A TLS connection whose clones may read and write on two threads without waiting for each
/// other (the read blocks on the socket, not on the session's lock).
#[derive(Clone)]
struct TlsStream {
    session: Arc<Mutex<Session>>,
    sock: Arc<TcpStream>,
}

impl TlsStream {
    fn new(conn: rustls::ClientConnection, sock: TcpStream) -> TlsStream {
        TlsStream {
            session: Arc::new(Mutex::new(Session { conn, plaintext: Vec::new(), taken: 0, closed: false })),
            sock: Arc::new(sock),
        }
    }

    fn write_tls(&self, session: &mut Session) -> std::io::Result<()> {
        while session.conn.wants_write() {
            session.conn.write_tls(&mut &*self.sock)?;
        }
        Ok(())
    }
}

impl Session {
    fn drain(&mut self) -> std::io::Result<()> {
        let mut buf = [0u8; 4096];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.closed = true;
                    return Ok(());
                }
                Ok(n) => self.plaintext.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn take(&mut self, buf: &mut [u8]) -> usize {
        let n = (self.plaintext.len() - self.taken).min(buf.len());
        buf[..n].copy_from_slice(&self.plaintext[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext.clear();
            self.taken = 0;
        }
        n
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut raw = [0u8; 16 * 1024];
        loop {
            {
                let mut session = self.session.lock();
                if session.plaintext.len() > session.taken {
                    return Ok(session.take(buf));
                }
                if session.closed {
                    return Ok(0);
                }
                self.write_tls(&mut session)?;
            }
            let n = (&*self.sock).read(&mut raw)?;
            let mut session = self.session.lock();
            if n == 0 {
                session.closed = true;
                continue;
            }
            let mut input = &raw[..n];
            while !input.is_empty() {
                session.conn.read_tls(&mut input)?;
                if let Err(e) = session.conn.process_new_packets() {
                    let _ = self.write_tls(&mut session);
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
                session.drain()?;
            }
            self.write_tls(&mut session)?;
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut session = self.session.lock();
        let n = session.conn.writer().write(buf)?;
        self.write_tls(&mut session)?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut session = self.session.lock();
        session.conn.writer().flush()?;
        self.write_tls(&mut session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Origin {
        Origin::of(&crate::config::Upstream { origin: s.into(), base_path: String::new() }, None).unwrap()
    }

    #[test]
    fn the_live_url_follows_the_upstreams_scheme() {
        let path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
        assert_eq!(
            origin("https://generativelanguage.googleapis.com").url(path),
            format!("wss://generativelanguage.googleapis.com:443{path}")
        );
        assert_eq!(origin("http://127.0.0.1:8080").url("/ws/x?a=b"), "ws://127.0.0.1:8080/ws/x?a=b");
        assert_eq!(origin("http://[::1]:9").url("/ws"), "ws://[::1]:9/ws");
    }
}
