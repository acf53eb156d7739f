//! The subcommands other than `serve`: `healthcheck` (and, later, `usage` and `check-keys`).
//!
//! They print to stdout and return the process exit status; they never start the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `GET http://127.0.0.1:PORT/healthz`: 0 on 200, 1 otherwise (for Docker's HEALTHCHECK in a
/// scratch image, where there is no curl).
pub fn healthcheck(port: u16) -> i32 {
    match probe_healthz(port) {
        Ok(200) => {
            println!("ok");
            0
        }
        Ok(status) => {
            println!("unhealthy: /healthz answered {status}");
            1
        }
        Err(e) => {
            println!("unhealthy: {e}");
            1
        }
    }
}

fn probe_healthz(port: u16) -> Result<u16, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::new();
    s.take(4096).read_to_end(&mut head).map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    status.ok_or_else(|| "not an HTTP answer".to_string())
}
