//! The TCP transport under ureq: what ureq's own `TcpTransport` does, with fewer system calls.
//!
//! Measured on the saturating bench pass, ureq's transport made 11 system calls per proxied
//! request besides the two that move data: the pool's liveness probe (non-blocking on, a one-byte
//! read, non-blocking off) when a connection is taken and again when it is given back, a
//! `setsockopt` before every read and write (each phase deadline is a slightly different number),
//! and the request head and body in two sends. This transport
//!
//! - probes with one `recv(MSG_PEEK | MSG_DONTWAIT)`, and only when a pooled connection is taken
//!   (not also when it is given back right after its answer was read);
//! - rounds every timeout up to a whole second and sets it only when that changes (a deadline may
//!   be overshot by under a second, never cut short);
//! - holds what ureq transmits until it reads (or 16 KiB are waiting), so a request's head and a
//!   small body leave in one send. ureq always reads after sending a whole request, so nothing is
//!   held while waiting for an answer.
//!
//! ureq also resolves the upstream's host name before every request, pooled connection or not
//! (a DNS query per request for `generativelanguage.googleapis.com`); `CachingResolver` keeps an
//! answer for 30 s and serves the last good one if a refresh fails.
//!
//! TLS (`RustlsConnector`), CONNECT proxies (`ConnectProxyConnector`) and SOCKS5 proxies
//! (`SocksConnector`, which opens ureq's own TCP transport to the proxy) chain on it as they do
//! on ureq's transport. The transport API is ureq's `unversioned` module: Cargo.toml pins ureq's
//! minor version for it.

use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpStream;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    RustlsConnector, ShutdownHandle, SocksConnector, Transport,
};

/// Held output is sent once it reaches this size even before ureq reads.
const FLUSH_AT: usize = 16 * 1024;

/// An agent on this transport: CONNECT proxy if configured, TCP, TLS for https.
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    // SOCKS first (it opens its own TCP connection to the proxy), as ureq's default chain does;
    // its transport holds output like ours (`HoldOutput`).
    let connector = ().chain(SocksConnector::default()).chain(HoldOutputConnector);
    let connector = connector
        .chain(ConnectProxyConnector::default())
        .chain(LeanTcpConnector)
        .chain(RustlsConnector::default());
    ureq::Agent::with_parts(config, connector, CachingResolver::default())
}

/// Wraps a transport an earlier connector opened (ureq's own TCP transport under its SOCKS
/// connector) in `HoldOutput`; passes on nothing when nothing was opened.
#[derive(Debug, Default)]
pub struct HoldOutputConnector;

impl<In: Transport> Connector<In> for HoldOutputConnector {
    type Out = HoldOutput<In>;

    fn connect(&self, _: &ConnectionDetails, chained: Option<In>) -> Result<Option<Self::Out>, ureq::Error> {
        Ok(chained.map(|inner| HoldOutput { inner, held: Vec::new(), held_timeout: NextTimeout::default() }))
    }
}

/// Holds what ureq transmits until it reads, as `LeanTcpTransport` does, over any transport.
/// Measured through a SOCKS5 relay that leaves Nagle's algorithm on toward the upstream
/// (microsocks): a request's head and body in two sends made the relay's second write wait for
/// the upstream's delayed ACK, 40 ms a request.
#[derive(Debug)]
pub struct HoldOutput<T> {
    inner: T,
    held: Vec<u8>,
    held_timeout: NextTimeout,
}

impl<T: Transport> HoldOutput<T> {
    /// Send what is held through the inner transport's output buffer, a buffer at a time.
    fn flush_held(&mut self) -> Result<(), ureq::Error> {
        let mut sent = 0;
        while sent < self.held.len() {
            let out = self.inner.buffers().output();
            let n = out.len().min(self.held.len() - sent);
            if n == 0 {
                return Err(ureq::Error::Io(io::ErrorKind::WriteZero.into()));
            }
            out[..n].copy_from_slice(&self.held[sent..sent + n]);
            self.inner.transmit_output(n, self.held_timeout)?;
            sent += n;
        }
        self.held.clear();
        Ok(())
    }
}

impl<T: Transport> Transport for HoldOutput<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        checked(timeout.for_write())?;
        self.held.extend_from_slice(&self.inner.buffers().output()[..amount]);
        // The inner transport applies it (and its own per-write limit) when the held bytes go.
        self.held_timeout = timeout;
        if self.held.len() >= FLUSH_AT { self.flush_held() } else { Ok(()) }
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.flush_held()?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.held.is_empty() && self.inner.is_open()
    }
}

/// How long a resolved address list is used before it is looked up again.
const RESOLVE_TTL: Duration = Duration::from_secs(30);

/// ureq's resolver with a cache per scheme and authority.
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    /// (scheme, authority, resolved at, addresses): one entry per upstream in practice.
    cache: RwLock<Vec<(String, String, Instant, ResolvedSocketAddrs)>>,
}

impl CachingResolver {
    fn cached(&self, uri: &Uri) -> Option<(Instant, ResolvedSocketAddrs)> {
        let (scheme, authority) = (uri.scheme_str()?, uri.authority()?.as_str());
        self.cache
            .read()
            .iter()
            .find(|(s, a, _, _)| s == scheme && a == authority)
            .map(|(_, _, at, addrs)| (*at, addrs.clone()))
    }
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let cached = self.cached(uri);
        if let Some((at, addrs)) = &cached
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(addrs.clone());
        }
        let fresh = match (self.inner.resolve(uri, config, timeout), cached) {
            (Ok(addrs), _) => addrs,
            (Err(e), Some((_, stale))) => {
                log::warn!("resolving the upstream failed ({e}); using the addresses from before");
                return Ok(stale);
            }
            (Err(e), None) => return Err(e),
        };
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            let mut cache = self.cache.write();
            cache.retain(|(s, a, _, _)| !(s == scheme && a == authority.as_str()));
            cache.push((scheme.to_string(), authority.to_string(), Instant::now(), fresh.clone()));
        }
        Ok(fresh)
    }
}

/// Opens `LeanTcpTransport`s (or passes on a transport an earlier connector opened).
#[derive(Debug, Default)]
pub struct LeanTcpConnector;

impl<In: Transport> Connector<In> for LeanTcpConnector {
    type Out = Either<In, LeanTcpTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.is_some() {
            return Ok(chained.map(Either::A));
        }
        let timeout = details.timeout.not_zero().map(|t| *t);
        let mut last = None;
        let mut stream = None;
        for addr in &details.addrs {
            let attempt = match timeout {
                Some(t) => TcpStream::connect_timeout(addr, t),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (stream, last) {
            (Some(s), _) => s,
            (None, Some(e)) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                return Err(ureq::Error::Timeout(ureq::Timeout::Connect));
            }
            (None, Some(e)) => return Err(e.into()),
            (None, None) => return Err(ureq::Error::Io(io::ErrorKind::AddrNotAvailable.into())),
        };
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let buffers =
            LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        let transport = LeanTcpTransport::new(stream, buffers);
        (details.register_shutdown)(transport.shutdown_handle())?;
        Ok(Some(Either::B(transport)))
    }
}

/// One upstream TCP connection.
pub struct LeanTcpTransport {
    /// Shared (weakly) with ureq's shutdown handle.
    stream: Arc<TcpStream>,
    buffers: LazyBuffers,
    /// Transmitted by ureq, not yet sent.
    held: Vec<u8>,
    /// The write timeout that came with the held output.
    held_timeout: NextTimeout,
    /// ureq checks a connection twice between requests: when it is given back (right after the
    /// answer was read) and when it is taken again. The first check is skipped (the second one
    /// sees anything the first would have), so this is set by every read and cleared by a check.
    just_read: bool,
    /// Whole seconds of the socket's current read and write timeouts (None: none set yet).
    read_secs: Option<u64>,
    write_secs: Option<u64>,
}

impl std::fmt::Debug for LeanTcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanTcpTransport").field("peer", &self.stream.peer_addr().ok()).finish()
    }
}

impl LeanTcpTransport {
    pub fn new(stream: TcpStream, buffers: LazyBuffers) -> LeanTcpTransport {
        LeanTcpTransport {
            stream: Arc::new(stream),
            buffers,
            held: Vec::new(),
            held_timeout: NextTimeout::default(),
            just_read: false,
            read_secs: None,
            write_secs: None,
        }
    }

    fn shutdown_handle(&self) -> Weak<dyn ShutdownHandle> {
        Arc::downgrade(&self.stream) as Weak<dyn ShutdownHandle>
    }

    /// Send what is held.
    fn flush_held(&mut self) -> Result<(), ureq::Error> {
        if self.held.is_empty() {
            return Ok(());
        }
        let timeout = self.held_timeout;
        set_timeout(&self.stream, &mut self.write_secs, timeout, TcpStream::set_write_timeout)?;
        let result = (&*self.stream).write_all(&self.held);
        self.held.clear();
        result.map_err(|e| io_error(e, timeout))
    }
}

impl Transport for LeanTcpTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = checked(timeout.for_write())?;
        self.held.extend_from_slice(&self.buffers.output()[..amount]);
        self.held_timeout = timeout;
        if self.held.len() >= FLUSH_AT {
            self.flush_held()?;
        }
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.flush_held()?;
        let timeout = checked(timeout.for_read())?;
        set_timeout(&self.stream, &mut self.read_secs, timeout, TcpStream::set_read_timeout)?;
        let input = self.buffers.input_append_buf();
        let amount = loop {
            match (&*self.stream).read(input) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e, timeout)),
                Ok(n) => break n,
            }
        };
        self.buffers.input_appended(amount);
        self.just_read = true;
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        if std::mem::take(&mut self.just_read) {
            return self.held.is_empty();
        }
        self.held.is_empty() && probe(&self.stream)
    }
}

/// Open and idle: nothing to read yet, no end of stream, no error.
fn probe(stream: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::<u8>::uninit()];
    match socket2::SockRef::from(stream).recv_with_flags(&mut byte, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        // End of stream, or bytes nobody asked for: not reusable either way.
        Ok(_) => false,
    }
}

fn checked(timeout: NextTimeout) -> Result<NextTimeout, ureq::Error> {
    if timeout.after.is_zero() { Err(ureq::Error::Timeout(timeout.reason)) } else { Ok(timeout) }
}

/// Whole seconds, rounded up, of the timeout to apply; 0 for none.
fn whole_secs(timeout: NextTimeout) -> u64 {
    match timeout.not_zero() {
        None => 0,
        Some(d) => {
            let d: Duration = *d;
            (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
        }
    }
}

fn set_timeout(
    stream: &TcpStream,
    current: &mut Option<u64>,
    timeout: NextTimeout,
    set: fn(&TcpStream, Option<Duration>) -> io::Result<()>,
) -> Result<(), ureq::Error> {
    let secs = whole_secs(timeout);
    if *current != Some(secs) {
        set(stream, (secs > 0).then(|| Duration::from_secs(secs)))?;
        *current = Some(secs);
    }
    Ok(())
}

fn io_error(e: io::Error, timeout: NextTimeout) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ureq::Error::Timeout(timeout.reason),
        _ => ureq::Error::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn timeout(ms: u64) -> NextTimeout {
        NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_millis(ms),
            ..NextTimeout::default()
        }
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds_and_never_to_zero() {
        assert_eq!(whole_secs(NextTimeout::default()), 0);
        assert_eq!(whole_secs(timeout(1)), 1);
        assert_eq!(whole_secs(timeout(1000)), 1);
        assert_eq!(whole_secs(timeout(1001)), 2);
        assert_eq!(whole_secs(timeout(299_999)), 300);
        assert!(checked(timeout(0)).is_err());
    }

    #[test]
    fn output_is_held_until_the_transport_reads_and_the_probe_sees_the_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut t = LeanTcpTransport::new(client, LazyBuffers::new(1024, 1024));
        assert!(t.is_open(), "an idle connection is open");

        t.buffers().output()[..4].copy_from_slice(b"HEAD");
        t.transmit_output(4, timeout(5000)).unwrap();
        t.buffers().output()[..4].copy_from_slice(b"BODY");
        t.transmit_output(4, timeout(5000)).unwrap();
        assert!(!t.is_open(), "a connection with held output is not reusable");
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(server.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock, "nothing sent yet");
        server.set_nonblocking(false).unwrap();

        server.write_all(b"answer").unwrap();
        assert!(t.await_input(timeout(5000)).unwrap());
        assert_eq!(t.buffers().input(), b"answer");
        let n = server.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"HEADBODY", "head and body left together before the read");
        let len = t.buffers().input().len();
        t.buffers().input_consume(len);
        assert!(t.is_open(), "given back after a read: no probe");
        assert!(t.is_open(), "taken again: probed");

        server.write_all(b"x").unwrap();
        // The byte may need a moment to arrive on loopback: wait for it without sleeping.
        let mut peek = [0u8; 1];
        t.stream.peek(&mut peek).unwrap();
        assert!(!t.is_open(), "unasked-for bytes make a connection unusable");
        // Right after a read the check is skipped; the next one sees the stray byte.
        assert!(t.await_input(timeout(5000)).unwrap());
        assert!(t.is_open());
        server.write_all(b"y").unwrap();
        t.stream.peek(&mut peek).unwrap();
        assert!(!t.is_open(), "the check when the connection is taken again sees stray bytes");
        drop(server);
        let mut t2 = {
            let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            drop(server);
            LeanTcpTransport::new(client, LazyBuffers::new(1024, 1024))
        };
        // The FIN may need a moment too: a blocking read sees it.
        assert_eq!(t2.stream.peek(&mut peek).unwrap(), 0);
        assert!(!t2.is_open(), "a connection the peer closed is not open");
    }

    #[test]
    fn resolved_addresses_are_cached_per_scheme_and_authority() {
        let r = CachingResolver::default();
        let config = ureq::config::Config::default();
        let uri: Uri = "http://localhost:8080/v1beta/models".parse().unwrap();
        let first = r.resolve(&uri, &config, NextTimeout::default()).unwrap();
        assert!(first.iter().all(|a| a.port() == 8080 && a.ip().is_loopback()), "{first:?}");
        let (at, _) = r.cached(&uri).expect("cached");
        r.resolve(&uri, &config, NextTimeout::default()).unwrap();
        assert_eq!(r.cached(&uri).unwrap().0, at, "answered from the cache, not looked up again");
        let other: Uri = "http://localhost:9090/".parse().unwrap();
        assert!(r.resolve(&other, &config, NextTimeout::default()).unwrap().iter().all(|a| a.port() == 9090));
        assert_eq!(r.cache.read().len(), 2);
        // An expired entry is looked up again and replaced.
        r.cache.write()[0].2 = Instant::now() - RESOLVE_TTL;
        r.resolve(&uri, &config, NextTimeout::default()).unwrap();
        assert!(r.cached(&uri).unwrap().0 > at);
        assert_eq!(r.cache.read().len(), 2);
    }

    /// A transport that records each send (as ureq's own TCP transport makes them).
    #[derive(Debug)]
    struct Sends {
        buffers: LazyBuffers,
        sent: Vec<Vec<u8>>,
    }

    impl Transport for Sends {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            let bytes = self.buffers.output()[..amount].to_vec();
            self.sent.push(bytes);
            Ok(())
        }
        fn await_input(&mut self, _: NextTimeout) -> Result<bool, ureq::Error> {
            Ok(true)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    #[test]
    fn a_socks_transport_sends_a_requests_head_and_body_together() {
        let inner = Sends { buffers: LazyBuffers::new(1024, 8), sent: Vec::new() };
        let mut t = HoldOutput { inner, held: Vec::new(), held_timeout: NextTimeout::default() };
        t.buffers().output()[..4].copy_from_slice(b"HEAD");
        t.transmit_output(4, timeout(5000)).unwrap();
        t.buffers().output()[..8].copy_from_slice(b"BODYBODY");
        t.transmit_output(8, timeout(5000)).unwrap();
        assert!(t.inner.sent.is_empty(), "held until the answer is awaited");
        assert!(!t.is_open(), "a connection with held output is not reusable");
        t.await_input(timeout(5000)).unwrap();
        // One buffer at a time (8 bytes here), in order.
        assert_eq!(t.inner.sent, vec![b"HEADBODY".to_vec(), b"BODY".to_vec()]);
        assert!(t.is_open());
    }

    #[test]
    fn a_silent_peer_times_out_with_the_reason_of_the_phase() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut t = LeanTcpTransport::new(client, LazyBuffers::new(1024, 1024));
        let started = std::time::Instant::now();
        let err = t.await_input(timeout(10)).unwrap_err();
        assert!(matches!(err, ureq::Error::Timeout(ureq::Timeout::Global)), "{err:?}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(3), "{waited:?}");
    }
}
