//! One WebSocket connection as two blocking halves for the Live tunnel: a reader, used by one
//! thread only, and a sender that any thread may use, whole frames written under one lock.
//!
//! tungstenite does the framing (masking, fragments, control frames, the close handshake, size
//! limits). A `tungstenite::WebSocket` wants one stream for both directions and would have to be
//! locked across its blocking read; here each connection gets two of them over the same bytes:
//! the reader's (its reads are the connection's, its writes, pongs and close replies, go to the
//! shared writer) and the sender's (writes only). The shared writer takes each buffer tungstenite
//! hands it whole, under its lock, so the two never interleave inside a frame. Nothing here
//! knows about Gemini or the pool.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

pub use tungstenite::Message;
pub use tungstenite::protocol::CloseFrame;
pub use tungstenite::protocol::frame::coding::CloseCode;

/// Largest frame and message accepted from either side (SPEC §11).
pub const MAX_MESSAGE: usize = 16 << 20;

/// The longest close reason a close frame can carry (125 bytes of payload less the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// tungstenite's settings for both sides: 16 MiB frames and messages, every frame written at once.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .write_buffer_size(0)
        .read_buffer_size(64 * 1024)
}

/// The connection's writing half, shared by its reader (pongs, close replies) and its sender.
#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedWriter {
    pub fn new(w: Box<dyn Write + Send>) -> SharedWriter {
        SharedWriter(Arc::new(Mutex::new(w)))
    }
}

/// A byte stream for one `WebSocket`: reads from `read` (none for a sender), writes whole
/// buffers through the shared writer.
pub struct Duplex {
    read: Option<Box<dyn Read + Send>>,
    write: SharedWriter,
}

impl Duplex {
    pub fn new(read: Option<Box<dyn Read + Send>>, write: SharedWriter) -> Duplex {
        Duplex { read, write }
    }
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.read.as_mut() {
            Some(r) => r.read(buf),
            None => Err(std::io::Error::other("a sender does not read")),
        }
    }
}

impl Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut w = self.write.0.lock();
        w.write_all(buf)?;
        w.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write.0.lock().flush()
    }
}

/// One side of the tunnel: its reader, its sender, and its TCP socket (to wake a blocked reader).
pub struct Endpoint {
    pub reader: WebSocket<Duplex>,
    pub sender: WebSocket<Duplex>,
    pub tcp: TcpStream,
}

impl Endpoint {
    /// An endpoint over a connection already switched to WebSocket: `reader` is the connection's
    /// reading half (or a whole `WebSocket` that read the handshake, keeping what it read past it).
    pub fn new(reader: WebSocket<Duplex>, write: SharedWriter, tcp: TcpStream, role: Role) -> Endpoint {
        let sender = WebSocket::from_raw_socket(Duplex::new(None, write), role, Some(config()));
        Endpoint { reader, sender, tcp }
    }

    /// A server-side endpoint (the client's connection after our `101`).
    pub fn server(read: Box<dyn Read + Send>, write: Box<dyn Write + Send>, tcp: TcpStream) -> Endpoint {
        let write = SharedWriter::new(write);
        let reader =
            WebSocket::from_raw_socket(Duplex::new(Some(read), write.clone()), Role::Server, Some(config()));
        Endpoint::new(reader, write, tcp, Role::Server)
    }

    /// Wake whoever blocks on this connection and end it.
    pub fn shut(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

/// A close frame with a reason cut to what fits (at a character boundary).
pub fn close_frame(code: u16, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame { code: CloseCode::from(code), reason: reason[..end].to_string().into() }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(client_key.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn a_close_reason_is_cut_to_123_bytes_at_a_character_boundary() {
        let long = "é".repeat(100);
        let frame = close_frame(1011, &long);
        assert!(frame.reason.len() <= MAX_CLOSE_REASON);
        assert_eq!(frame.reason.len(), 122);
        assert_eq!(u16::from(frame.code), 1011);
    }
}
