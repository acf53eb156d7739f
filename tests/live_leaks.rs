//! No thread or socket is left behind by Live API sessions: 1,000 opened and closed (half with
//! a close frame, half by a client that just goes), the process's threads and descriptors
//! measured before and after. A test binary of its own: other tests in the same process would
//! move the counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::mock_live::MockLive;
use support::{KEYS, Proxy, TOKEN, eventually};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocket;

const LIVE: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn open(proxy: &Proxy) -> WebSocket<TcpStream> {
    let mut request = format!("ws://{}{LIVE}", proxy.handle.addr()).into_client_request().unwrap();
    request.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
    let stream = TcpStream::connect(proxy.handle.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut ws, _) = tungstenite::client(request, stream).unwrap();
    ws.send(Message::text(json!({"setup": {"model": "models/gemini-live-2.5-flash"}}).to_string())).unwrap();
    loop {
        if let m @ (Message::Text(_) | Message::Binary(_)) = ws.read().unwrap() {
            assert!(m.into_text().unwrap().contains("setupComplete"));
            return ws;
        }
    }
}

fn read_close(ws: &mut WebSocket<TcpStream>) {
    while let Ok(m) = ws.read() {
        if m.is_close() {
            return;
        }
    }
}

/// Threads and open descriptors of this process (Linux).
fn threads_and_fds() -> (usize, usize) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let threads = status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap();
    (threads, std::fs::read_dir("/proc/self/fd").unwrap().count())
}

#[test]
fn a_thousand_sessions_opened_and_closed_leave_no_thread_or_socket_behind() {
    let mock = MockLive::start();
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |_| {});
    // Warm up: the connection threads tiny_http keeps for reuse exist before the baseline.
    for _ in 0..4 {
        let mut ws = open(&proxy);
        ws.close(None).unwrap();
        read_close(&mut ws);
    }
    mock.wait_ended(4, Duration::from_secs(10));
    eventually(Duration::from_secs(10), "warm-up sessions gone", || {
        mock.open_connections() == 0 && proxy.handle.app.live.open() == 0
    });
    let before = threads_and_fds();
    for i in 0..1000 {
        let mut ws = open(&proxy);
        if i % 2 == 0 {
            ws.close(None).unwrap();
            read_close(&mut ws);
        } // else: the client just goes
    }
    mock.wait_ended(1004, Duration::from_secs(60));
    eventually(Duration::from_secs(20), "every session and connection gone", || {
        mock.open_connections() == 0 && proxy.handle.app.live.open() == 0
    });
    let mut after = threads_and_fds();
    // tiny_http's idle connection threads linger a little before they end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        after = threads_and_fds();
        if after.0 <= before.0 + 2 && after.1 <= before.1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(after.0 <= before.0 + 2 && after.1 <= before.1, "threads {before:?} -> {after:?} (threads, fds)");
    eprintln!("1000 Live sessions: threads {} -> {}, fds {} -> {}", before.0, after.0, before.1, after.1);
}
