//! Reaching Google through proxies (SPEC §15): an HTTP CONNECT proxy and a SOCKS5 server on
//! loopback (tests/support/egress_proxies.rs) that log what they relay. Traffic really goes
//! through them (an upstream name only the proxy resolves proves nothing went around it), each
//! key keeps its proxy, a key's own `proxy=` wins, a dead proxy is a network error retried on the
//! next key without blaming keys, a TLS upstream is verified against `--ca-file`, the Live API's
//! socket takes the same route, and no proxy password reaches `/status` or a log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/egress_proxies.rs"]
mod egress_proxies;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use egress_proxies::{Kind, RelayProxy, dead_port};
use gemini_key_manager::config::Config;
use gemini_key_manager::egress::Plan;
use serde_json::{Value, json};
use support::{KEYS, MockUpstream, Proxy, TOKEN, generate_body, post_json, send};

const GEN: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const SECRET: &str = "pr0xy-S3CRET-pw";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

/// `--upstream-proxy` as the configuration reads it, with no proxy variables in the environment.
fn via(c: &mut Config, flag: &str) {
    c.egress = Plan::decide(flag, &|_| None, &c.upstream.origin).expect("a valid proxy URL");
}

fn status(proxy: &Proxy) -> (Value, String) {
    let a = send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(a.status, 200);
    (a.json(), a.text())
}

/// Each key's `egress` in `/status`, by key id.
fn egress_of(proxy: &Proxy) -> BTreeMap<String, String> {
    let (doc, _) = status(proxy);
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap().to_string(), k["egress"].as_str().unwrap().to_string()))
        .collect()
}

fn id(key: &str) -> String {
    gemini_key_manager::keyfile::fingerprint(key)
}

#[test]
fn socks5h_and_connect_carry_every_request_to_an_upstream_only_the_proxy_can_resolve() {
    for (kind, scheme) in [(Kind::Socks5, "socks5h"), (Kind::Connect, "http")] {
        let mock = MockUpstream::start(&KEYS);
        let relay = RelayProxy::start(kind, None, &[("gemini.invalid", mock.addr())]);
        let upstream = format!("http://gemini.invalid:{}", mock.addr().port());
        let proxy = Proxy::start_with(&upstream, &KEYS, |c| via(c, &relay.url(scheme, None)));
        for _ in 0..3 {
            let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
            assert_eq!(a.status, 200, "{scheme}: {}", a.text());
        }
        let relayed = relay.connections();
        assert!(!relayed.is_empty());
        for r in &relayed {
            let want = upstream.trim_start_matches("http://");
            assert_eq!(r.target, want, "{scheme}: the name went to the proxy unresolved");
            assert!(r.opened);
        }
        assert_eq!(relay.keys().len(), 3, "{scheme}: every request went through the proxy");
        assert_eq!(mock.requests().len(), 3);
        let label = relay.addr.to_string();
        assert!(egress_of(&proxy).values().all(|e| *e == label), "{:?}", egress_of(&proxy));
    }
}

#[test]
fn the_environment_is_honoured_exactly_a_socks_url_is_used_and_no_proxy_goes_direct() {
    let mock = MockUpstream::start(&KEYS);
    let socks = RelayProxy::start(Kind::Socks5, None, &[("gemini.invalid", mock.addr())]);
    let all_proxy = socks.url("socks5h", None);
    let upstream = format!("http://gemini.invalid:{}", mock.addr().port());
    let env = |name: &str| (name == "ALL_PROXY").then(|| all_proxy.clone());
    let proxy = Proxy::start_with(&upstream, &KEYS, |c| {
        c.egress = Plan::decide("", &env, &c.upstream.origin).unwrap();
    });
    let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(socks.keys().len(), 1, "ALL_PROXY=socks5h:// was used, not bypassed");

    // NO_PROXY naming the upstream's host: direct, the proxy sees nothing.
    let other = RelayProxy::start(Kind::Socks5, None, &[]);
    let env = |name: &str| match name {
        "HTTP_PROXY" => Some(other.url("socks5", None)),
        "NO_PROXY" => Some("localhost,127.0.0.1".to_string()),
        _ => None,
    };
    let direct = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.egress = Plan::decide("", &env, &c.upstream.origin).unwrap();
    });
    assert_eq!(post_json(&format!("{}{GEN}", direct.url), &generate_body()).status, 200);
    assert!(other.connections().is_empty());
    assert!(egress_of(&direct).values().all(|e| e == "direct"));
}

#[test]
fn credentials_reach_the_proxy_and_nowhere_else_and_tunnels_are_reused() {
    for (kind, scheme) in [(Kind::Socks5, "socks5"), (Kind::Connect, "http")] {
        let mock = MockUpstream::start(&KEYS);
        let creds = format!("gkm-user:{SECRET}");
        let relay = RelayProxy::start(kind, Some(&creds), &[]);
        let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| via(c, &relay.url(scheme, Some(&creds))));
        for _ in 0..8 {
            let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
            assert_eq!(a.status, 200, "{scheme}: {}", a.text());
            assert!(!a.text().contains(SECRET));
        }
        let relayed = relay.connections();
        assert!(
            relayed.iter().all(|r| r.credentials.as_deref() == Some(creds.as_str()) && r.opened),
            "{relayed:?}"
        );
        assert!(relayed.iter().all(|r| r.target == mock.addr().to_string()), "{relayed:?}");
        assert_eq!(relay.keys().len(), 8, "{scheme}: every request through the proxy");
        assert!(relayed.len() <= 4, "{scheme}: tunnels are pooled (at most one per pool): {}", relayed.len());
        let (_, text) = status(&proxy);
        assert!(!text.contains(SECRET) && !text.contains("gkm-user"), "{text}");
        assert!(egress_of(&proxy).values().all(|e| *e == relay.addr.to_string()));
        let metrics =
            send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text();
        assert!(!metrics.contains(SECRET));
    }
}

#[test]
fn each_key_keeps_its_proxy_of_a_list_and_a_keys_own_field_wins() {
    const OWN: &str = "AIzaSyTESTKEY00000000000000000000000000D";
    let mock = MockUpstream::start(&[KEYS[0], KEYS[1], KEYS[2], OWN]);
    let a = RelayProxy::start(Kind::Socks5, None, &[]);
    let b = RelayProxy::start(Kind::Socks5, None, &[]);
    let own = RelayProxy::start(Kind::Connect, None, &[]);
    let own_line = format!("{OWN} proj-d proxy={}", own.url("http", None));
    let lines = [KEYS[0], KEYS[1], KEYS[2], own_line.as_str()];
    let list = format!("{},{}", a.url("socks5", None), b.url("socks5", None));
    let proxy = Proxy::start_with(&mock.url(), &lines, |c| via(c, &list));
    for _ in 0..16 {
        assert_eq!(post_json(&format!("{}{GEN}", proxy.url), &generate_body()).status, 200);
    }
    let egress = egress_of(&proxy);
    assert_eq!(egress[&id(OWN)], own.addr.to_string(), "the key's own proxy= wins");
    // What each proxy carried is exactly the keys /status assigns to it.
    for relay in [&a, &b, &own] {
        let seen: BTreeSet<String> = relay.keys().into_iter().collect();
        let assigned: BTreeSet<String> = lines
            .iter()
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .filter(|k| egress[&id(k)] == relay.addr.to_string())
            .collect();
        assert_eq!(seen, assigned, "proxy {}", relay.addr);
    }
    assert_eq!(a.keys().len() + b.keys().len() + own.keys().len(), 16);
    // The same keys and list in another process: the same assignment.
    let again = Proxy::start_with(&mock.url(), &lines, |c| via(c, &list));
    assert_eq!(egress_of(&again), egress);
}

#[test]
fn a_dead_proxy_is_a_network_error_retried_on_the_next_key_and_no_key_is_blamed() {
    let mock = MockUpstream::start(&KEYS);
    let dead = format!("socks5://gkm-user:{SECRET}@127.0.0.1:{}", dead_port());
    let first = format!("{} proxy={dead}", KEYS[0]);
    let proxy = Proxy::start_with(&mock.url(), &[first.as_str(), KEYS[1], KEYS[2]], |_| {});
    for _ in 0..4 {
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        assert_eq!(a.status, 200, "{}", a.text());
    }
    assert_eq!(mock.requests().len(), 4);
    assert!(
        mock.requests().iter().all(|r| r.key.as_deref() != Some(KEYS[0])),
        "the dead route reached nothing"
    );
    let (doc, text) = status(&proxy);
    for k in doc["keys"].as_array().unwrap() {
        assert_eq!(k["state"], "usable", "no key blamed: {k}");
    }
    assert!(!text.contains(SECRET));

    // Every key behind a dead proxy: 502 saying why, without the password.
    let all_dead = Proxy::start_with(&mock.url(), &KEYS, |c| via(c, &dead));
    let a = post_json(&format!("{}{GEN}", all_dead.url), &generate_body());
    assert_eq!(a.status, 502, "{}", a.text());
    let message = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("proxy unreachable") && message.contains("127.0.0.1:"), "{message}");
    assert!(!a.text().contains(SECRET), "{message}");
    let (doc, _) = status(&all_dead);
    assert!(doc["keys"].as_array().unwrap().iter().all(|k| k["state"] == "usable"));
}

#[test]
fn a_proxy_that_refuses_is_said_so() {
    let mock = MockUpstream::start(&KEYS);
    let socks = RelayProxy::start(Kind::Socks5, Some("u:right"), &[]);
    let connect = RelayProxy::start(Kind::Connect, Some("u:right"), &[]);
    for url in [socks.url("socks5", Some("u:wrong")), connect.url("http", Some("u:wrong"))] {
        let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| via(c, &url));
        let a = post_json(&format!("{}{GEN}", proxy.url), &generate_body());
        assert_eq!(a.status, 502, "{}", a.text());
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("proxy refused"), "{url}: {message}");
        assert!(!message.contains("wrong"), "{message}");
    }
    assert!(mock.requests().is_empty());
}

/// Proxy B listens with TLS (the throw-away CA's 127.0.0.1 certificate) in front of the mock: an
/// `https://` upstream for proxy A, reached through a SOCKS5 or CONNECT proxy.
#[test]
fn a_tls_upstream_through_a_proxy_is_verified_against_the_ca_file() {
    let mock = MockUpstream::start(&KEYS);
    let b = Proxy::start_with(&mock.url(), &KEYS, |c| {
        c.tls = Some((fixture("server.pem"), fixture("server.key")));
        c.tokens = KEYS.iter().map(|k| k.to_string()).collect();
    });
    let upstream = format!("https://127.0.0.1:{}", b.handle.addr().port());
    for (kind, scheme) in [(Kind::Socks5, "socks5"), (Kind::Connect, "http")] {
        let relay = RelayProxy::start(kind, None, &[]);
        let trusted = Proxy::start_with(&upstream, &KEYS, |c| {
            via(c, &relay.url(scheme, None));
            c.ca_file = Some(fixture("ca.pem"));
        });
        let a = post_json(&format!("{}{GEN}", trusted.url), &generate_body());
        assert_eq!(a.status, 200, "{scheme}: {}", a.text());
        assert!(
            relay.connections().iter().any(|r| r.target == format!("127.0.0.1:{}", b.handle.addr().port()))
        );

        let untrusted = Proxy::start_with(&upstream, &KEYS, |c| via(c, &relay.url(scheme, None)));
        let a = post_json(&format!("{}{GEN}", untrusted.url), &generate_body());
        assert_eq!(a.status, 502, "{scheme}: {}", a.text());
        let message = a.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("TLS verify"), "{message}");
    }
}

#[test]
fn the_live_api_socket_takes_the_keys_proxy() {
    use tungstenite::Message;
    use tungstenite::client::IntoClientRequest;
    let mock = support::mock_live::MockLive::start();
    let mock_addr: std::net::SocketAddr = mock.url().trim_start_matches("http://").parse().unwrap();
    let creds = format!("u:{SECRET}");
    for (kind, scheme) in [(Kind::Socks5, "socks5h"), (Kind::Connect, "http")] {
        let relay = RelayProxy::start(kind, Some(&creds), &[("live.invalid", mock_addr)]);
        let upstream = format!("http://live.invalid:{}", mock_addr.port());
        let proxy = Proxy::start_with(&upstream, &KEYS, |c| via(c, &relay.url(scheme, Some(&creds))));
        let path = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
        let mut request = format!("ws://{}{path}", proxy.handle.addr()).into_client_request().unwrap();
        request.headers_mut().insert("x-goog-api-key", TOKEN.parse().unwrap());
        let tcp = std::net::TcpStream::connect(proxy.handle.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut ws, _) = tungstenite::client(request, tcp).expect("upgrade");
        ws.send(Message::text(json!({"setup": {"model": "models/gemini-live-2.5-flash"}}).to_string()))
            .unwrap();
        loop {
            match ws.read().unwrap() {
                m @ (Message::Text(_) | Message::Binary(_)) => {
                    let v: Value = serde_json::from_slice(&m.into_data()).unwrap();
                    if v.get("setupComplete").is_some() {
                        break;
                    }
                }
                Message::Close(c) => panic!("{scheme}: closed: {c:?}"),
                _ => {}
            }
        }
        let relayed = relay.connections();
        assert_eq!(relayed.len(), 1, "{scheme}: {relayed:?}");
        assert_eq!(relayed[0].target, format!("live.invalid:{}", mock_addr.port()), "{scheme}");
        assert_eq!(relayed[0].credentials.as_deref(), Some(creds.as_str()), "{scheme}");
        assert!(relayed[0].opened);
        let _ = ws.close(None);
    }
}

// ---- The real binary ----------------------------------------------------------------------------

fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_gemini-key-manager"));
    for v in gemini_key_manager::egress::PROXY_ENV.iter().chain(&["UPSTREAM_PROXY", "UPSTREAM_CA_FILE"]) {
        c.env_remove(v);
    }
    c
}

#[test]
fn a_bad_proxy_url_or_ca_file_is_a_startup_error_of_one_line() {
    let dir = support::temp_dir("egress-cli");
    std::fs::write(dir.join("key.txt"), KEYS.join("\n")).unwrap();
    let base = |c: &mut std::process::Command| {
        c.args(["--port", "0", "--log-dir", "", "--key-file"]).arg(dir.join("key.txt"));
    };
    type Case<'a> = (Vec<String>, Vec<(&'a str, String)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--upstream-proxy".into(), "socks4://h:1080".into()], vec![], "--upstream-proxy"),
        (vec!["--upstream-proxy".into(), format!("http://u:{SECRET}@h:nope")], vec![], "bad port"),
        (vec![], vec![("ALL_PROXY", "garbage".to_string())], "ALL_PROXY"),
        (vec![], vec![("HTTPS_PROXY", "https://h:1".to_string())], "HTTPS_PROXY"),
        (vec!["--ca-file".into(), dir.join("missing.pem").display().to_string()], vec![], "--ca-file"),
    ];
    for (args, env, says) in cases {
        let mut c = bin();
        base(&mut c);
        c.args(&args);
        for (k, v) in &env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        // One line of the program's own (the console log may show the same error first).
        assert_eq!(err.lines().filter(|l| l.starts_with("gemini-key-manager: ")).count(), 1, "{err}");
        assert!(err.contains(says), "{says}: {err}");
        assert!(!err.contains(SECRET), "{err}");
    }
    let help = String::from_utf8(bin().arg("--help").output().unwrap().stdout).unwrap();
    assert!(
        help.contains("--upstream-proxy") && help.contains("UPSTREAM_PROXY") && help.contains("socks5h"),
        "{help}"
    );
    assert!(help.contains("--ca-file") && help.contains("UPSTREAM_CA_FILE"), "{help}");
    // A key's own bad proxy= field names its line.
    std::fs::write(dir.join("bad.txt"), format!("{}\n{} proxy=socks4://x:1\n", KEYS[0], KEYS[1])).unwrap();
    let out =
        bin().args(["--port", "0", "--log-dir", "", "--key-file"]).arg(dir.join("bad.txt")).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2: proxy="), "{err}");
}

#[test]
fn the_log_line_of_a_failed_request_says_why_and_never_the_password() {
    let mock = MockUpstream::start(&KEYS);
    let dir = support::temp_dir("egress-log");
    let dead = format!("socks5h://gkm-user:{SECRET}@127.0.0.1:{}", dead_port());
    let (mut child, addr, stderr) =
        support::spawn(&mock, &dir, &["--upstream-proxy", &dead, "--log-level", "debug"]);
    let a = post_json(&format!("http://{addr}{GEN}"), &generate_body());
    assert_eq!(a.status, 502);
    let (_, text) = {
        let a = send("GET", &format!("http://{addr}/status"), &[("x-goog-api-key", TOKEN)], b"");
        (a.status, a.text())
    };
    assert!(!text.contains(SECRET));
    support::signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let console = stderr.join().unwrap().join("\n");
    let file = std::fs::read_to_string(dir.join("gemini-key-manager.log")).unwrap();
    for log in [&console, &file] {
        assert!(!log.contains(SECRET), "{log}");
        let line =
            log.lines().find(|l| l.contains(GEN) && l.contains("status=502")).expect("the request's line");
        assert!(line.contains("proxy unreachable"), "{line}");
        assert!(
            log.contains(&format!("127.0.0.1:{}", dead.rsplit(':').next().unwrap())),
            "the proxy is named"
        );
    }
}
