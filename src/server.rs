//! The HTTP server: listening socket, tiny_http, admission (worker slots, the bounded wait
//! queue, load shedding), panics, and shutdown.
//!
//! This is the only module that touches `tiny_http::Request`; handlers see an `Exchange`, which
//! reads the body with a limit and answers either a whole `Reply` or a chunked stream flushed
//! piece by piece. A request is served on the thread of its connection once it holds one of the
//! `--workers` slots; admission never blocks past the bounded queue: with every slot busy and
//! the queue full it answers 503 itself, and `/healthz` is answered before any slot is taken.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{ProxyError, Reply, Surface};

/// Default read and write timeout of client sockets (inherited from the listening socket on
/// Linux): an idle keep-alive connection, a client dripping its headers, or a client that stops
/// reading a stream gives up its connection thread or worker after this long.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request body may stop arriving before the request is answered 408 and its
/// worker freed.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// However it trickles, a request body must be complete within this long.
const BODY_TOTAL: Duration = Duration::from_secs(300);
/// How long in-flight requests may run after SIGTERM.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a request handler needs from the application.
pub trait Handler: Send + Sync + 'static {
    /// Serve one request; errors are turned into responses by the caller.
    fn handle(&self, ex: &mut Exchange) -> Result<(), ProxyError>;
    /// `GET /healthz`, answered before any worker slot is taken.
    fn healthz(&self) -> Reply;
    /// Called once per finished request with its log record.
    fn finished(&self, record: &RequestRecord);
    /// The dialect of the route a request goes to (for answers made before routing: shedding,
    /// refused framing). `bearer`: the request carries `Authorization: Bearer`.
    fn surface_of(&self, _method: &str, _target: &str, _bearer: bool) -> Surface {
        Surface::Native
    }
    /// Does a request for this target asking for a protocol switch (`Upgrade: websocket`) go to
    /// `upgrade` instead of `handle`? Such requests take no worker slot.
    fn upgrades(&self, _method: &str, _target: &str) -> bool {
        false
    }
    /// Serve a request that asks for a protocol switch; it may take the connection over with
    /// `Exchange::switch_protocols` and keep it until it returns.
    fn upgrade(&self, _ex: &mut Exchange) -> Result<(), ProxyError> {
        Err(ProxyError::NotFound { message: "no protocol switch here".into() })
    }
}

/// The facts of one request that end up in its log line and metrics.
#[derive(Debug, Clone, Default)]
pub struct RequestRecord {
    pub method: String,
    /// Path without the query (the query may hold a token).
    pub path: String,
    pub route: &'static str,
    pub surface: Option<Surface>,
    pub model: Option<String>,
    pub status: u16,
    pub attempts: u32,
    /// Fingerprints of the keys tried, in order.
    pub keys: Vec<String>,
    pub latency: Duration,
    /// For streams: time until the first byte of the body went out.
    pub first_byte: Option<Duration>,
    pub streamed: bool,
    /// The client went away before the answer was complete.
    pub client_gone: bool,
    /// The named client the request is booked to (SPEC §13).
    pub client: Option<std::sync::Arc<str>>,
    pub note: Option<String>,
}

/// One request being served: its head, its body (read on demand), and the way to answer.
pub struct Exchange {
    request: Option<tiny_http::Request>,
    pub method: String,
    /// The request target as sent (origin-form, absolute-form or anything else).
    pub target: String,
    /// Header names lowercased, values as sent.
    pub headers: Vec<(String, String)>,
    pub started: Instant,
    http10: bool,
    timeouts: Timeouts,
    pub record: RequestRecord,
    /// Headers every answer to this request carries besides its own (the fallback of SPEC §14
    /// names the model that served it).
    pub extra_headers: Vec<(String, String)>,
}

/// Read timeouts of a client socket: between requests and while a body arrives.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub client: Duration,
    pub body: Duration,
}

/// An answer being streamed with chunked framing, flushed after every piece. Every byte passes
/// the stream redactor (a key in a stream error event is masked, even split across pieces).
pub struct StreamWriter {
    out: Box<dyn Write + Send>,
    chunked: bool,
    pub bytes: u64,
    redactor: std::sync::Arc<crate::redact::Redactor>,
    redacting: crate::redact::StreamRedactor,
}

impl Exchange {
    fn new(mut request: tiny_http::Request, started: Instant, timeouts: Timeouts) -> Exchange {
        let headers = request
            .take_headers()
            .into_iter()
            .map(|h| {
                let mut name = String::from(h.field.into_ascii_string());
                name.make_ascii_lowercase();
                (name, String::from(h.value))
            })
            .collect();
        let method = request.method().as_str().to_string();
        let target = request.url().to_string();
        let http10 = *request.http_version() == tiny_http::HTTPVersion(1, 0);
        let record = RequestRecord {
            method: method.clone(),
            path: target.split('?').next().unwrap_or("").to_string(),
            ..RequestRecord::default()
        };
        Exchange {
            request: Some(request),
            method,
            target,
            headers,
            started,
            http10,
            timeouts,
            record,
            extra_headers: Vec::new(),
        }
    }

    /// First value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Read the whole body, refusing (without reading it whole) anything over `limit` bytes. A
    /// body that stops arriving for the body timeout (or trickles past `BODY_TOTAL`) is a 408.
    pub fn read_body(&mut self, limit: u64) -> Result<Vec<u8>, ProxyError> {
        let Some(req) = self.request.as_mut() else {
            return Err(ProxyError::Internal { message: "request already answered".into() });
        };
        if let Some(len) = req.body_length()
            && len as u64 > limit
        {
            return Err(ProxyError::TooLarge { limit });
        }
        // Bodies of up to 1 KiB were read with the head (tiny_http), before any slot was taken;
        // only a body still to come gets the body timeout (two system calls).
        let pending = !matches!(req.body_length(), Some(n) if n <= 1024);
        let set_timeout = |req: &tiny_http::Request, t: Duration| {
            if let Some(s) = req.socket() {
                let _ = socket2::SockRef::from(s).set_read_timeout(Some(t));
            }
        };
        if pending {
            set_timeout(req, self.timeouts.body);
        }
        let mut body = Vec::with_capacity(req.body_length().unwrap_or(0).min(1 << 20));
        let started = Instant::now();
        let mut progress = started;
        let mut limited = req.as_reader().take(limit + 1);
        let mut buf = [0u8; 16 * 1024];
        let result = loop {
            if started.elapsed() > BODY_TOTAL {
                break Err(ProxyError::BodyTimeout);
            }
            match limited.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    body.extend_from_slice(&buf[..n]);
                    progress = Instant::now();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // The chunked decoder reports a timed-out read as a decoding error: a failure
                // after the body timeout of silence is that timeout.
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
                        || pending && progress.elapsed() >= self.timeouts.body.mul_f32(0.9) =>
                {
                    break Err(ProxyError::BodyTimeout);
                }
                Err(e) => {
                    break Err(ProxyError::bad_request(
                        format!("could not read the request body: {e}"),
                        None,
                    ));
                }
            }
        };
        if pending {
            set_timeout(req, self.timeouts.client);
        }
        if let (Err(ProxyError::BodyTimeout), Some(s)) = (&result, req.socket()) {
            // Nothing more is read from this client: the rest of the body is not drained (that
            // would wait for it all over again), the 408 goes out and the connection closes.
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
        result?;
        if body.len() as u64 > limit {
            return Err(ProxyError::TooLarge { limit });
        }
        Ok(body)
    }

    /// Has the client gone? (Its end of the connection is closed: a peek sees end of file.)
    /// Only meaningful while the request is unanswered; never blocks.
    pub fn client_gone(&self) -> bool {
        let Some(socket) = self.request.as_ref().and_then(|r| r.socket()) else { return false };
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        match socket2::SockRef::from(socket).recv_with_flags(&mut probe, flags) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted),
        }
    }

    /// True once an answer (whole or streamed) has been started.
    pub fn answered(&self) -> bool {
        self.request.is_none()
    }

    /// Send a complete answer: head and body in one write (tiny_http's `respond` formatted every
    /// header separately and allocated twice per header), with `Content-Length`.
    pub fn respond(&mut self, reply: Reply) {
        let Some(req) = self.request.take() else { return };
        self.record.status = reply.status;
        let Reply { status, mut headers, mut body } = reply;
        headers.extend(self.extra_headers.iter().cloned());
        // The one redaction point of whole answers: headers always; the body of every answer
        // that is not a success (Google echoes keys in error bodies) and of admin pages. Success
        // bodies pass untouched.
        let redactor = crate::redact::current();
        redact_headers(&redactor, &mut headers);
        if (!(200..300).contains(&status) || self.record.surface == Some(Surface::Admin))
            && let std::borrow::Cow::Owned(clean) = redactor.bytes(&body)
        {
            body = clean;
        }
        // HEAD gets the length of the body it would have had.
        let send_body = !bodiless(status) && self.method != "HEAD";
        if headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"))
        {
            req.close_after();
        }
        let mut out = Vec::with_capacity(256 + if send_body { body.len() } else { 0 });
        write_head(&mut out, self.http10, status, &headers);
        if !matches!(status, 100..=199 | 204) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let sent = if send_body && body.len() > BODY_COPY_LIMIT {
            req.respond_raw(&[&out, &body])
        } else {
            if send_body {
                out.extend_from_slice(&body);
            }
            req.respond_raw(&[&out])
        };
        if let Err(e) = sent {
            self.record.client_gone = true;
            log::debug!("writing the answer failed: {e}");
        }
    }

    /// Answer `101 Switching Protocols` with `headers` and take the connection over (its bytes,
    /// decrypted under TLS). No further request is read from it; it closes when the handler
    /// returns.
    pub fn switch_protocols(&mut self, headers: &[(String, String)]) -> std::io::Result<ClientSocket> {
        let Some(req) = self.request.take() else {
            return Err(std::io::Error::other("request already answered"));
        };
        self.record.status = 101;
        let mut head = Vec::with_capacity(256);
        write_head(&mut head, false, 101, headers);
        head.extend_from_slice(b"\r\n");
        req.switch_protocols(&head).map(ClientSocket)
    }

    /// Start a streamed answer: the head goes out now, the body in chunks as they come.
    pub fn start_stream(
        &mut self,
        status: u16,
        headers: &[(String, String)],
    ) -> std::io::Result<StreamWriter> {
        let Some(req) = self.request.take() else {
            return Err(std::io::Error::other("request already answered"));
        };
        self.record.status = status;
        self.record.streamed = true;
        let chunked = !self.http10;
        let redactor = crate::redact::current();
        let mut headers = headers.to_vec();
        headers.extend(self.extra_headers.iter().cloned());
        redact_headers(&redactor, &mut headers);
        let mut head = Vec::with_capacity(256);
        write_head(&mut head, self.http10, status, &headers);
        head.extend_from_slice(if chunked {
            b"Transfer-Encoding: chunked\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
        let mut out = req.into_writer();
        out.write_all(&head)?;
        out.flush()?;
        Ok(StreamWriter {
            out,
            chunked,
            bytes: 0,
            redactor,
            redacting: crate::redact::StreamRedactor::default(),
        })
    }
}

/// A client connection taken over after `101 Switching Protocols`: its bytes in and out (TLS
/// handled underneath). Handles made with `try_clone` may read and write on two threads at once.
pub struct ClientSocket(tiny_http::Upgraded);

impl ClientSocket {
    pub fn try_clone(&self) -> std::io::Result<ClientSocket> {
        self.0.try_clone().map(ClientSocket)
    }

    /// The TCP socket under it (timeouts, keep-alive, `shutdown` to wake a blocked reader).
    pub fn tcp(&self) -> std::io::Result<std::net::TcpStream> {
        match self.0.tcp() {
            Some(s) => s.try_clone(),
            None => Err(std::io::Error::other("not a TCP connection")),
        }
    }
}

impl Read for ClientSocket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for ClientSocket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Statuses whose answers carry no body: 1xx, 204 and 304.
pub fn bodiless(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// Bodies up to this size are copied behind the head and leave in one write.
const BODY_COPY_LIMIT: usize = 64 * 1024;

/// Status line, `Date`, and the valid headers of an answer, except the framing ones (the caller
/// adds its own `Content-Length` or `Transfer-Encoding` and the blank line).
fn write_head(out: &mut Vec<u8>, http10: bool, status: u16, headers: &[(String, String)]) {
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(tiny_http::StatusCode(status).default_reason_phrase().as_bytes());
    out.extend_from_slice(b"\r\nDate: ");
    http_date(|date| out.extend_from_slice(date.as_bytes()));
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if !valid_header(name, value)
            || name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("date")
        {
            continue;
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// The current time as an HTTP date, formatted once a second per thread.
fn http_date(use_it: impl FnOnce(&str)) {
    use std::cell::RefCell;
    thread_local! {
        static DATE: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
    }
    let now = chrono::Utc::now();
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != now.timestamp() {
            *d = (now.timestamp(), now.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
        }
        use_it(&d.1);
    });
}

/// Mask secrets in header values (an upstream header could echo a key).
fn redact_headers(redactor: &crate::redact::Redactor, headers: &mut [(String, String)]) {
    for (_, value) in headers.iter_mut() {
        if let std::borrow::Cow::Owned(clean) = redactor.text(value) {
            // Header values stay ASCII: the mask's ellipsis becomes three dots.
            *value = clean.replace('…', "...");
        }
    }
}

fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && value.bytes().all(|b| b != b'\r' && b != b'\n')
}

impl StreamWriter {
    /// Write one piece and flush it to the client (less any tail that could begin a secret,
    /// which goes out with the next piece).
    pub fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        let redactor = self.redactor.clone();
        let clean = self.redacting.feed(&redactor, data);
        self.write_piece(&clean)
    }

    fn write_piece(&mut self, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            let mut frame = Vec::with_capacity(data.len() + 12);
            frame.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            frame.extend_from_slice(data);
            frame.extend_from_slice(b"\r\n");
            self.out.write_all(&frame)?;
        } else {
            self.out.write_all(data)?;
        }
        self.bytes += data.len() as u64;
        self.out.flush()
    }

    /// End the body so the client knows it is incomplete: an invalid chunk header makes every
    /// HTTP client fail the response and close the connection (we cannot close it ourselves).
    pub fn abort(mut self) {
        let _ = self.out.write_all(b"\r\nX-STREAM-ABORTED\r\n\r\n");
        let _ = self.out.flush();
    }

    /// End the body properly (what was held back, then the terminating chunk).
    pub fn finish(mut self) -> std::io::Result<()> {
        let rest = self.redacting.finish(&self.redactor);
        self.write_piece(&rest)?;
        if self.chunked {
            self.out.write_all(b"0\r\n\r\n")?;
        }
        self.out.flush()
    }
}

/// Counters the server keeps about itself.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub busy_workers: AtomicUsize,
    pub queued: AtomicUsize,
    pub shed: AtomicUsize,
    pub panics: AtomicUsize,
}

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub queue_size: usize,
    pub client_timeout: Duration,
    pub body_timeout: Duration,
    /// Listen with TLS: the PEM certificate chain and private key.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// Shared run state: stop requested, fatal error.
#[derive(Default)]
struct RunState {
    stop: bool,
    fatal: Option<String>,
}

type Shared = Arc<(Mutex<RunState>, Condvar)>;

/// Stops a running server from another thread (signal handling); cheap to clone.
#[derive(Clone)]
pub struct Stopper {
    stopping: Arc<AtomicBool>,
    state: Shared,
}

impl Stopper {
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let (state, cv) = &*self.state;
        state.lock().stop = true;
        cv.notify_all();
    }
}

/// The worker slots: at most `workers` requests are served at once, at most `queue_size` wait
/// for a slot; past that a request is refused at once.
struct Slots {
    workers: usize,
    queue_size: usize,
    /// (busy, waiting)
    counts: Mutex<(usize, usize)>,
    freed: Condvar,
}

/// A taken slot; dropping it frees it.
struct Slot<'a>(&'a Slots);

impl Slots {
    fn take<'a>(&'a self, stats: &'a ServerStats) -> Option<Slot<'a>> {
        let mut c = self.counts.lock();
        if c.0 >= self.workers {
            if c.1 >= self.queue_size {
                return None;
            }
            c.1 += 1;
            stats.queued.fetch_add(1, Ordering::SeqCst);
            while c.0 >= self.workers {
                self.freed.wait(&mut c);
            }
            c.1 -= 1;
            stats.queued.fetch_sub(1, Ordering::SeqCst);
        }
        c.0 += 1;
        Some(Slot(self))
    }

    fn busy(&self) -> usize {
        self.counts.lock().0
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut c = self.0.counts.lock();
        c.0 -= 1;
        self.0.freed.notify_all();
    }
}

/// A running server. Dropping it does not stop it; call `shutdown`.
pub struct Server {
    addr: SocketAddr,
    tiny: Arc<tiny_http::Server>,
    stopping: Arc<AtomicBool>,
    state: Shared,
    slots: Arc<Slots>,
    pub stats: Arc<ServerStats>,
}

/// Raise the soft limit of open files to the hard limit: every client connection and every
/// upstream connection holds a descriptor, and the usual soft default of 1024 would make
/// `accept()` fail with EMFILE long before memory or threads run out. Returns the new limit.
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass; no other memory.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every platform
    Some(lim.rlim_cur as u64)
}

/// Bind the listening socket with the options every accepted socket inherits.
fn bind(host: &str, port: u16, client_timeout: Duration) -> Result<std::net::TcpListener, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve listen address {host}:{port}: {e}"))?
        .next()
        .ok_or_else(|| format!("listen address {host}:{port} resolves to nothing"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("cannot create socket: {e}"))?;
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} on {addr}: {e}");
    socket.set_reuse_address(true).map_err(|e| fail("set SO_REUSEADDR", e))?;
    // Linux copies these to accepted sockets: no 40 ms Nagle stalls, no client holding a
    // connection thread forever.
    socket.set_tcp_nodelay(true).map_err(|e| fail("set TCP_NODELAY", e))?;
    socket.set_read_timeout(Some(client_timeout)).map_err(|e| fail("set SO_RCVTIMEO", e))?;
    socket.set_write_timeout(Some(client_timeout)).map_err(|e| fail("set SO_SNDTIMEO", e))?;
    socket.bind(&addr.into()).map_err(|e| fail("bind", e))?;
    socket.listen(1024).map_err(|e| fail("listen", e))?;
    Ok(socket.into())
}

impl Server {
    /// Bind and serve: each request is served on the thread of its connection once it holds
    /// one of the `workers` slots (see ARCHITECTURE.md for why not a separate pool).
    pub fn start(
        opts: &ServerOptions,
        handler: Arc<dyn Handler>,
        stats: Arc<ServerStats>,
    ) -> Result<Server, String> {
        let ServerOptions { host, port, workers, queue_size, client_timeout, body_timeout, tls } =
            opts.clone();
        let timeouts = Timeouts { client: client_timeout, body: body_timeout };
        if let Some(n) = raise_fd_limit() {
            log::debug!("open-file limit: {n}");
        }
        let listener = bind(&host, port, client_timeout)?;
        let addr = listener.local_addr().map_err(|e| format!("cannot read the bound address: {e}"))?;
        let stopping = Arc::new(AtomicBool::new(false));
        let slots =
            Arc::new(Slots { workers, queue_size, counts: Mutex::new((0, 0)), freed: Condvar::new() });
        let filter: tiny_http::RequestFilter = {
            let (handler, stats, stopping, slots) =
                (handler.clone(), stats.clone(), stopping.clone(), slots.clone());
            Arc::new(move |request| {
                admit(request, handler.as_ref(), &stats, &stopping, &slots, timeouts);
                None
            })
        };
        let tiny = Arc::new(
            tiny_http::Server::from_listener_with_filter(
                listener,
                tls.map(|(certificate, private_key)| tiny_http::SslConfig { certificate, private_key }),
                Some(filter),
            )
            .map_err(|e| format!("cannot start server: {e}"))?,
        );
        let state: Shared = Arc::default();
        // Every request is taken by the filter; what reaches `recv` is an accept failure (tiny_http
        // queues those), which is fatal: better to exit and be restarted than to run deaf.
        {
            let (tiny, state, stopping) = (tiny.clone(), state.clone(), stopping.clone());
            std::thread::Builder::new()
                .name("accept-watch".into())
                .spawn(move || {
                    let failure = match tiny.recv() {
                        Err(_) if stopping.load(Ordering::SeqCst) => return,
                        Err(e) => format!("accepting connections failed: {e}"),
                        Ok(_) => "a request bypassed the admission filter".to_string(),
                    };
                    let (st, cv) = &*state;
                    let mut st = st.lock();
                    st.fatal.get_or_insert(failure);
                    st.stop = true;
                    cv.notify_all();
                })
                .map_err(|e| format!("cannot spawn the accept watcher: {e}"))?;
        }
        Ok(Server { addr, tiny, stopping, state, slots, stats })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Block until a stop is requested (Ok) or accepting failed for good (Err).
    pub fn wait(&self) -> Result<(), String> {
        let (st, cv) = &*self.state;
        let mut st = st.lock();
        while !st.stop {
            cv.wait(&mut st);
        }
        match &st.fatal {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Stop taking requests: new ones get 503, `wait` returns.
    pub fn stop_accepting(&self) {
        self.stopper().stop();
    }

    /// A handle that can stop the server from another thread (signal handling).
    pub fn stopper(&self) -> Stopper {
        Stopper { stopping: self.stopping.clone(), state: self.state.clone() }
    }

    /// Stop taking requests, let those in flight finish for up to `grace`; true if all did.
    pub fn shutdown(self, grace: Duration) -> bool {
        self.stop_accepting();
        self.tiny.unblock();
        let deadline = Instant::now() + grace;
        let mut c = self.slots.counts.lock();
        while c.0 + c.1 > 0 {
            if self.slots.freed.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        c.0 + c.1 == 0
    }

    /// Requests being served right now.
    pub fn busy(&self) -> usize {
        self.slots.busy()
    }
}

/// Runs on the connection thread that parsed the request. `/healthz` is answered at once (so
/// it is answered even when every slot is busy), and so is a request whose framing tiny_http
/// refused (no body is read, the connection closes); otherwise the request takes a worker slot,
/// waiting in the bounded queue if need be, and is served right here; with every slot busy and
/// the queue full, or while stopping, it is refused with 503 at once, in its route's dialect.
fn admit(
    request: tiny_http::Request,
    handler: &dyn Handler,
    stats: &ServerStats,
    stopping: &AtomicBool,
    slots: &Slots,
    timeouts: Timeouts,
) {
    let started = Instant::now();
    let url = request.url();
    if url == "/healthz" || url.starts_with("/healthz?") {
        let mut ex = Exchange::new(request, started, timeouts);
        ex.record.route = "healthz";
        ex.respond(handler.healthz());
        ex.record.latency = started.elapsed();
        handler.finished(&ex.record);
        return;
    }
    let refuse = |request: tiny_http::Request, route: &'static str, error: ProxyError, close: bool| {
        let bearer = request.headers().iter().any(|h| {
            h.field.equiv("Authorization")
                && h.value.as_str().get(..7).is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
        });
        let surface = handler.surface_of(request.method().as_str(), request.url(), bearer);
        let mut ex = Exchange::new(request, started, timeouts);
        ex.record.route = route;
        ex.record.surface = Some(surface);
        let mut reply = error.to_reply(surface);
        if close {
            reply.headers.push(("Connection".into(), "close".into()));
        }
        ex.respond(reply);
        ex.record.latency = started.elapsed();
        handler.finished(&ex.record);
    };
    if let Some((status, reason)) = request.framing_error() {
        refuse(request, "refused", ProxyError::Framing { status, reason }, true);
        return;
    }
    // A protocol switch (the Live API's WebSocket) holds its connection for as long as the
    // session lasts: it takes no worker slot (the handler bounds such sessions itself).
    if wants_websocket(&request) && handler.upgrades(request.method().as_str(), request.url()) {
        if stopping.load(Ordering::SeqCst) {
            refuse(request, "shed", ProxyError::Overloaded, true);
            return;
        }
        serve_one(request, started, handler, stats, timeouts, true);
        return;
    }
    let slot = if stopping.load(Ordering::SeqCst) { None } else { slots.take(stats) };
    let Some(_slot) = slot else {
        stats.shed.fetch_add(1, Ordering::Relaxed);
        refuse(request, "shed", ProxyError::Overloaded, stopping.load(Ordering::SeqCst));
        return;
    };
    serve_one(request, started, handler, stats, timeouts, false);
}

/// `Upgrade: websocket` among the request's headers.
fn wants_websocket(request: &tiny_http::Request) -> bool {
    request.headers().iter().any(|h| {
        h.field.equiv("Upgrade")
            && h.value.as_str().split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket"))
    })
}

fn serve_one(
    request: tiny_http::Request,
    started: Instant,
    handler: &dyn Handler,
    stats: &ServerStats,
    timeouts: Timeouts,
    upgrade: bool,
) {
    {
        let busy = if upgrade { None } else { Some(&stats.busy_workers) };
        if let Some(b) = busy {
            b.fetch_add(1, Ordering::SeqCst);
        }
        let mut ex = Exchange::new(request, started, timeouts);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if upgrade { handler.upgrade(&mut ex) } else { handler.handle(&mut ex) }
        }));
        let surface = ex.record.surface.unwrap_or(Surface::Native);
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                if ex.answered() {
                    log::debug!("error after the answer started: {}", e.message());
                } else {
                    if e == ProxyError::ClientGone {
                        ex.record.client_gone = true;
                    }
                    let mut reply = e.to_reply(surface);
                    if e.closes_connection() {
                        // The body was not read: do not let tiny_http drain it for the next request.
                        reply.headers.push(("Connection".into(), "close".into()));
                    }
                    ex.respond(reply);
                }
            }
            Err(panic) => {
                stats.panics.fetch_add(1, Ordering::Relaxed);
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                log::error!("handler panicked on {} {}: {what}", ex.record.method, ex.record.path);
                ex.record.note = Some("panic".into());
                if !ex.answered() {
                    ex.respond(
                        ProxyError::Internal { message: "the handler failed".into() }.to_reply(surface),
                    );
                }
            }
        }
        ex.record.latency = started.elapsed();
        handler.finished(&ex.record);
        if let Some(b) = busy {
            b.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
