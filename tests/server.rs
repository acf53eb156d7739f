//! The server layer on its own: panics, shedding and shutdown with handlers of our own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use gemini_key_manager::error::{ProxyError, Reply};
use gemini_key_manager::server::{Exchange, Handler, RequestRecord, Server};
use support::send;

struct Panicky;

impl Handler for Panicky {
    fn handle(&self, ex: &mut Exchange) -> Result<(), ProxyError> {
        if ex.target.contains("boom") {
            panic!("boom on purpose");
        }
        ex.respond(Reply::json(200, &serde_json::json!({"ok": true})));
        Ok(())
    }
    fn healthz(&self) -> Reply {
        Reply::json(200, &serde_json::json!({"status": "ok"}))
    }
    fn finished(&self, _: &RequestRecord) {}
}

#[test]
fn a_panicking_handler_becomes_a_500_and_the_worker_lives_on() {
    let stats = Arc::new(gemini_key_manager::server::ServerStats::default());
    let opts = gemini_key_manager::server::ServerOptions {
        host: "127.0.0.1".into(),
        port: 0,
        workers: 1,
        queue_size: 4,
        client_timeout: Duration::from_secs(5),
        body_timeout: Duration::from_secs(5),
        tls: None,
    };
    let server = Server::start(&opts, Arc::new(Panicky), stats).unwrap();
    let url = format!("http://{}", server.addr());
    for _ in 0..3 {
        let a = send("GET", &format!("{url}/boom"), &[], b"");
        assert_eq!(a.status, 500);
        assert_eq!(a.json()["error"]["status"], "INTERNAL");
        // The single worker survived the panic.
        assert_eq!(send("GET", &format!("{url}/fine"), &[], b"").status, 200);
    }
    assert_eq!(server.stats.panics.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert!(server.shutdown(Duration::from_secs(5)), "an idle server shuts down at once");
}
