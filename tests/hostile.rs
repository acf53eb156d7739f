//! Hostile clients: many idle or dripping connections, clients that stop reading a stream, and
//! thousands of abrupt disconnects. The proxy must keep answering everyone else and leave no
//! worker stuck.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";

fn busy(proxy: &Proxy) -> usize {
    proxy.handle.stats().busy_workers.load(Ordering::SeqCst)
}

fn wait_idle(proxy: &Proxy, within: Duration) {
    eventually(within, "every worker idle", || busy(proxy) == 0);
}

#[test]
fn a_thousand_idle_and_dripping_connections_do_not_stop_normal_requests() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.workers = 4);
    let addr = proxy.handle.addr();
    let mut conns: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                // Half start a request and then drip it; half stay silent.
                s.write_all(b"POST /v1beta/models/x:generateContent HTTP/1.1\r\nHo").unwrap();
            }
            s
        })
        .collect();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(3) {
        for s in conns.iter_mut().step_by(2) {
            let _ = s.write_all(b"s");
        }
        let t = Instant::now();
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        assert_eq!(a.status, 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(worst < Duration::from_secs(1), "a normal request took {worst:?}");
    let h = send("GET", &format!("{}/healthz", proxy.url), &[], b"");
    assert_eq!(h.status, 200);
    drop(conns);
    wait_idle(&proxy, Duration::from_secs(5));
}

#[test]
fn a_client_that_stops_reading_a_stream_releases_its_worker_after_the_write_timeout() {
    let mock = MockUpstream::start(&KEYS);
    let big = "x".repeat(64 * 1024);
    let events: Vec<serde_json::Value> = (0..400)
        .map(
            |_| json!({"candidates": [{"content": {"parts": [{"text": big}], "role": "model"}, "index": 0}]}),
        )
        .collect();
    mock.set_script(move |r| {
        r.path.contains("stream").then(|| Reply::Sse {
            events: events.clone(),
            delay: Duration::ZERO,
            then: StreamEnd::Finish,
        })
    });
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.workers = 1;
        c.queue_size = 0;
        c.client_timeout = Duration::from_secs(2);
    });
    let mut s = TcpStream::connect(proxy.handle.addr()).unwrap();
    let body = generate_body().to_string();
    let req = format!(
        "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\nHost: x\r\n\
         x-goog-api-key: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut first = [0u8; 64];
    let _ = s.read(&mut first).unwrap();
    // Now read nothing more: the 25 MB stream fills every socket buffer and the worker blocks.
    eventually(Duration::from_secs(30), "the worker is released", || {
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        if a.status != 200 {
            assert_eq!(a.status, 503, "the only worker is busy meanwhile");
        }
        a.status == 200
    });
    // The upstream stream was dropped too (the mock's writes fail once the proxy let go).
    eventually(Duration::from_secs(10), "the upstream stream is dropped", || {
        mock.stream_aborted_count() != 0
    });
    drop(s);
}

/// Also the regression test of a tiny_http bug the first run found: a client that resets its
/// connection before tiny_http read its peer address made an `unwrap` panic the connection
/// thread (7,104 panics in one run, and their backtraces slowed the proxy to a halt).
#[test]
fn ten_thousand_abrupt_disconnects_leave_no_worker_stuck_and_panic_no_thread() {
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(50));
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.workers = 16);
    let addr = proxy.handle.addr();
    let body = generate_body().to_string();
    let requests = [
        format!(
            "POST {GEN} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        format!(
            "POST /v1beta/models/m:streamGenerateContent?alt=sse HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        format!(
            "POST {GEN} HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nContent-Length: 1000\r\n\r\n{{\"contents\""
        ),
        "GET /v1beta/mo".to_string(),
    ];
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let requests = requests.clone();
            std::thread::spawn(move || {
                for i in 0..1250 {
                    let Ok(mut s) = TcpStream::connect(addr) else { continue };
                    let _ = s.write_all(requests[(i + t) % requests.len()].as_bytes());
                    // Close at once, unread: with SO_LINGER 0 the close is a reset.
                    let sock = socket2::SockRef::from(&s);
                    let _ = sock.set_linger(Some(Duration::ZERO));
                    drop(s);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    wait_idle(&proxy, Duration::from_secs(20));
    // Connections of the storm that the kernel had queued may still be arriving; while they do,
    // the proxy may rightly shed (503). It must come back to 200 on its own.
    eventually(Duration::from_secs(30), "no more shedding after the storm", || {
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        if a.status != 200 {
            assert_eq!(a.status, 503, "{}", a.text());
        }
        a.status == 200
    });
    wait_idle(&proxy, Duration::from_secs(5));
    let m = send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text();
    assert!(m.contains("gkm_workers_busy 1\n"), "only the /metrics request itself is busy");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
}

/// Regression: tiny_http's task pool queued a burst of new connections behind too few idle
/// threads; the extra connections were not even read until some other connection ended, so one
/// of 100 concurrent streams got its first byte 32 s late.
#[test]
fn regression_a_burst_of_streams_is_answered_at_once_not_after_other_streams_end() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_stream_delay(Duration::from_millis(500));
    mock.set_stream_events(8); // each stream lasts 3.5 s
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.workers = 128);
    let addr = proxy.handle.addr();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(60));
    let clients: Vec<_> = (0..60)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let body = generate_body().to_string();
                let req = format!(
                    "POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse HTTP/1.1\r\nHost: x\r\n\
                     x-goog-api-key: {TOKEN}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                barrier.wait();
                let started = Instant::now();
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(req.as_bytes()).unwrap();
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !String::from_utf8_lossy(&seen).contains("data:") {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "closed before the first event");
                    seen.extend_from_slice(&buf[..n]);
                }
                started.elapsed()
            })
        })
        .collect();
    let firsts: Vec<Duration> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let worst = firsts.iter().max().unwrap();
    assert!(*worst < Duration::from_secs(1), "a stream waited {worst:?} for its first event");
}
