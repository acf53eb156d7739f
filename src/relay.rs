//! The one relay of a streamed upstream answer to the client, shared by every surface.
//!
//! It owns what every stream needs the same way: the retry boundary (it runs only after a key
//! answered 2xx; from its first byte on there is no retry and no status change, SPEC §5), the
//! time to the first byte, client-gone detection (a failed write ends the relay quietly and drops
//! the upstream request), the booking of the answer's tokens to the key, and the redaction of
//! every byte (through `StreamWriter`). What differs by surface is a [`Transform`] fed the upstream
//! bytes as they arrive: the identity for native streams, a translation for the others.
//!
//! Streams that stay open (SPEC §14): while the upstream is silent for `--keepalive-secs`, the
//! client gets a keep-alive — the transform's own (Anthropic's `ping`), else, by the answer's
//! content type, an SSE comment line between events or a newline between JSON-array elements
//! (only where the bytes sent so far leave a gap for it: `sse::Gap`). Every stream carries
//! `Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`, so that proxies in front
//! neither buffer nor rewrite it.
//!
//! It never retries, never builds an error body itself (a transform writes its surface's error
//! event), and holds no lock across I/O.

use std::io::Read;

use crate::App;
use crate::error::ProxyError;
use crate::server::Exchange;
use crate::upstream::{self, Answer, KeyUsed};

/// What one surface makes of an upstream stream. Pure: values in, bytes out.
pub trait Transform {
    /// Upstream bytes in, as they arrived; what the client gets appended to `out`. `Err(message)`
    /// when the upstream reported an error in the stream: the relay then ends it with `fail`.
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
    /// The upstream ended cleanly: the surface's closing bytes, if any.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// The upstream broke or reported an error mid-stream: append the surface's error ending and
    /// return true, or return false when the surface has none (the framing is then broken, so
    /// the client sees an incomplete answer rather than a clean end).
    fn fail(&mut self, message: &str, out: &mut Vec<u8>) -> bool;
    /// The tokens the stream reported so far.
    fn tokens(&self) -> Option<u64>;
    /// A keep-alive of the surface's own while the upstream is silent for `--keepalive-secs`
    /// (Anthropic's `ping`): append it and return true, or return false to let the relay send
    /// the generic one of the stream's content type (the default).
    fn keepalive(&mut self, _out: &mut Vec<u8>) -> bool {
        false
    }
    /// Server-side resources the stream revealed since the last call (an interaction's id, a
    /// continuation token): the relay pins them to the key's project at once (SPEC §5).
    fn take_created(&mut self) -> Vec<crate::resources::Created> {
        Vec::new()
    }
    /// Whether this surface sends keep-alives of its own even where its content type would
    /// take none (then the upstream is read on a thread of its own, so that silence can be
    /// noticed).
    fn wants_keepalive(&self) -> bool {
        false
    }
}

/// One step of reading the upstream.
enum Piece {
    /// A piece arrived: `Source::data` holds it.
    Data,
    End,
    Failed(std::io::Error),
    Silent,
}

/// The upstream body, read directly, or on a reader thread when keep-alives are wanted.
enum Source {
    /// The reader, its buffer, and how much of it the last piece filled.
    Direct(Box<dyn Read + Send>, Vec<u8>, usize),
    /// Pieces from the reader thread, the keep-alive interval, the last piece.
    Threaded(crossbeam_channel::Receiver<std::io::Result<Vec<u8>>>, std::time::Duration, Vec<u8>),
}

impl Source {
    fn new(reader: impl Read + Send + 'static, keepalive: Option<std::time::Duration>) -> Source {
        let Some(every) = keepalive else {
            return Source::Direct(Box::new(reader), vec![0u8; READ_BUFFER], 0);
        };
        let (tx, rx) = crossbeam_channel::bounded(4);
        let mut reader = reader;
        let spawned = std::thread::Builder::new().name("stream-reader".into()).spawn(move || {
            let mut buf = vec![0u8; READ_BUFFER];
            loop {
                let piece = match reader.read(&mut buf) {
                    Ok(n) => Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let last = !matches!(piece, Ok(ref p) if !p.is_empty());
                // The relay gone (client left): dropping the reader drops the upstream request.
                if tx.send(piece).is_err() || last {
                    return;
                }
            }
        });
        match spawned {
            Ok(_) => Source::Threaded(rx, every, Vec::new()),
            Err(e) => {
                let (tx, rx) = crossbeam_channel::bounded(1);
                let _ = tx.send(Err(std::io::Error::other(format!("cannot start a stream reader: {e}"))));
                Source::Threaded(rx, every, Vec::new())
            }
        }
    }

    fn next(&mut self) -> Piece {
        match self {
            Source::Direct(reader, buf, len) => loop {
                match reader.read(buf) {
                    Ok(0) => return Piece::End,
                    Ok(n) => {
                        *len = n;
                        return Piece::Data;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Piece::Failed(e),
                }
            },
            Source::Threaded(rx, every, last) => match rx.recv_timeout(*every) {
                Ok(Ok(p)) if p.is_empty() => Piece::End,
                Ok(Ok(p)) => {
                    *last = p;
                    Piece::Data
                }
                Ok(Err(e)) => Piece::Failed(e),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => Piece::Silent,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    Piece::Failed(std::io::Error::other("the stream reader ended"))
                }
            },
        }
    }

    /// The piece the last `next` returned as `Piece::Data`.
    fn data(&self) -> &[u8] {
        match self {
            Source::Direct(_, buf, len) => &buf[..*len],
            Source::Threaded(_, _, last) => last,
        }
    }
}

/// Native streams: the bytes pass as they are; tokens from the last chunk that carried usage.
#[derive(Default)]
pub struct Identity {
    usage: crate::usage::StreamUsage,
}

impl Transform for Identity {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.usage.feed(data);
        out.extend_from_slice(data);
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) {}

    fn fail(&mut self, _message: &str, _out: &mut Vec<u8>) -> bool {
        false
    }

    fn tokens(&self) -> Option<u64> {
        self.usage.tokens()
    }
}

/// Gemini's stream as events, for the transforms that translate it: frames the bytes, parses
/// each event, follows its token count, and stops at an error event.
#[derive(Default)]
pub struct GeminiEvents {
    framer: crate::sse::Framer,
    tokens: Option<u64>,
}

impl GeminiEvents {
    /// Feed upstream bytes; `each` gets every complete event in order. `Err(message)` at an error
    /// event (the events before it were passed on).
    pub fn feed(&mut self, data: &[u8], mut each: impl FnMut(&serde_json::Value)) -> Result<(), String> {
        for payload in self.framer.feed(data) {
            let Ok(event) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                log::debug!("skipping an upstream event that is not JSON");
                continue;
            };
            if let Some(t) = crate::usage::tokens(&event) {
                self.tokens = Some(t);
            }
            if let Some(err) = crate::google_error::GoogleError::from_value(&event) {
                let msg = if err.message.is_empty() { "upstream error event" } else { err.message.as_str() };
                return Err(format!("The upstream reported an error mid-stream: {msg}"));
            }
            each(&event);
        }
        Ok(())
    }

    /// The tokens of the last event that carried a count.
    pub fn tokens(&self) -> Option<u64> {
        self.tokens
    }
}

/// A stream's head: `headers` with `Cache-Control: no-cache, no-transform` in place of any the
/// upstream sent, and `X-Accel-Buffering: no` (nginx, Cloudflare and the like neither buffer
/// nor transform it then).
fn stream_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| {
            !n.eq_ignore_ascii_case("cache-control") && !n.eq_ignore_ascii_case("x-accel-buffering")
        })
        .cloned()
        .collect();
    out.push(("Cache-Control".into(), "no-cache, no-transform".into()));
    out.push(("X-Accel-Buffering".into(), "no".into()));
    out
}

/// How big a piece is read from the upstream at once.
const READ_BUFFER: usize = 16 * 1024;

/// Relay `answer` as a stream with `status` and `headers`, through `transform`, and book its
/// tokens to `used` for `model` however it ends. Errors only before the head went out.
pub fn stream(
    app: &App,
    ex: &mut Exchange,
    answer: Answer,
    used: &KeyUsed,
    model: Option<&str>,
    head: (u16, &[(String, String)]),
    transform: &mut dyn Transform,
) -> Result<(), ProxyError> {
    let headers = stream_headers(head.1);
    let style = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, v)| crate::sse::KeepAlive::for_content_type(v));
    let mut writer = match ex.start_stream(head.0, &headers) {
        Ok(w) => w,
        Err(e) => {
            ex.record.client_gone = true;
            log::debug!("client left before the stream started: {e}");
            return Ok(());
        }
    };
    let every = app.config.keepalive;
    let keepalive = ((transform.wants_keepalive() || style.is_some()) && !every.is_zero()).then_some(every);
    let mut source = Source::new(answer.into_reader(), keepalive);
    let mut gap = style.map(crate::sse::Gap::new);
    let mut out = Vec::new();
    // Ok(()) at a clean end; Err((log note, message)) when the upstream broke or reported an error.
    let ended: Result<(), (&str, String)> = loop {
        match source.next() {
            Piece::End => break Ok(()),
            Piece::Data => {}
            Piece::Silent => {
                out.clear();
                if !transform.keepalive(&mut out)
                    && let (Some(style), Some(gap)) = (style, gap.as_ref())
                    && gap.open()
                {
                    out.extend_from_slice(style.bytes());
                }
                if let Some(gap) = gap.as_mut() {
                    gap.sent(&out);
                }
                if !out.is_empty() && writer.send(&out).is_err() {
                    ex.record.client_gone = true;
                    app.record_success(used, model, transform.tokens().unwrap_or(0));
                    return Ok(());
                }
                continue;
            }
            Piece::Failed(e) => {
                break Err(match upstream::read_failure(&e) {
                    ProxyError::UpstreamTimeout => (
                        "upstream timeout mid-stream",
                        "The upstream went silent mid-stream (read timeout)".into(),
                    ),
                    _ => ("upstream broke mid-stream", "The upstream connection broke mid-stream".into()),
                });
            }
        }
        out.clear();
        let fed = transform.feed(source.data(), &mut out);
        let created = transform.take_created();
        if !created.is_empty() {
            app.remember_resources(&created, used, model);
        }
        if !out.is_empty() {
            if ex.record.first_byte.is_none() {
                ex.record.first_byte = Some(ex.started.elapsed());
            }
            if let Some(gap) = gap.as_mut() {
                gap.sent(&out);
            }
            if let Err(e) = writer.send(&out) {
                // The client went away: dropping the reader drops the upstream request.
                ex.record.client_gone = true;
                log::debug!("client left mid-stream: {e}");
                app.record_success(used, model, transform.tokens().unwrap_or(0));
                return Ok(());
            }
        }
        if let Err(message) = fed {
            break Err(("upstream error mid-stream", message));
        }
    };
    app.record_success(used, model, transform.tokens().unwrap_or(0));
    out.clear();
    match ended {
        Ok(()) => transform.finish(&mut out),
        Err((note, message)) => {
            ex.record.note = Some(note.into());
            log::warn!("{message} after {} bytes of a stream; ending it", writer.bytes);
            if !transform.fail(&message, &mut out) {
                writer.abort();
                return Ok(());
            }
        }
    }
    if writer.send(&out).and_then(|_| writer.finish()).is_err() {
        ex.record.client_gone = true;
    }
    Ok(())
}
