//! The key pool through the real proxy: each row of SPEC §5's outcome table, project sharing,
//! the all-exhausted 503, re-probe, reload, affinity of files and uploads, and the books on disk.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::mock_upstream::{
    internal_500, key_invalid_400, overloaded_503, quota_per_day_429, quota_per_minute_429,
    rate_limited_429_no_details, suspended_403,
};
use support::*;

const FLASH: &str = "gemini-2.5-flash";
const PRO: &str = "gemini-2.5-pro";

fn key_status(proxy: &Proxy, key: &str) -> Value {
    let fp = gemini_key_manager::keyfile::fingerprint(key);
    status(proxy)["keys"].as_array().unwrap().iter().find(|k| k["id"] == fp).cloned().expect("key in /status")
}

/// The key must be cooling for FLASH; seconds until its cooldown ends.
fn cooling_seconds_left(proxy: &Proxy, key: &str) -> i64 {
    let k = key_status(proxy, key);
    assert_eq!(k["state"], "cooling");
    let until =
        chrono::DateTime::parse_from_rfc3339(k["models"][FLASH]["cooling_until"].as_str().unwrap()).unwrap();
    (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
}

fn keys_seen(mock: &MockUpstream) -> Vec<String> {
    mock.requests().iter().map(|r| r.key.clone().unwrap_or_default()).collect()
}

#[test]
fn a_per_day_429_parks_that_key_for_that_model_until_the_reset_and_retries() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], quota_per_day_429(FLASH));
    let proxy = Proxy::start(&mock);
    for _ in 0..6 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    let seen = keys_seen(&mock);
    assert_eq!(seen.iter().filter(|k| *k == KEYS[0]).count(), 1, "KEYS[0] tried once, then parked: {seen:?}");
    let k = key_status(&proxy, KEYS[0]);
    assert_eq!(k["state"], "parked");
    let parked_until = k["models"][FLASH]["parked_until"].as_str().unwrap().to_string();
    assert_eq!(parked_until, status(&proxy)["next_reset"].as_str().unwrap(), "parked until the next reset");
    // Another model still uses the key.
    mock.clear_key_reply(KEYS[0]);
    let before = mock.request_count();
    for _ in 0..3 {
        assert_eq!(generate(&proxy, PRO).status, 200);
    }
    assert!(mock.requests()[before..].iter().any(|r| r.key.as_deref() == Some(KEYS[0])));
}

#[test]
fn a_per_minute_429_cools_the_key_down_for_the_retry_delay() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[1], quota_per_minute_429(FLASH, "40s"));
    let proxy = Proxy::start(&mock);
    for _ in 0..6 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    assert_eq!(keys_seen(&mock).iter().filter(|k| *k == KEYS[1]).count(), 1);
    let left = cooling_seconds_left(&proxy, KEYS[1]);
    assert!((30..=41).contains(&left), "cooling for the RetryInfo delay, {left} s left");
}

#[test]
fn a_429_without_details_cools_down_for_60_seconds() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[2], rate_limited_429_no_details());
    let proxy = Proxy::start(&mock);
    for _ in 0..6 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    let left = cooling_seconds_left(&proxy, KEYS[2]);
    assert!((50..=61).contains(&left), "{left}");
}

#[test]
fn invalid_and_suspended_keys_are_disabled_and_the_request_retried() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], key_invalid_400());
    mock.set_key_reply(KEYS[1], suspended_403());
    let proxy = Proxy::start(&mock);
    for _ in 0..5 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    for k in &KEYS[..2] {
        assert_eq!(key_status(&proxy, k)["state"], "disabled");
        assert!(key_status(&proxy, k)["disabled_reason"].is_string());
    }
    let h = send("GET", &format!("{}/healthz", proxy.url), &[], b"");
    assert_eq!(h.json(), json!({"status": "ok", "keys_usable": 1, "keys_total": 3}));
    // Disabled for every model, not only this one.
    let before = mock.request_count();
    assert_eq!(generate(&proxy, PRO).status, 200);
    assert_eq!(mock.requests()[before].key.as_deref(), Some(KEYS[2]));
}

#[test]
fn server_errors_are_retried_and_change_nothing() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], overloaded_503());
    mock.set_key_reply(KEYS[1], internal_500());
    let proxy = Proxy::start(&mock);
    for _ in 0..4 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    for k in KEYS {
        assert_eq!(key_status(&proxy, k)["state"], "usable");
    }
    // When every key fails that way, the last answer comes back (with Retry-After on a 503).
    mock.set_key_reply(KEYS[2], overloaded_503());
    mock.set_key_reply(KEYS[1], overloaded_503());
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503);
    assert!(a.header("retry-after").is_some());
    assert_eq!(a.json()["error"]["status"], "UNAVAILABLE");
}

#[test]
fn keys_of_one_project_share_their_parks() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], quota_per_day_429(FLASH));
    mock.set_key_reply(KEYS[1], quota_per_day_429(FLASH));
    let lines = [format!("{} proj-a", KEYS[0]), format!("{} proj-a", KEYS[1]), KEYS[2].to_string()];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let proxy = Proxy::start_with(&mock.url(), &lines, |_| {});
    for _ in 0..6 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    let seen = keys_seen(&mock);
    let project_a = seen.iter().filter(|k| *k == KEYS[0] || *k == KEYS[1]).count();
    assert_eq!(project_a, 1, "one per-day 429 parks the whole project: {seen:?}");
    assert_eq!(key_status(&proxy, KEYS[0])["state"], "parked");
    assert_eq!(key_status(&proxy, KEYS[1])["state"], "parked");
    assert_eq!(key_status(&proxy, KEYS[0])["project"], "proj-a");
}

#[test]
fn when_every_key_is_used_up_the_answer_is_503_with_retry_after_naming_model_and_time() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_script(|r| r.path.ends_with(":generateContent").then(|| quota_per_minute_429(FLASH, "30s")));
    let proxy = Proxy::start(&mock);
    // The request whose own attempts use the last key up.
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503, "{}", a.text());
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((20..=31).contains(&retry), "{retry}");
    let msg = a.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(FLASH), "{msg}");
    assert_eq!(mock.request_count(), 3, "each key tried once");
    // Later requests are answered at once without going upstream.
    let a = generate(&proxy, FLASH);
    assert_eq!(a.status, 503);
    assert!(a.json()["error"]["message"].as_str().unwrap().contains('T'), "names the time");
    assert_eq!(mock.request_count(), 3);
    // models.list needs no model quota: still served.
    let m = send("GET", &format!("{}/v1beta/models", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(m.status, 200);
}

#[test]
fn disabled_keys_come_back_when_a_reprobe_succeeds() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_valid_keys(&KEYS[1..]);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.reprobe_interval = Duration::from_secs(1));
    for _ in 0..3 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    assert_eq!(key_status(&proxy, KEYS[0])["state"], "disabled");
    mock.set_valid_keys(&KEYS); // the operator fixed the key at Google's end
    eventually(Duration::from_secs(15), "the re-probe re-enables the key", || {
        key_status(&proxy, KEYS[0])["state"] == "usable"
    });
    let probes: Vec<_> = mock.requests().into_iter().filter(|r| r.path == "/v1beta/models").collect();
    assert!(probes.iter().any(|r| r.key.as_deref() == Some(KEYS[0])), "models.list with that key");
}

#[test]
fn the_key_file_is_reloaded_when_it_changes_keeping_the_books_of_keys_that_stay() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS[..2], |_| {});
    for _ in 0..4 {
        assert_eq!(generate(&proxy, FLASH).status, 200);
    }
    let key_file = proxy.dir.join("key.txt");
    std::fs::write(&key_file, format!("{}\n{}\n", KEYS[1], KEYS[2])).unwrap();
    eventually(Duration::from_secs(15), "the new key joins", || {
        status(&proxy)["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == gemini_key_manager::keyfile::fingerprint(KEYS[2]))
    });
    let s = status(&proxy);
    assert_eq!(s["keys"].as_array().unwrap().len(), 2, "KEYS[0] left the pool");
    assert_eq!(key_status(&proxy, KEYS[1])["requests"], 2, "KEYS[1] kept its count");
    // An emptied or deleted file is refused (the same reload the watcher and SIGHUP run): the
    // pool stays.
    let app = &proxy.handle.app;
    std::fs::write(&key_file, "# nothing\n").unwrap();
    let err = gemini_key_manager::background::reload_keys(app, "test").unwrap_err();
    assert!(err.contains("holds no keys"), "{err}");
    assert_eq!(status(&proxy)["keys"].as_array().unwrap().len(), 2);
    std::fs::remove_file(&key_file).unwrap();
    assert!(gemini_key_manager::background::reload_keys(app, "test").is_err());
    assert_eq!(status(&proxy)["keys"].as_array().unwrap().len(), 2);
    assert_eq!(generate(&proxy, FLASH).status, 200, "still serving with the old pool");
}

#[test]
fn uploads_files_and_caches_follow_the_key_that_made_them() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    for round in 0..3 {
        // 1. start a resumable upload through the proxy
        let start = send(
            "POST",
            &format!("{}/upload/v1beta/files", proxy.url),
            &[
                ("x-goog-api-key", TOKEN),
                ("x-goog-upload-protocol", "resumable"),
                ("x-goog-upload-command", "start"),
                ("x-goog-upload-header-content-type", "image/png"),
                ("content-type", "application/json"),
            ],
            br#"{"file":{"display_name":"pic"}}"#,
        );
        assert_eq!(start.status, 200, "{}", start.text());
        let upload_url = start.header("x-goog-upload-url").unwrap().to_string();
        assert!(upload_url.starts_with(&proxy.url), "points back at the proxy: {upload_url}");
        // 2. the follow-up, like the SDKs send it: no token at all
        let done = send(
            "POST",
            &upload_url,
            &[("x-goog-upload-command", "upload, finalize"), ("x-goog-upload-offset", "0")],
            b"\x89PNG fake image bytes",
        );
        assert_eq!(done.status, 200, "round {round}: {}", done.text());
        let file = done.json()["file"].clone();
        let name = file["name"].as_str().unwrap().to_string();
        // 3. use the file: the mock refuses any key but its owner's
        let body = json!({"contents": [{"parts": [{"fileData": {"fileUri": file["uri"], "mimeType": "image/png"}}, {"text": "describe"}]}]});
        for _ in 0..3 {
            let a = post_json(&format!("{}/v1beta/models/{FLASH}:generateContent", proxy.url), &body);
            assert_eq!(a.status, 200, "{}", a.text());
            let g = send("GET", &format!("{}/v1beta/{name}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
            assert_eq!(g.status, 200, "{}", g.text());
        }
    }
    // An unknown upload id is no credential.
    let a = send(
        "POST",
        &format!("{}/upload/v1beta/files?upload_id=forged&upload_protocol=resumable", proxy.url),
        &[],
        b"x",
    );
    assert_eq!(a.status, 401);
}

#[test]
fn tokens_are_counted_from_usage_metadata_of_answers_and_streams() {
    let mock = MockUpstream::start(&KEYS[..1]);
    let proxy = Proxy::start_with(&mock.url(), &KEYS[..1], |_| {});
    let a = generate(&proxy, FLASH);
    let t1 = a.json()["usageMetadata"]["totalTokenCount"].as_u64().unwrap();
    let s = send(
        "POST",
        &format!("{}/v1beta/models/{FLASH}:streamGenerateContent?alt=sse", proxy.url),
        &[("x-goog-api-key", TOKEN)],
        generate_body().to_string().as_bytes(),
    );
    let last = s.text().lines().rfind(|l| l.starts_with("data:")).unwrap().to_string();
    let t2 = serde_json::from_str::<Value>(last.trim_start_matches("data:").trim()).unwrap()["usageMetadata"]
        ["totalTokenCount"]
        .as_u64()
        .unwrap();
    let k = key_status(&proxy, KEYS[0]);
    assert_eq!(k["models"][FLASH]["requests"], 2);
    assert_eq!(k["models"][FLASH]["tokens"].as_u64().unwrap(), t1 + t2);
    assert_eq!(status(&proxy)["totals"]["tokens"].as_u64().unwrap(), t1 + t2);
}

#[test]
fn two_thousand_requests_from_32_threads_are_all_counted_on_disk() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.workers = 32);
    let url = format!("{}/v1beta/models/{FLASH}:generateContent", proxy.url);
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                (0..63).filter(|_| post_json(&url, &generate_body()).status == 200).count()
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(ok, 32 * 63);
    proxy.handle.flush().unwrap();
    let on_disk = requests_on_disk(&proxy.dir);
    assert_eq!(on_disk as usize, mock.request_count());
    assert_eq!(on_disk as usize, ok);
    let text = std::fs::read_to_string(proxy.dir.join("usage.json")).unwrap();
    for k in KEYS {
        assert!(!text.contains(k), "no raw key in the usage file");
    }
}

#[test]
fn the_seed_proxys_usage_file_is_converted_and_its_raw_keys_dropped() {
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("seed");
    let today = chrono::Utc::now().with_timezone(&chrono_tz::America::Los_Angeles).date_naive();
    let seed =
        json!({"date": today.to_string(), "counts": {KEYS[0]: 7, KEYS[1]: 2}, "exhausted_keys": [KEYS[1]]});
    std::fs::write(dir.join("usage.json"), seed.to_string()).unwrap();
    let proxy = Proxy::start_in(dir.clone(), &mock.url(), &KEYS, |_| {});
    assert_eq!(key_status(&proxy, KEYS[0])["requests"], 7);
    assert_eq!(key_status(&proxy, KEYS[1])["state"], "parked");
    proxy.handle.flush().unwrap();
    let text = std::fs::read_to_string(dir.join("usage.json")).unwrap();
    assert!(text.contains("\"version\""), "rewritten in our format");
    for k in KEYS {
        assert!(!text.contains(k), "raw key written back: {text}");
    }
}

#[test]
fn a_corrupt_usage_file_is_moved_aside_and_the_proxy_starts() {
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("corrupt");
    std::fs::write(dir.join("usage.json"), b"{\"version\":1,\"quota_day\":").unwrap();
    let proxy = Proxy::start_in(dir.clone(), &mock.url(), &KEYS, |_| {});
    assert_eq!(generate(&proxy, FLASH).status, 200);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("usage.json.corrupt-")), "{names:?}");
}

#[test]
fn no_key_or_token_in_answers_or_status() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], key_invalid_400());
    mock.set_key_reply(KEYS[1], quota_per_day_429(FLASH));
    let proxy = Proxy::start(&mock);
    let mut texts = vec![generate(&proxy, FLASH).text(), generate(&proxy, FLASH).text()];
    texts.push(send("GET", &format!("{}/status", proxy.url), &[("x-goog-api-key", TOKEN)], b"").text());
    texts.push(send("GET", &format!("{}/healthz", proxy.url), &[], b"").text());
    for k in KEYS {
        mock.set_key_reply(k, quota_per_day_429(FLASH));
    }
    texts.push(generate(&proxy, FLASH).text());
    proxy.handle.flush().unwrap();
    texts.push(std::fs::read_to_string(proxy.dir.join("usage.json")).unwrap());
    for t in &texts {
        for k in KEYS {
            assert!(!t.contains(k), "key leaked: {t}");
        }
        assert!(!t.contains(TOKEN), "token leaked: {t}");
    }
}

#[test]
fn cached_contents_follow_the_key_that_made_them() {
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start(&mock);
    let created = post_json(
        &format!("{}/v1beta/cachedContents", proxy.url),
        &json!({"model": "models/gemini-2.5-flash", "contents": [{"role": "user", "parts": [{"text": "a long document"}]}]}),
    );
    assert_eq!(created.status, 200, "{}", created.text());
    let name = created.json()["name"].as_str().unwrap().to_string();
    let owner = mock.requests()[0].key.clone();
    for _ in 0..4 {
        let body =
            json!({"cachedContent": name, "contents": [{"role": "user", "parts": [{"text": "summarize"}]}]});
        let a = post_json(&format!("{}/v1beta/models/{FLASH}:generateContent", proxy.url), &body);
        assert_eq!(a.status, 200, "{}", a.text());
        let got = send("GET", &format!("{}/v1beta/{name}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
        assert_eq!(got.status, 200, "{}", got.text());
    }
    assert!(mock.requests().iter().all(|r| r.key == owner), "every use went out with the creator's key");
    // The mapping is on disk: a restarted proxy still knows it.
    proxy.handle.flush().unwrap();
    let text = std::fs::read_to_string(proxy.dir.join("usage.json")).unwrap();
    assert!(text.contains(&name), "{text}");
}

/// Regression: the persistence thread gathered a burst with `recv_deadline` in a loop, which
/// returns at once whenever a signal is ready, even past the deadline: under constant load the
/// loop could run on and the file fall more than a second behind.
#[test]
fn regression_the_usage_file_stays_within_a_second_during_constant_load() {
    use std::sync::{Arc, Mutex};
    let mock = MockUpstream::start(&KEYS);
    let proxy = Proxy::start_with(&mock.url(), &KEYS, |c| c.workers = 32);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let load: Vec<_> = (0..32)
        .map(|_| {
            let url = format!("{}/v1beta/models/{FLASH}:generateContent", proxy.url);
            let (stop, done) = (stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    if post_json(&url, &generate_body()).status == 200 {
                        done.lock().unwrap().push(Instant::now());
                    }
                }
            })
        })
        .collect();
    let path = proxy.dir.join("usage.json");
    let mut worst_lag = 0i64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if !path.exists() {
            continue;
        }
        let on_disk = requests_on_disk(&proxy.dir);
        let older =
            done.lock().unwrap().iter().filter(|t| now.duration_since(**t) > Duration::from_secs(1)).count();
        worst_lag = worst_lag.max(older as i64 - on_disk as i64);
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    assert!(worst_lag <= 0, "the file missed {worst_lag} requests that were over a second old");
}
