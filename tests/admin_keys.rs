//! `/admin/keys` through the real proxy (SPEC §13): list, add (an invalid key refused), disable,
//! enable, remove, each written to the key file with comments and order kept and surviving a
//! restart; a hand edit of the key file during an admin change is not lost; the dashboard's forms
//! and their cross-site guard.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use support::mock_upstream::MockUpstream;
use support::*;

const ADMIN: &str = "admin-secret-0000004";
const NEW: &str = "AIzaSyNEWKEY000000000000000000000000000N";
const BAD: &str = "AIzaSyBADKEY000000000000000000000000000X";

fn fp(key: &str) -> String {
    gemini_key_manager::keyfile::fingerprint(key)
}

fn start(mock: &MockUpstream, dir: std::path::PathBuf) -> Proxy {
    Proxy::start_in(dir, &mock.url(), &["# the pool", KEYS[0], KEYS[1], "# last", KEYS[2]], |cfg| {
        cfg.admin_token = Some(ADMIN.into())
    })
}

fn admin(proxy: &Proxy, method: &str, path: &str, body: Option<&Value>) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    send(
        method,
        &format!("{}{path}", proxy.url),
        &[("x-goog-api-key", ADMIN), ("content-type", "application/json")],
        body.as_bytes(),
    )
}

fn listed(proxy: &Proxy) -> Vec<(String, String)> {
    let a = admin(proxy, "GET", "/admin/keys", None);
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["id"].as_str().unwrap().to_string(), k["state"].as_str().unwrap().to_string()))
        .collect()
}

fn state_of(proxy: &Proxy, key: &str) -> Option<String> {
    listed(proxy).into_iter().find(|(id, _)| *id == fp(key)).map(|(_, s)| s)
}

#[test]
fn every_admin_keys_operation_is_written_to_the_key_file_and_survives_a_restart() {
    let mock = MockUpstream::start(&[KEYS[0], KEYS[1], KEYS[2], NEW]);
    let proxy = start(&mock, temp_dir("admin-keys"));
    let key_file = proxy.dir.join("key.txt");
    assert_eq!(listed(&proxy).len(), 3);

    // Add: the valid key joins, the invalid one is refused and reported, nothing else changes.
    let added = admin(
        &proxy,
        "POST",
        "/admin/keys",
        Some(&json!({"keys": [{"key": NEW, "project": "proj-n"}, {"key": BAD}, {"key": KEYS[0]}]})),
    );
    assert_eq!(added.status, 200, "{}", added.text());
    let report = added.json();
    assert_eq!(report["added"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["added"][0]["id"], fp(NEW));
    let refused = report["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2, "{report}");
    assert!(refused[0]["reason"].as_str().unwrap().starts_with("invalid"), "{report}");
    assert_eq!(refused[1]["reason"], "already in the key file");
    assert!(!added.text().contains(NEW) && !added.text().contains(BAD), "a key in an answer");
    assert_eq!(state_of(&proxy, NEW).as_deref(), Some("usable"));
    assert!(state_of(&proxy, BAD).is_none());
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(text, format!("# the pool\n{}\n{}\n# last\n{}\n{NEW} proj-n\n", KEYS[0], KEYS[1], KEYS[2]));

    // Disable: the line becomes a comment, the pool stops using the key.
    let off = admin(&proxy, "POST", &format!("/admin/keys/{}/disable", fp(KEYS[1])), None);
    assert_eq!(off.status, 200, "{}", off.text());
    assert_eq!(state_of(&proxy, KEYS[1]).as_deref(), Some("disabled"));
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.contains(&format!("\n#disabled {}\n# last\n", KEYS[1])), "{text}");
    mock.clear_script();
    let before = mock.request_count();
    for _ in 0..6 {
        assert_eq!(
            post_json(
                &format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url),
                &generate_body()
            )
            .status,
            200
        );
    }
    assert!(
        mock.requests()[before..].iter().all(|r| r.key.as_deref() != Some(KEYS[1])),
        "a disabled key was used"
    );

    // Remove and a key that is not there.
    assert_eq!(admin(&proxy, "DELETE", &format!("/admin/keys/{}", fp(KEYS[2])), None).status, 200);
    assert!(state_of(&proxy, KEYS[2]).is_none());
    assert_eq!(admin(&proxy, "DELETE", &format!("/admin/keys/{}", fp(KEYS[2])), None).status, 404);

    // A restart: the changes are in the file, so they hold.
    let dir = proxy.dir.clone();
    proxy.handle.shutdown().unwrap();
    let proxy = start_again(&mock, dir);
    assert_eq!(state_of(&proxy, KEYS[1]).as_deref(), Some("disabled"));
    assert_eq!(state_of(&proxy, NEW).as_deref(), Some("usable"));
    assert!(state_of(&proxy, KEYS[2]).is_none());

    // Enable: the line is itself again, comments and order as they were.
    assert_eq!(admin(&proxy, "POST", &format!("/admin/keys/{}/enable", fp(KEYS[1])), None).status, 200);
    assert_eq!(state_of(&proxy, KEYS[1]).as_deref(), Some("usable"));
    let text = std::fs::read_to_string(proxy.dir.join("key.txt")).unwrap();
    assert_eq!(text, format!("# the pool\n{}\n{}\n# last\n{NEW} proj-n\n", KEYS[0], KEYS[1]));
}

/// Starts a proxy on an existing directory without rewriting its key file.
fn start_again(mock: &MockUpstream, dir: std::path::PathBuf) -> Proxy {
    let mut cfg = gemini_key_manager::config::Config::for_tests(
        dir.join("key.txt"),
        dir.join("usage.json"),
        &mock.url(),
    );
    cfg.tokens = vec![TOKEN.to_string()];
    cfg.admin_token = Some(ADMIN.into());
    let handle = gemini_key_manager::start(cfg).expect("proxy starts");
    let url = handle.url();
    Proxy { handle, dir, url }
}

/// Regression guard of the rewrite: a key line added by hand while an admin change is in flight
/// (here: while the new key's models.list probe is out) is still in the file afterwards.
#[test]
fn a_hand_edit_during_an_admin_change_is_not_lost() {
    let mock = MockUpstream::start(&[KEYS[0], KEYS[1], KEYS[2], NEW]);
    let proxy = start(&mock, temp_dir("admin-keys-race"));
    let key_file = proxy.dir.join("key.txt");
    let gate: Arc<(Mutex<(bool, bool)>, Condvar)> = Arc::default();
    let g = gate.clone();
    mock.set_script(move |r| {
        if r.key.as_deref() == Some(NEW) && r.path.ends_with("/models") {
            let (lock, cv) = &*g;
            let mut s = lock.lock().unwrap();
            s.0 = true; // the probe has arrived
            cv.notify_all();
            while !s.1 {
                s = cv.wait(s).unwrap();
            }
        }
        None
    });
    let url = proxy.url.clone();
    let adder = std::thread::spawn(move || {
        send(
            "POST",
            &format!("{url}/admin/keys"),
            &[("x-goog-api-key", ADMIN), ("content-type", "application/json")],
            json!({"keys": [{"key": NEW}]}).to_string().as_bytes(),
        )
    });
    {
        let (lock, cv) = &*gate;
        let mut s = lock.lock().unwrap();
        while !s.0 {
            s = cv.wait_timeout(s, Duration::from_secs(10)).unwrap().0;
        }
        // By hand, the way an editor saves: a new file renamed over the old one.
        let mut text = std::fs::read_to_string(&key_file).unwrap();
        text.push_str("# added by hand\nAIzaSyHANDKEY00000000000000000000000000H\n");
        std::fs::write(key_file.with_extension("edit"), &text).unwrap();
        std::fs::rename(key_file.with_extension("edit"), &key_file).unwrap();
        s.1 = true;
        cv.notify_all();
    }
    let answer = adder.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(text.contains("# added by hand\nAIzaSyHANDKEY00000000000000000000000000H\n"), "{text}");
    assert!(text.ends_with(&format!("{NEW}\n")), "{text}");
    // Concurrent admin changes from many threads: every one lands.
    mock.clear_script();
    let ids: Vec<String> = KEYS.iter().map(|k| fp(k)).collect();
    let threads: Vec<_> = ids
        .iter()
        .take(2)
        .map(|id| {
            let (url, id) = (proxy.url.clone(), id.clone());
            std::thread::spawn(move || {
                send("POST", &format!("{url}/admin/keys/{id}/disable"), &[("x-goog-api-key", ADMIN)], b"")
                    .status
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 200);
    }
    let text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        text.contains(&format!("#disabled {}\n", KEYS[0]))
            && text.contains(&format!("#disabled {}\n", KEYS[1])),
        "{text}"
    );
    assert!(text.contains("# added by hand"), "{text}");
}

#[test]
fn the_dashboard_forms_disable_and_enable_and_refuse_cross_site_posts() {
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("admin-dash");
    let tokens = dir.join("tokens.txt");
    std::fs::write(&tokens, "alice tok-alice-0000000001 rpd=100\n").unwrap();
    let proxy = Proxy::start_in(dir, &mock.url(), &KEYS, |cfg| {
        cfg.admin_token = Some(ADMIN.into());
        cfg.tokens_file = Some(tokens);
    });
    // "u:admin-secret-0000004"
    let basic = "Basic dTphZG1pbi1zZWNyZXQtMDAwMDAwNA==";
    let page = send("GET", &format!("{}/dashboard", proxy.url), &[("authorization", basic)], b"");
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("<table class=\"clients\">") && html.contains("alice"), "no clients table");
    assert!(!html.contains("<script"), "the page needs no script");
    let id = fp(KEYS[0]);
    let marker = format!("action=\"/admin/keys/{id}/disable?csrf=");
    let start = html.find(&marker).expect("a disable form") + marker.len();
    let csrf: String = html[start..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    assert_eq!(csrf.len(), 32);
    let form = [
        ("authorization", basic),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "text/html"),
    ];
    let post = |path: &str, extra: &[(&str, &str)]| {
        let mut headers = form.to_vec();
        headers.extend_from_slice(extra);
        send("POST", &format!("{}{path}", proxy.url), &headers, b"")
    };
    // Without the form's token, or from another site: refused, nothing changes.
    assert_eq!(post(&format!("/admin/keys/{id}/disable"), &[]).status, 403);
    let with = format!("/admin/keys/{id}/disable?csrf={csrf}");
    assert_eq!(post(&with, &[("origin", "https://evil.example")]).status, 403);
    assert_eq!(post(&with, &[("sec-fetch-site", "cross-site")]).status, 403);
    assert_eq!(post(&format!("/admin/keys/{id}/disable?csrf={}", "0".repeat(32)), &[]).status, 403);
    assert_eq!(state_of(&proxy, KEYS[0]).as_deref(), Some("usable"));
    // The form itself: 303 back to the page, the key disabled; then enabled from the page.
    let done = post(&with, &[]);
    assert_eq!((done.status, done.header("location")), (303, Some("/dashboard")));
    assert_eq!(state_of(&proxy, KEYS[0]).as_deref(), Some("disabled"));
    let html = send("GET", &format!("{}/dashboard", proxy.url), &[("authorization", basic)], b"").text();
    assert!(html.contains(&format!("action=\"/admin/keys/{id}/enable?csrf={csrf}\"")), "no enable form");
    assert_eq!(post(&format!("/admin/keys/{id}/enable?csrf={csrf}"), &[]).status, 303);
    assert_eq!(state_of(&proxy, KEYS[0]).as_deref(), Some("usable"));
}
