//! Named clients through the real proxy (SPEC §13): every surface books to its client, budgets
//! (429 in the surface's shape, no key used), model patterns (403), hot reload, a corrupt tokens
//! file, the admin token's gate, and a 2,000-request run from four clients booked exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::mock_upstream::{MockUpstream, Reply};
use support::*;

const ALICE: &str = "tok-alice-0000000001";
const BOB: &str = "tok-bob-00000000002";
const OPS: &str = "tok-ops-00000000003";
const ADMIN: &str = "admin-secret-0000004";
const FLASH: &str = "gemini-2.5-flash";

fn proxy_with_tokens(mock: &MockUpstream, lines: &str, admin: Option<&str>) -> Proxy {
    let dir = temp_dir("clients");
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, lines).unwrap();
    let admin = admin.map(str::to_string);
    Proxy::start_in(dir, &mock.url(), &KEYS, move |cfg| {
        cfg.tokens_file = Some(tokens);
        cfg.admin_token = admin;
    })
}

fn generate(proxy: &Proxy, token: &str, model: &str) -> Answer {
    send(
        "POST",
        &format!("{}/v1beta/models/{model}:generateContent", proxy.url),
        &[("x-goog-api-key", token), ("content-type", "application/json")],
        generate_body().to_string().as_bytes(),
    )
}

fn status(proxy: &Proxy, token: &str) -> Value {
    let a = send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", token)], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()
}

fn client_view(status: &Value, name: &str) -> Value {
    status["clients"].as_array().unwrap().iter().find(|c| c["name"] == name).cloned().unwrap_or(Value::Null)
}

#[test]
fn every_surface_books_to_its_client_and_only_to_it() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy_with_tokens(&mock, &format!("alice {ALICE}\nbob {BOB}\n"), None);
    let url = &proxy.url;
    let chat = json!({"model": FLASH, "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {ALICE}");
    fn json_headers<'a>(auth: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
        vec![auth, ("content-type", "application/json")]
    }
    let answers = [
        generate(&proxy, ALICE, FLASH),
        send(
            "POST",
            &format!("{url}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse&key={ALICE}"),
            &[("content-type", "application/json")],
            generate_body().to_string().as_bytes(),
        ),
        send(
            "POST",
            &format!("{url}/v1/chat/completions"),
            &json_headers(("authorization", &bearer)),
            chat.to_string().as_bytes(),
        ),
        send(
            "POST",
            &format!("{url}/v1/responses"),
            &json_headers(("authorization", &bearer)),
            json!({"model": FLASH, "input": "hi"}).to_string().as_bytes(),
        ),
        send(
            "POST",
            &format!("{url}/v1/messages"),
            &json_headers(("x-api-key", ALICE)),
            json!({"model": FLASH, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
                .to_string()
                .as_bytes(),
        ),
    ];
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "surface {i}: {}", a.text());
    }
    let s = status(&proxy, BOB);
    let alice = client_view(&s, "alice");
    // Five requests of alice's (the Anthropic route's models.get for its max_tokens clamp is
    // booked too: it is a request made for her).
    assert!(alice["requests"].as_u64().unwrap() >= 5, "{alice}");
    assert!(alice["tokens"].as_u64().unwrap() > 0, "{alice}");
    assert!(alice["models"][FLASH]["requests"].as_u64().unwrap() >= 5, "{alice}");
    assert_eq!(client_view(&s, "bob")["requests"], 0);
    // The books per client add up to the pool's books per key.
    let keys: u64 = s["keys"].as_array().unwrap().iter().map(|k| k["requests"].as_u64().unwrap()).sum();
    assert_eq!(alice["requests"].as_u64().unwrap(), keys);
    // /metrics labels them by client; the usage file names them, without any token.
    let m = send("GET", &format!("{url}/metrics"), &[("x-goog-api-key", BOB)], b"").text();
    assert!(m.contains(&format!("gkm_client_requests_today{{client=\"alice\",model=\"{FLASH}\"}}")), "{m}");
    proxy.handle.flush().unwrap();
    let file = std::fs::read_to_string(proxy.dir.join("usage.json")).unwrap();
    let usage: Value = serde_json::from_str(&file).unwrap();
    assert!(usage["clients"]["alice"][FLASH]["requests"].as_u64().unwrap() >= 5, "{file}");
    assert!(!file.contains(ALICE) && !file.contains(BOB), "a token reached the usage file");
    // A restart takes the books back.
    let dir = proxy.dir.clone();
    proxy.handle.shutdown().unwrap();
    let again = Proxy::start_in(dir.clone(), &mock.url(), &KEYS, |cfg| {
        cfg.tokens_file = Some(dir.join("tokens.txt"))
    });
    assert_eq!(client_view(&status(&again, BOB), "alice")["requests"], alice["requests"]);
}

#[test]
fn a_spent_budget_is_a_429_in_each_surfaces_shape_and_no_key_is_used() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy_with_tokens(&mock, &format!("alice {ALICE} rpd=2\nbob {BOB} tpd=1\n"), None);
    assert_eq!(generate(&proxy, ALICE, FLASH).status, 200);
    assert_eq!(generate(&proxy, ALICE, FLASH).status, 200);
    let seen = mock.request_count();
    let native = generate(&proxy, ALICE, FLASH);
    assert_eq!(native.status, 429);
    assert_eq!(native.json()["error"]["status"], "RESOURCE_EXHAUSTED");
    let retry: u64 = native.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=25 * 3600).contains(&retry), "{retry}");
    let chat = json!({"model": FLASH, "messages": [{"role": "user", "content": "hi"}]});
    let bearer = format!("Bearer {ALICE}");
    let openai = send(
        "POST",
        &format!("{}/v1/chat/completions", proxy.url),
        &[("authorization", &bearer), ("content-type", "application/json")],
        chat.to_string().as_bytes(),
    );
    assert_eq!(openai.status, 429);
    assert_eq!(openai.json()["error"]["code"], "client_budget_exceeded");
    assert!(openai.header("retry-after").is_some());
    let anthropic = send(
        "POST",
        &format!("{}/v1/messages", proxy.url),
        &[("x-api-key", ALICE), ("content-type", "application/json")],
        json!({"model": FLASH, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
            .as_bytes(),
    );
    assert_eq!((anthropic.status, anthropic.json()["type"].as_str()), (429, Some("error")));
    assert_eq!(mock.request_count(), seen, "a refused request used a key");
    // Tokens: bob's first request spends his one token; the next is refused.
    assert_eq!(generate(&proxy, BOB, FLASH).status, 200);
    assert_eq!(generate(&proxy, BOB, FLASH).status, 429);
    let s = status(&proxy, BOB);
    assert_eq!(client_view(&s, "alice")["requests"], 2, "refusals are not booked");
    assert_eq!(client_view(&s, "alice")["state"], "over_rpd");
    assert_eq!(client_view(&s, "bob")["state"], "over_tpd");
    let m = send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", BOB)], b"").text();
    assert!(m.contains("gkm_client_refused_total{client=\"alice\",reason=\"rpd\"} 3"), "{m}");
}

#[test]
fn a_model_outside_the_patterns_is_a_403_before_any_key() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy_with_tokens(&mock, &format!("alice {ALICE} models=gemini-2.5-*|gemma-*\n"), None);
    assert_eq!(generate(&proxy, ALICE, FLASH).status, 200);
    let seen = mock.request_count();
    let refused = generate(&proxy, ALICE, "gemini-1.5-pro");
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.json()["error"]["status"], "PERMISSION_DENIED");
    assert!(refused.text().contains("gemini-1.5-pro"));
    assert_eq!(mock.request_count(), seen);
    // A request without a model (models.list) is not a model outside the patterns.
    let list = send("GET", &format!("{}/v1beta/models", proxy.url), &[("x-goog-api-key", ALICE)], b"");
    assert_eq!(list.status, 200);
}

#[test]
fn the_tokens_file_reloads_and_a_corrupt_one_keeps_the_old_clients() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy_with_tokens(&mock, &format!("alice {ALICE}\n"), None);
    let tokens = proxy.dir.join("tokens.txt");
    assert_eq!(generate(&proxy, BOB, FLASH).status, 401);
    std::fs::write(&tokens, format!("# now bob too\nalice {ALICE}\nbob {BOB} rpd=1\n")).unwrap();
    eventually(Duration::from_secs(10), "bob joins by the watcher", || {
        generate(&proxy, BOB, FLASH).status != 401
    });
    assert_eq!(generate(&proxy, BOB, FLASH).status, 429, "bob's new budget applies");
    // A corrupt file: the reload is refused with an error, the old clients stay.
    std::fs::write(&tokens, format!("alice {ALICE} rpd=lots\nbob\n")).unwrap();
    let err = gemini_key_manager::background::reload_tokens(&proxy.handle.app, "test").unwrap_err();
    assert!(err.contains("keeping the current 2 clients") && err.contains("line 1"), "{err}");
    assert!(!err.contains(ALICE), "{err}");
    assert_eq!(generate(&proxy, ALICE, FLASH).status, 200);
    assert_eq!(generate(&proxy, BOB, FLASH).status, 429);
    // A plain --token is not used once a tokens file is set.
    assert_eq!(generate(&proxy, TOKEN, FLASH).status, 401);
}

#[test]
fn the_admin_token_gates_status_metrics_dashboard_and_admin_routes() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = proxy_with_tokens(&mock, &format!("alice {ALICE}\nops {OPS} admin\n"), Some(ADMIN));
    let get = |path: &str, headers: &[(&str, &str)]| {
        send("GET", &format!("{}{path}", proxy.url), headers, b"").status
    };
    // "u:admin-secret-0000004" and "u:tok-alice-0000000001"
    let basic_admin = format!("Basic {}", b64(&format!("u:{ADMIN}")));
    let basic_alice = format!("Basic {}", b64(&format!("u:{ALICE}")));
    for path in ["/status", "/metrics", "/dashboard", "/admin/keys"] {
        assert_eq!(get(path, &[("x-goog-api-key", ALICE)]), 401, "{path} with a client token");
        assert_eq!(get(path, &[("authorization", &basic_alice)]), 401, "{path} with a client's Basic");
        assert_eq!(get(path, &[]), 401, "{path} without a token");
        assert_eq!(get(path, &[("x-goog-api-key", ADMIN)]), 200, "{path} with --admin-token");
        assert_eq!(get(path, &[("authorization", &basic_admin)]), 200, "{path} with Basic");
        assert_eq!(get(path, &[("x-goog-api-key", OPS)]), 200, "{path} with an admin client");
    }
    // --admin-token alone is not a client; an admin client is.
    assert_eq!(generate(&proxy, ADMIN, FLASH).status, 401);
    assert_eq!(generate(&proxy, OPS, FLASH).status, 200);
}

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The done-when run of issue 17: 2,000 requests from four named clients, concurrently; each
/// client's books equal what the mock answered for it, request for request and token for token.
#[test]
fn two_thousand_requests_from_four_clients_book_exactly_what_the_mock_saw() {
    let mock = MockUpstream::start(&KEYS);
    let names = ["c0", "c1", "c2", "c3"];
    let lines: String = names.iter().map(|n| format!("{n} tok-{n}-secret-000000\n")).collect();
    let proxy = proxy_with_tokens(&mock, &lines, Some(ADMIN));
    // The mock answers each generate with a token count of its own choosing and notes it under
    // the client the body names.
    let seen: Arc<Mutex<BTreeMap<String, (u64, u64)>>> = Arc::default();
    let noted = seen.clone();
    mock.set_script(move |r| {
        let body = r.json()?;
        let text = body.pointer("/contents/0/parts/0/text")?.as_str()?.to_string();
        let (client, n) = text.split_once(' ')?;
        let tokens = n.parse::<u64>().ok()? % 50 + 1;
        let mut seen = noted.lock().unwrap();
        let e = seen.entry(client.to_string()).or_default();
        e.0 += 1;
        e.1 += tokens;
        Some(Reply::json(
            200,
            json!({"candidates": [{"content": {"parts": [{"text": "ok"}], "role": "model"}, "index": 0, "finishReason": "STOP"}],
                   "usageMetadata": {"totalTokenCount": tokens}}),
        ))
    });
    let url = proxy.url.clone();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = client();
                for i in 0..250 {
                    let name = ["c0", "c1", "c2", "c3"][(t + i) % 4];
                    let body = json!({"contents": [{"role": "user", "parts": [{"text": format!("{name} {}", t * 1000 + i)}]}]});
                    let token = format!("tok-{name}-secret-000000");
                    let resp = agent
                        .post(&format!("{url}/v1beta/models/{FLASH}:generateContent"))
                        .header("x-goog-api-key", &token)
                        .header("content-type", "application/json")
                        .send(body.to_string())
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 200);
                    let _ = resp.into_body().read_to_vec();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = status(&proxy, ADMIN);
    let seen = seen.lock().unwrap().clone();
    let mut total = 0;
    for name in names {
        let c = client_view(&s, name);
        let (requests, tokens) = seen[name];
        total += requests;
        assert_eq!(
            (c["requests"].as_u64().unwrap(), c["tokens"].as_u64().unwrap()),
            (requests, tokens),
            "{name}"
        );
        eprintln!("booked {name}: {requests} requests, {tokens} tokens (mock: {:?})", seen[name]);
    }
    assert_eq!(total, 2000);
}

#[test]
fn a_fallback_model_outside_a_clients_patterns_does_not_serve_it() {
    const PRO: &str = "gemini-2.5-pro";
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| {
        (r.model().as_deref() == Some(PRO)).then(|| support::mock_upstream::quota_per_day_429(PRO))
    });
    let dir = temp_dir("clients-fallback");
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, format!("alice {ALICE} models=gemini-2.5-pro\nbob {BOB}\n")).unwrap();
    let proxy = Proxy::start_in(dir, &mock.url(), &KEYS, move |cfg| {
        cfg.tokens_file = Some(tokens);
        cfg.fallbacks = gemini_key_manager::fallback::Fallbacks::parse(&format!("{PRO}>{FLASH}")).unwrap();
    });
    // Alice may use pro only: when pro is used up she gets the pool's 503, not flash.
    let a = generate(&proxy, ALICE, PRO);
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.header("x-gemini-model-fallback"), None);
    assert!(mock.requests().iter().all(|r| r.model().as_deref() == Some(PRO)), "flash was never asked");
    // Bob has no patterns: the chain serves him.
    let a = generate(&proxy, BOB, PRO);
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.header("x-gemini-model-fallback"), Some(format!("{PRO}>{FLASH}").as_str()));
    let st = status(&proxy, BOB);
    let clients = st["clients"].as_array().unwrap();
    let alice = clients.iter().find(|c| c["name"] == "alice").unwrap();
    assert_eq!(alice["requests"], 0, "{alice}");
}
