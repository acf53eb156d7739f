//! The proxy listening with TLS (`--tls-cert`/`--tls-key`, SPEC §2): plain HTTPS requests and a
//! `wss://` Live session through it, with a throw-away CA (tests/fixtures/tls, made by its
//! gen.sh). The session's echo arriving frame by frame while the client sends nothing shows the
//! TLS connection's reader and writer do not wait for each other (vendor/tiny_http patch 18).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::mock_live::MockLive;
use support::{KEYS, Proxy, TOKEN};
use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

const LIVE: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the proxy, trusting only the test CA.
fn tls_connect(proxy: &Proxy) -> Tls {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(fixture("ca.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(proxy.handle.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn tls_proxy(mock: &MockLive) -> Proxy {
    Proxy::start_with(&mock.url(), &KEYS, |c| c.tls = Some((fixture("server.pem"), fixture("server.key"))))
}

#[test]
fn https_requests_are_served_over_tls() {
    let mock = MockLive::start();
    let proxy = tls_proxy(&mock);
    let mut s = tls_connect(&proxy);
    s.write_all(
        format!("GET /status HTTP/1.1\r\nHost: x\r\nx-goog-api-key: {TOKEN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"live\""), "{answer}");
}

#[test]
fn a_wss_live_session_relays_the_echo_frame_by_frame() {
    let mock = MockLive::start();
    mock.set_echo(3, Duration::from_millis(150));
    let proxy = tls_proxy(&mock);
    let mut request =
        format!("wss://127.0.0.1:{}{LIVE}", proxy.handle.addr().port()).into_client_request().unwrap();
    request.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
    let (mut ws, _) = tungstenite::client(request, tls_connect(&proxy)).expect("wss upgrade");
    ws.send(Message::text(json!({"setup": {"model": "models/gemini-live-2.5-flash"}}).to_string())).unwrap();
    let mut next = || loop {
        if let m @ (Message::Text(_) | Message::Binary(_)) = ws.read().unwrap() {
            return serde_json::from_slice::<Value>(&m.into_data()).unwrap();
        }
    };
    assert!(next().get("setupComplete").is_some());

    ws.send(Message::text(
        json!({"clientContent": {"turns": [{"parts": [{"text": "over tls"}]}], "turnComplete": true}})
            .to_string(),
    ))
    .unwrap();
    let sent = Instant::now();
    let mut pieces = Vec::new();
    loop {
        let v = match ws.read().unwrap() {
            m @ (Message::Text(_) | Message::Binary(_)) => {
                serde_json::from_slice::<Value>(&m.into_data()).unwrap()
            }
            _ => continue,
        };
        if let Some(t) = v.pointer("/serverContent/modelTurn/parts/0/text").and_then(Value::as_str) {
            pieces.push((t.to_string(), sent.elapsed()));
        }
        if v.pointer("/serverContent/turnComplete").is_some() {
            break;
        }
    }
    assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), "over tls");
    assert_eq!(pieces.len(), 3);
    assert!(pieces[2].1 - pieces[0].1 >= Duration::from_millis(250), "{pieces:?}");
    ws.close(None).unwrap();
    let seen = mock.wait_ended(1, Duration::from_secs(10));
    assert!(KEYS.contains(&seen[0].key.as_deref().unwrap()));
}

#[test]
fn a_missing_key_file_for_tls_is_a_clear_startup_error() {
    let mock = MockLive::start();
    let dir = support::temp_dir("tls");
    std::fs::write(dir.join("key.txt"), KEYS.join("\n")).unwrap();
    let mut cfg =
        gemini_key_manager::config::Config::for_tests(dir.join("key.txt"), dir.join("u.json"), &mock.url());
    cfg.tls = Some((dir.join("missing.pem"), fixture("server.key")));
    let err = gemini_key_manager::start(cfg).err().expect("refused");
    assert!(err.contains("--tls-cert") && err.contains("missing.pem"), "{err}");
}

/// The proxy's own upstream over `wss://`: proxy A's upstream is proxy B listening with TLS (the
/// test CA), in front of the plain Live mock. A must verify B's certificate against the extra root
/// and tunnel the session with a pool key; B accepts A's pool keys as its client tokens.
fn chained(mock: &MockLive, trust: bool) -> (Proxy, Proxy) {
    let b = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.tls = Some((fixture("server.pem"), fixture("server.key")));
        c.tokens = KEYS.iter().map(|k| k.to_string()).collect();
    });
    let a = Proxy::start_with(&format!("https://127.0.0.1:{}", b.handle.addr().port()), &KEYS, |c| {
        c.ca_file = trust.then(|| fixture("ca.pem"));
    });
    (a, b)
}

fn plain_session(proxy: &Proxy) -> tungstenite::WebSocket<TcpStream> {
    let mut request =
        format!("ws://127.0.0.1:{}{LIVE}", proxy.handle.addr().port()).into_client_request().unwrap();
    request.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
    let tcp = TcpStream::connect(proxy.handle.addr()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (ws, _) = tungstenite::client(request, tcp).expect("upgrade");
    ws
}

#[test]
fn a_wss_upstream_is_verified_against_the_extra_root_and_tunnelled() {
    let mock = MockLive::start();
    mock.set_echo(3, Duration::from_millis(100));
    let (a, b) = chained(&mock, true);
    let mut ws = plain_session(&a);
    ws.send(Message::text(json!({"setup": {"model": "models/gemini-live-2.5-flash"}}).to_string())).unwrap();
    let mut texts = String::new();
    loop {
        let v = match ws.read().unwrap() {
            m @ (Message::Text(_) | Message::Binary(_)) => {
                serde_json::from_slice::<Value>(&m.into_data()).unwrap()
            }
            _ => continue,
        };
        if v.get("setupComplete").is_some() {
            ws.send(Message::text(
                json!({"clientContent": {"turns": [{"parts": [{"text": "through two proxies"}]}], "turnComplete": true}})
                    .to_string(),
            ))
            .unwrap();
        }
        if let Some(t) = v.pointer("/serverContent/modelTurn/parts/0/text").and_then(Value::as_str) {
            texts.push_str(t);
        }
        if v.pointer("/serverContent/turnComplete").is_some() {
            break;
        }
    }
    assert_eq!(texts, "through two proxies");
    ws.close(None).unwrap();
    let seen = mock.wait_ended(1, Duration::from_secs(10));
    assert!(KEYS.contains(&seen[0].key.as_deref().unwrap()), "the mock saw a pool key");
    drop(b);
}

#[test]
fn a_wss_upstream_with_an_unknown_issuer_is_refused_not_trusted() {
    let mock = MockLive::start();
    let (a, _b) = chained(&mock, false);
    let mut ws = plain_session(&a);
    ws.send(Message::text(json!({"setup": {"model": "models/gemini-live-2.5-flash"}}).to_string())).unwrap();
    let ended = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    let frame = ended.expect("a close frame with a code");
    assert_ne!(u16::from(frame.code), 1000, "not a normal close: {frame:?}");
    assert!(mock.sessions().is_empty(), "nothing reached the mock");
}
