//! TLS with rustls (gemini-key-manager patch 18: ported from rustls 0.20 to 0.23, the version
//! the rest of the proxy uses, and split so that a reader and a writer on two threads never wait
//! for each other).
//!
//! The original kept a `rustls::StreamOwned` behind a mutex and held that mutex across the
//! blocking socket read: a thread writing an answer (or a WebSocket frame) waited until the
//! peer sent something. Here the socket is read without the lock; the lock is taken only to feed
//! the bytes read into the TLS session and take the plaintext out, and to encrypt and write.

use crate::connection::Connection;
use crate::util::refined_tcp_stream::Stream as RefinedStream;
use std::error::Error;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use zeroize::Zeroizing;

/// The TLS session and the plaintext it has decrypted but nobody has read yet.
struct Session {
    conn: rustls::ServerConnection,
    plaintext: Vec<u8>,
    /// Where `plaintext` starts (what was read is not moved out byte by byte).
    taken: usize,
    /// The peer sent `close_notify`.
    closed: bool,
}

/// One handle on a TLS connection; clones share the session and the socket.
pub(crate) struct RustlsStream {
    session: Arc<Mutex<Session>>,
    sock: Arc<Connection>,
}

/// Largest raw read from the socket at once.
const RAW_READ: usize = 16 * 1024;

impl RustlsStream {
    fn lock(&self) -> std::io::Result<MutexGuard<'_, Session>> {
        self.session
            .lock()
            .map_err(|_| std::io::Error::other("TLS session lock poisoned"))
    }

    pub(crate) fn peer_addr(&mut self) -> std::io::Result<Option<SocketAddr>> {
        match &*self.sock {
            Connection::Tcp(s) => s.peer_addr().map(Some),
            #[cfg(unix)]
            Connection::Unix(_) => Ok(None),
        }
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> std::io::Result<()> {
        self.sock.shutdown(how)
    }

    /// The TCP socket under the session.
    pub(crate) fn tcp(&self) -> Option<&TcpStream> {
        match &*self.sock {
            Connection::Tcp(s) => Some(s),
            #[cfg(unix)]
            Connection::Unix(_) => None,
        }
    }

    fn read_raw(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &*self.sock {
            Connection::Tcp(s) => (&*s).read(buf),
            #[cfg(unix)]
            Connection::Unix(s) => (&*s).read(buf),
        }
    }

    /// Write whatever TLS records the session has queued (handshake, alerts, data).
    fn write_tls(&self, session: &mut Session) -> std::io::Result<()> {
        while session.conn.wants_write() {
            match &*self.sock {
                Connection::Tcp(s) => session.conn.write_tls(&mut &*s)?,
                #[cfg(unix)]
                Connection::Unix(s) => session.conn.write_tls(&mut &*s)?,
            };
        }
        Ok(())
    }
}

impl Session {
    /// Move the session's decrypted bytes into `plaintext`.
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

impl Clone for RustlsStream {
    fn clone(&self) -> Self {
        Self {
            session: self.session.clone(),
            sock: self.sock.clone(),
        }
    }
}

impl Read for RustlsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut raw = [0u8; RAW_READ];
        loop {
            {
                let mut session = self.lock()?;
                if session.plaintext.len() > session.taken {
                    return Ok(session.take(buf));
                }
                if session.closed {
                    return Ok(0);
                }
                // A handshake in progress may have records to send before the peer answers.
                self.write_tls(&mut session)?;
            }
            // The blocking read, without the lock: a writer on another thread goes on.
            let n = self.read_raw(&mut raw)?;
            let mut session = self.lock()?;
            if n == 0 {
                session.closed = true;
                continue;
            }
            let mut input = &raw[..n];
            while !input.is_empty() {
                session.conn.read_tls(&mut input)?;
                if let Err(e) = session.conn.process_new_packets() {
                    // Tell the peer why (an alert), then fail.
                    let _ = self.write_tls(&mut session);
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
                session.drain()?;
            }
            self.write_tls(&mut session)?;
        }
    }
}

impl Write for RustlsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut session = self.lock()?;
        let n = session.conn.writer().write(buf)?;
        self.write_tls(&mut session)?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut session = self.lock()?;
        session.conn.writer().flush()?;
        self.write_tls(&mut session)
    }
}

pub(crate) struct RustlsContext(Arc<rustls::ServerConfig>);

impl RustlsContext {
    pub(crate) fn from_pem(
        certificates: Vec<u8>,
        private_key: Zeroizing<Vec<u8>>,
    ) -> Result<Self, Box<dyn Error + Send + Sync>> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};

        let certificate_chain = CertificateDer::pem_slice_iter(&certificates)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("cannot read the certificate chain: {e}"))?;
        if certificate_chain.is_empty() {
            return Err("Couldn't extract certificate chain from config.".into());
        }
        // PKCS#8, PKCS#1 (RSA) or SEC1 (EC), whichever comes first.
        let private_key = PrivateKeyDer::from_pem_slice(&private_key)
            .map_err(|e| format!("cannot read the private key: {e}"))?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls_conf = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certificate_chain, private_key)?;
        tls_conf.alpn_protocols = vec![b"http/1.1".to_vec()];

        Ok(Self(Arc::new(tls_conf)))
    }

    pub(crate) fn accept(
        &self,
        stream: Connection,
    ) -> Result<RustlsStream, Box<dyn Error + Send + Sync + 'static>> {
        // No I/O here (this runs on the accept thread): the handshake happens on the
        // connection's thread with its first read.
        let conn = rustls::ServerConnection::new(self.0.clone())?;
        Ok(RustlsStream {
            session: Arc::new(Mutex::new(Session {
                conn,
                plaintext: Vec::new(),
                taken: 0,
                closed: false,
            })),
            sock: Arc::new(stream),
        })
    }
}

impl From<RustlsStream> for RefinedStream {
    fn from(stream: RustlsStream) -> Self {
        Self::Https(stream)
    }
}
