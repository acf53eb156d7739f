//! The Live API through the pool (SPEC §11), with a raw WebSocket client (tungstenite) against
//! the proxy and the scripted Live mock behind it: the echo relayed frame by frame as it comes,
//! only pool keys upstream, tokens booked, close codes both ways, ping, big and fragmented
//! frames, 401 before the upgrade, quota errors at setup served by the next key, the session
//! cap, ephemeral tokens, TLS on the listening side, and nothing left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::mock_live::{MockLive, Refusal};
use support::{KEYS, Proxy, TOKEN, eventually, send, status};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::{CloseFrame, WebSocket};
use tungstenite::{Message, client::IntoClientRequest};

const MODEL: &str = "gemini-live-2.5-flash";
const LIVE: &str = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";

fn proxy(mock: &MockLive) -> Proxy {
    Proxy::start_with(&mock.url(), &KEYS, |_| {})
}

type Ws = WebSocket<TcpStream>;

/// Open a session through the proxy at `path_and_query` with `headers`.
fn connect_with(
    proxy: &Proxy,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{}{path_and_query}", proxy.handle.addr()).into_client_request().unwrap();
    for (n, v) in headers {
        request
            .headers_mut()
            .insert(tungstenite::http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let stream = TcpStream::connect(proxy.handle.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    tungstenite::client::client_with_config(request, stream, Some(config)).map(|(ws, _)| ws).map_err(|e| {
        match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => panic!("interrupted"),
        }
    })
}

/// A session with the client token in `x-goog-api-key`, set up for `MODEL`, `setupComplete` read.
fn open(proxy: &Proxy) -> Ws {
    let mut ws = connect_with(proxy, LIVE, &[("x-goog-api-key", TOKEN)]).expect("upgrade");
    setup(&mut ws);
    ws
}

fn setup(ws: &mut Ws) {
    ws.send(Message::text(json!({"setup": {"model": format!("models/{MODEL}")}}).to_string())).unwrap();
    let first = json_of(&read_data(ws));
    assert!(first.get("setupComplete").is_some(), "{first}");
}

fn turn(text: &str) -> Message {
    Message::text(json!({"clientContent": {"turns": [{"role": "user", "parts": [{"text": text}]}], "turnComplete": true}}).to_string())
}

/// The next data message (pings and pongs skipped).
fn read_data(ws: &mut Ws) -> Vec<u8> {
    loop {
        match ws.read().expect("a message") {
            m @ (Message::Text(_) | Message::Binary(_)) => return m.into_data().to_vec(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => {}
        }
    }
}

fn json_of(data: &[u8]) -> Value {
    serde_json::from_slice(data).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(data)))
}

/// Read one turn: the text pieces with the time each arrived, and the turn's usage.
fn read_turn(ws: &mut Ws) -> (Vec<(String, Instant)>, Value) {
    let mut pieces = Vec::new();
    loop {
        let v = json_of(&read_data(ws));
        if let Some(t) = v.pointer("/serverContent/modelTurn/parts/0/text").and_then(Value::as_str) {
            pieces.push((t.to_string(), Instant::now()));
        }
        if v.pointer("/serverContent/turnComplete") == Some(&json!(true)) {
            return (pieces, v["usageMetadata"].clone());
        }
    }
}

/// The close frame the peer sends next.
fn read_close(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match ws.read() {
            Ok(Message::Close(c)) => return c,
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

fn key_tokens(proxy: &Proxy, key: &str) -> u64 {
    let id = gemini_key_manager::keyfile::fingerprint(key);
    let st = status(proxy);
    let k = st["keys"].as_array().unwrap().iter().find(|k| k["id"] == json!(id)).unwrap().clone();
    k["models"][MODEL]["tokens"].as_u64().unwrap_or(0)
}

#[test]
fn the_echo_arrives_in_several_frames_as_the_upstream_sends_them_with_a_pool_key_and_tokens_booked() {
    let mock = MockLive::start();
    mock.set_echo(4, Duration::from_millis(150));
    let proxy = proxy(&mock);
    let mut ws = open(&proxy);
    let sent = Instant::now();
    ws.send(turn("hello from the live client")).unwrap();
    let (pieces, usage) = read_turn(&mut ws);
    assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), "hello from the live client");
    assert_eq!(pieces.len(), 4, "{pieces:?}");
    // Relayed as they came: the first piece long before the last.
    let first = pieces[0].1.duration_since(sent);
    let last = pieces[3].1.duration_since(sent);
    assert!(last - first >= Duration::from_millis(350), "first {first:?}, last {last:?}");
    assert_eq!(usage["totalTokenCount"], json!(mock.tokens_per_turn()));
    let live = status(&proxy)["live"].clone();
    assert_eq!(live["open"], json!(1), "{live}");
    assert_eq!(live["sessions"][0]["model"], json!(MODEL));
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).unwrap();
    let _ = read_close(&mut ws);
    let seen = mock.wait_ended(1, Duration::from_secs(10));
    let key = seen[0].key.clone().expect("a key upstream");
    assert!(KEYS.contains(&key.as_str()), "upstream saw {key}");
    assert_eq!(seen[0].client_close, Some(1000));
    assert_eq!(seen[0].setup.as_ref().unwrap()["setup"]["model"], json!(format!("models/{MODEL}")));
    assert_eq!(key_tokens(&proxy, &key), mock.tokens_per_turn());
    eventually(Duration::from_secs(5), "the session leaves /status", || {
        status(&proxy)["live"]["open"] == json!(0)
    });
    let metrics = send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text();
    assert!(metrics.contains("gkm_live_sessions_total 1"), "{metrics}");
    assert!(metrics.contains("gkm_live_frames_total{direction=\"upstream_to_client\"} 6"), "{metrics}");
}

#[test]
fn the_python_sdks_double_slash_and_the_js_sdks_key_in_the_query_both_work_and_the_token_stays_home() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let mut ws = connect_with(&proxy, &format!("/{LIVE}?key={TOKEN}&alt=x"), &[]).expect("upgrade");
    setup(&mut ws);
    ws.send(turn("hi")).unwrap();
    read_turn(&mut ws);
    drop(ws);
    let seen = mock.wait_ended(1, Duration::from_secs(10));
    assert_eq!(seen[0].path, LIVE);
    assert_eq!(seen[0].query, "alt=x");
    assert_ne!(seen[0].key.as_deref(), Some(TOKEN));
}

#[test]
fn a_wrong_or_missing_token_is_401_before_the_upgrade() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    for headers in
        [vec![("x-goog-api-key", "wrong")], vec![], vec![("authorization", "Token auth_tokens/unknown")]]
    {
        match connect_with(&proxy, LIVE, &headers) {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 401),
            other => panic!("expected 401, got {:?}", other.map(|_| ())),
        }
    }
    assert!(mock.sessions().is_empty());
}

#[test]
fn a_quota_error_at_setup_is_served_by_the_next_key_and_the_keys_are_parked() {
    let mock = MockLive::start();
    mock.refuse(KEYS[0], Refusal::Http { status: 429, body: support::mock_live::quota_per_day_body(MODEL) });
    mock.refuse(
        KEYS[1],
        Refusal::Close {
            code: 1011,
            reason: "You exceeded your current quota, please check your plan.".into(),
        },
    );
    let proxy = proxy(&mock);
    let mut ws = open(&proxy);
    ws.send(turn("still here")).unwrap();
    let (pieces, _) = read_turn(&mut ws);
    assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), "still here");
    let seen = mock.sessions();
    assert_eq!(seen.last().unwrap().key.as_deref(), Some(KEYS[2]), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The next session goes straight to the key that works.
    let mut again = open(&proxy);
    assert_eq!(mock.sessions().len(), 4);
    assert_eq!(mock.sessions()[3].key.as_deref(), Some(KEYS[2]));
    again.close(None).unwrap();
    let st = status(&proxy);
    let state = |key: &str| {
        let id = gemini_key_manager::keyfile::fingerprint(key);
        st["keys"].as_array().unwrap().iter().find(|k| k["id"] == json!(id)).unwrap()["state"].clone()
    };
    assert_eq!(state(KEYS[0]), json!("parked"));
    assert_eq!(state(KEYS[1]), json!("cooling"));
}

#[test]
fn when_every_key_is_out_of_quota_the_client_gets_try_again_later_and_no_frame() {
    let mock = MockLive::start();
    for k in KEYS {
        mock.refuse(k, Refusal::Http { status: 429, body: support::mock_live::quota_per_day_body(MODEL) });
    }
    let proxy = proxy(&mock);
    let mut ws = connect_with(&proxy, LIVE, &[("x-goog-api-key", TOKEN)]).unwrap();
    ws.send(Message::text(json!({"setup": {"model": format!("models/{MODEL}")}}).to_string())).unwrap();
    let close = read_close(&mut ws).expect("a close frame");
    assert_eq!(u16::from(close.code), 1013, "{close:?}");
    assert!(close.reason.contains(MODEL), "{close:?}");
}

#[test]
fn close_codes_and_reasons_pass_both_ways() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let mut ws = open(&proxy);
    ws.send(Message::text("close:4003:upstream says goodbye")).unwrap();
    let close = read_close(&mut ws).expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (4003, "upstream says goodbye"));
    let mut ws = open(&proxy);
    ws.close(Some(CloseFrame { code: CloseCode::from(4001), reason: "client done".into() })).unwrap();
    let _ = read_close(&mut ws);
    let seen = mock.wait_ended(2, Duration::from_secs(10));
    assert!(seen.iter().any(|s| s.client_close == Some(4001)), "{seen:?}");
}

#[test]
fn a_ping_is_answered_with_its_pong() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let mut ws = open(&proxy);
    ws.send(Message::Ping(b"are you there".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

#[test]
fn frames_up_to_16_mib_pass_both_ways_fragmented_ones_too_and_a_bigger_one_is_refused_with_1009() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let mut ws = open(&proxy);
    let big = format!("len:{}", "a".repeat(12 << 20));
    ws.send(Message::text(big.clone())).unwrap();
    let (pieces, _) = read_turn(&mut ws);
    assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), format!("len={}", big.len()));
    ws.send(Message::text(format!("big:{}", 15 << 20))).unwrap();
    assert_eq!(read_data(&mut ws).len(), 15 << 20);
    // One turn in three fragments.
    let text = turn("in three pieces").into_data();
    let thirds = [&text[..10], &text[10..20], &text[20..]];
    ws.write(Message::Frame(Frame::message(thirds[0].to_vec(), OpCode::Data(Data::Text), false))).unwrap();
    ws.write(Message::Frame(Frame::message(thirds[1].to_vec(), OpCode::Data(Data::Continue), false)))
        .unwrap();
    ws.write(Message::Frame(Frame::message(thirds[2].to_vec(), OpCode::Data(Data::Continue), true))).unwrap();
    ws.flush().unwrap();
    let (pieces, _) = read_turn(&mut ws);
    assert_eq!(pieces.iter().map(|(t, _)| t.as_str()).collect::<String>(), "in three pieces");
    // Refused as soon as its header is read: the rest may meet a closed socket.
    let _ = ws.send(Message::text("x".repeat((16 << 20) + 1)));
    match ws.read() {
        Ok(Message::Close(Some(close))) => assert_eq!(u16::from(close.code), 1009),
        Ok(other) => panic!("expected a close, got {other:?}"),
        Err(_) => {} // the connection was reset before the close frame could be read
    }
    let seen = mock.wait_ended(1, Duration::from_secs(10));
    assert_eq!(seen[0].client_close, Some(1001));
}

#[test]
fn two_sessions_at_once_each_get_their_own_echo() {
    let mock = MockLive::start();
    mock.set_echo(3, Duration::from_millis(100));
    let proxy = proxy(&mock);
    let (mut a, mut b) = (open(&proxy), open(&proxy));
    a.send(turn("first session")).unwrap();
    b.send(turn("second session")).unwrap();
    let joined = |ws: &mut Ws| read_turn(ws).0.iter().map(|(t, _)| t.clone()).collect::<String>();
    assert_eq!(joined(&mut b), "second session");
    assert_eq!(joined(&mut a), "first session");
    assert_eq!(status(&proxy)["live"]["open"], json!(2));
}

#[test]
fn with_one_worker_and_a_session_open_a_normal_request_is_still_answered() {
    let mock = MockLive::start();
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.workers = 1);
    let _a = open(&proxy);
    let _b = open(&proxy);
    let st = status(&proxy);
    assert_eq!(st["live"]["open"], json!(2));
}

#[test]
fn past_max_live_sessions_the_upgrade_is_refused_with_503() {
    let mock = MockLive::start();
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.max_live_sessions = 1);
    let mut first = open(&proxy);
    match connect_with(&proxy, LIVE, &[("x-goog-api-key", TOKEN)]) {
        Err(tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 503);
            assert!(r.headers().get("retry-after").is_some());
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
    first.close(None).unwrap();
    let _ = read_close(&mut first);
    eventually(Duration::from_secs(5), "the place is free again", || {
        status(&proxy)["live"]["open"] == json!(0)
    });
    let _second = open(&proxy);
}

#[test]
fn an_ephemeral_token_the_proxy_issued_is_tunnelled_without_the_client_token() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let made = send(
        "POST",
        &format!("{}/v1alpha/auth_tokens", proxy.url),
        &[("x-goog-api-key", TOKEN), ("content-type", "application/json")],
        br#"{"uses": 1}"#,
    );
    assert_eq!(made.status, 200, "{}", made.text());
    let name = made.json()["name"].as_str().unwrap().to_string();
    let constrained =
        LIVE.replace("v1beta", "v1alpha").replace("BidiGenerateContent", "BidiGenerateContentConstrained");
    let auth = format!("Token {name}");
    let mut ws = connect_with(&proxy, &constrained, &[("authorization", &auth)]).expect("upgrade");
    setup(&mut ws);
    ws.send(turn("ephemeral")).unwrap();
    read_turn(&mut ws);
    // The JS SDK's form: ?access_token=.
    let mut js = connect_with(&proxy, &format!("{constrained}?access_token={name}"), &[]).expect("upgrade");
    setup(&mut js);
    let seen = mock.sessions();
    let live: Vec<_> = seen.iter().filter(|s| s.path.contains("Constrained")).collect();
    assert_eq!(live[0].authorization.as_deref(), Some(auth.as_str()));
    assert_eq!(live[0].key, None);
    assert_eq!(live[1].query, format!("access_token={name}"));
    assert!(seen.iter().all(|s| s.key.as_deref() != Some(TOKEN)));
}

#[test]
fn a_key_the_upstream_echoes_in_a_frame_is_masked() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let mut ws = open(&proxy);
    ws.send(turn("leak")).unwrap();
    let (pieces, _) = read_turn(&mut ws);
    let text: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
    assert!(text.starts_with("the key AIza"), "{text}");
    assert!(KEYS.iter().all(|k| !text.contains(k)), "{text}");
}

#[test]
fn a_client_that_vanishes_frees_the_session_and_its_upstream_at_once() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let ws = open(&proxy);
    drop(ws); // no close frame: the TCP connection just ends
    let seen = mock.wait_ended(1, Duration::from_secs(5));
    assert_eq!(seen[0].client_close, Some(1001));
    eventually(Duration::from_secs(5), "the session is gone", || proxy.handle.app.live.open() == 0);
}

#[test]
fn a_plain_get_on_a_live_route_is_told_to_upgrade() {
    let mock = MockLive::start();
    let proxy = proxy(&mock);
    let answer = send("GET", &format!("{}{LIVE}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(answer.status, 400, "{}", answer.text());
}
