//! Small outbound proxies for the egress tests (SPEC §15): an HTTP CONNECT proxy and a SOCKS5
//! server, stdlib threads on 127.0.0.1, port 0. Each logs what it relays: the target it was asked
//! for, the credentials it was given, and the pool keys it saw go by (the upstream of these tests
//! is plain HTTP, so the relayed request heads can be read). They connect only to loopback
//! addresses, and resolve a name only through the table they were given (never the system's DNS).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Connect,
    Socks5,
}

/// One connection the proxy accepted.
#[derive(Debug, Clone, Default)]
pub struct Relayed {
    /// `host:port` as the client asked for it (a name for `socks5h`, an address for `socks5`).
    pub target: String,
    /// `user:password` the client presented, if any.
    pub credentials: Option<String>,
    /// Whether a tunnel was opened (false: refused).
    pub opened: bool,
}

#[derive(Default)]
struct Log {
    connections: Vec<Relayed>,
    /// `x-goog-api-key` values seen in relayed requests.
    keys: Vec<String>,
}

pub struct RelayProxy {
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
}

impl RelayProxy {
    /// A proxy that requires `credentials` (`user:password`) when given, and resolves the names
    /// of `names` (anything else is unreachable).
    pub fn start(kind: Kind, credentials: Option<&str>, names: &[(&str, SocketAddr)]) -> RelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Log::default()));
        let names: Arc<HashMap<String, SocketAddr>> =
            Arc::new(names.iter().map(|(n, a)| (n.to_string(), *a)).collect());
        let credentials = credentials.map(str::to_string);
        let shared = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (log, names, credentials) = (shared.clone(), names.clone(), credentials.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
                    let relayed = match kind {
                        Kind::Connect => connect_handshake(&conn, credentials.as_deref(), &names),
                        Kind::Socks5 => socks_handshake(&conn, credentials.as_deref(), &names),
                    };
                    let (entry, upstream) = match relayed {
                        Ok(pair) => pair,
                        Err(entry) => {
                            log.lock().connections.push(entry);
                            return;
                        }
                    };
                    log.lock().connections.push(entry);
                    relay(conn, upstream, log);
                });
            }
        });
        RelayProxy { addr, log }
    }

    /// `socks5://`, `socks5h://` or `http://` URL of this proxy, with `userinfo` if given.
    pub fn url(&self, scheme: &str, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(u) => format!("{scheme}://{u}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    pub fn connections(&self) -> Vec<Relayed> {
        self.log.lock().connections.clone()
    }

    /// The pool keys seen in relayed requests, in order.
    pub fn keys(&self) -> Vec<String> {
        self.log.lock().keys.clone()
    }
}

/// A port nothing listens on (bound, then closed): connections to it are refused.
pub fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn resolve(target: &str, names: &HashMap<String, SocketAddr>) -> Option<SocketAddr> {
    if let Some(a) = names.get(target.rsplit_once(':').map_or(target, |(h, _)| h)) {
        return Some(*a);
    }
    let addr: SocketAddr = target.parse().ok()?;
    addr.ip().is_loopback().then_some(addr)
}

fn read_head(mut conn: &TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

fn connect_handshake(
    mut conn: &TcpStream,
    required: Option<&str>,
    names: &HashMap<String, SocketAddr>,
) -> Result<(Relayed, TcpStream), Relayed> {
    use base64::Engine;
    let head = read_head(conn).unwrap_or_default();
    let mut entry = Relayed::default();
    let mut lines = head.split("\r\n");
    let request = lines.next().unwrap_or("");
    entry.target = request.split_whitespace().nth(1).unwrap_or("").to_string();
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("proxy-authorization")
            && let Some(b64) = value.trim().strip_prefix("Basic ")
        {
            let decoded = base64::engine::general_purpose::STANDARD.decode(b64).unwrap_or_default();
            entry.credentials = Some(String::from_utf8_lossy(&decoded).into_owned());
        }
    }
    if !request.starts_with("CONNECT ") {
        let _ = conn.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
        return Err(entry);
    }
    if required.is_some() && entry.credentials.as_deref() != required {
        let _ = conn.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n");
        return Err(entry);
    }
    let Some(upstream) = resolve(&entry.target, names).and_then(|a| TcpStream::connect(a).ok()) else {
        let _ = conn.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        return Err(entry);
    };
    let _ = conn.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
    entry.opened = true;
    Ok((entry, upstream))
}

fn socks_handshake(
    mut conn: &TcpStream,
    required: Option<&str>,
    names: &HashMap<String, SocketAddr>,
) -> Result<(Relayed, TcpStream), Relayed> {
    let mut entry = Relayed::default();
    let reader: &TcpStream = conn;
    let exact = move |n: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let mut r = reader;
        r.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    let Some(greeting) = exact(2) else { return Err(entry) };
    let Some(methods) = exact(greeting[1] as usize) else { return Err(entry) };
    let want = if required.is_some() { 2 } else { 0 };
    if greeting[0] != 5 || !methods.contains(&want) {
        let _ = conn.write_all(&[5, 0xff]);
        return Err(entry);
    }
    let _ = conn.write_all(&[5, want]);
    let mut exact = move |n: usize| -> Option<Vec<u8>> {
        let mut buf = vec![0u8; n];
        let mut r = reader;
        r.read_exact(&mut buf).ok()?;
        Some(buf)
    };
    if want == 2 {
        entry.credentials = read_auth(&mut exact);
        let ok = entry.credentials.as_deref() == required;
        let _ = conn.write_all(&[1, if ok { 0 } else { 1 }]);
        if !ok {
            return Err(entry);
        }
    }
    let Some(request) = exact(4) else { return Err(entry) };
    let host = match request[3] {
        1 => exact(4).map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
        3 => exact(1).and_then(|l| exact(l[0] as usize)).map(|n| String::from_utf8_lossy(&n).into_owned()),
        4 => exact(16).map(|b| {
            let a: [u8; 16] = b.try_into().unwrap_or([0; 16]);
            format!("[{}]", std::net::Ipv6Addr::from(a))
        }),
        _ => None,
    };
    let port = exact(2).map(|p| u16::from_be_bytes([p[0], p[1]]));
    let (Some(host), Some(port)) = (host, port) else { return Err(entry) };
    entry.target = format!("{host}:{port}");
    let Some(upstream) = resolve(&entry.target, names).and_then(|a| TcpStream::connect(a).ok()) else {
        // 4: host unreachable.
        let _ = conn.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]);
        return Err(entry);
    };
    let _ = conn.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    entry.opened = true;
    Ok((entry, upstream))
}

/// RFC 1929: version, user, password (each after its length) as `user:password`.
fn read_auth(exact: &mut dyn FnMut(usize) -> Option<Vec<u8>>) -> Option<String> {
    let _version = exact(1)?;
    let ulen = exact(1)?[0] as usize;
    let user = exact(ulen)?;
    let plen = exact(1)?[0] as usize;
    let pass = exact(plen)?;
    Some(format!("{}:{}", String::from_utf8_lossy(&user), String::from_utf8_lossy(&pass)))
}

/// Copy both ways until either side closes; the client's bytes are scanned for pool keys.
fn relay(client: TcpStream, upstream: TcpStream, log: Arc<Mutex<Log>>) {
    let _ = client.set_read_timeout(None);
    let (mut c_read, mut u_write) =
        (client.try_clone().expect("clone"), upstream.try_clone().expect("clone"));
    let back = std::thread::spawn({
        let (mut u_read, mut c_write) = (upstream, client);
        move || {
            let _ = std::io::copy(&mut u_read, &mut c_write);
            let _ = c_write.shutdown(std::net::Shutdown::Both);
        }
    });
    let mut buf = [0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    const NAME: &[u8] = b"x-goog-api-key: ";
    loop {
        let n = match c_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        tail.extend_from_slice(&buf[..n]);
        loop {
            let lower = tail.to_ascii_lowercase();
            let Some(i) = lower.windows(NAME.len()).position(|w| w == NAME) else { break };
            let rest = &tail[i + NAME.len()..];
            let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else { break };
            log.lock().keys.push(String::from_utf8_lossy(&rest[..end]).into_owned());
            tail = rest[end..].to_vec();
        }
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 256);
        }
        if u_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = u_write.shutdown(std::net::Shutdown::Write);
    let _ = back.join();
}
