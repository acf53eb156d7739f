//! The operator's pages: /status, /metrics (parsed line by line), /healthz.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::mock_upstream::{key_invalid_400, quota_per_day_429};
use support::*;

/// Parse Prometheus text exposition: every sample line belongs to a family announced by HELP and
/// TYPE, has well-formed labels and a number. Returns sample name+labels → value.
fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    let mut helped = BTreeSet::new();
    let mut typed = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(rest.len() > name.len() + 1, "HELP without text: {line}");
            helped.insert(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "{line}");
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            typed.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            for pair in labels[1..labels.len() - 1].split("\",") {
                let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
                assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                assert!(!v.trim_end_matches('"').contains('"'), "{line}");
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| typed.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample without TYPE: {line}");
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn metrics_are_valid_prometheus_text_and_count_what_happened() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[0], quota_per_day_429("gemini-2.5-flash"));
    let proxy = Proxy::start(&mock);
    for _ in 0..4 {
        let a = post_json(
            &format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url),
            &generate_body(),
        );
        assert_eq!(a.status, 200);
    }
    send("GET", &format!("{}/v1beta/models", proxy.url), &[("x-goog-api-key", "wrong")], b"");
    let a = send("GET", &format!("{}/metrics", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(a.status, 200);
    assert!(a.header("content-type").unwrap().starts_with("text/plain"));
    let m = parse_prometheus(&a.text());
    assert_eq!(m["gkm_requests_total{route=\"native\",surface=\"native\",status=\"200\"}"], 4.0);
    assert_eq!(m["gkm_requests_total{route=\"native\",surface=\"native\",status=\"401\"}"], 1.0);
    assert_eq!(m["gkm_upstream_attempts_total{outcome=\"ok\"}"], 4.0);
    assert_eq!(m["gkm_upstream_attempts_total{outcome=\"rate_limited_day\"}"], 1.0);
    assert_eq!(m["gkm_keys_total"], 3.0);
    assert_eq!(m["gkm_keys_usable"], 3.0);
    assert_eq!(m["gkm_workers_busy"], 1.0, "the /metrics request itself");
    assert_eq!(m["gkm_request_duration_seconds_count{route=\"native\"}"], 5.0);
    let fp = gemini_key_manager::keyfile::fingerprint(KEYS[0]);
    assert_eq!(m[&format!("gkm_key_state{{key=\"{fp}\",state=\"parked\"}}")], 1.0);
    let per_key: f64 =
        m.iter().filter(|(k, _)| k.starts_with("gkm_key_requests_today")).map(|(_, v)| v).sum();
    assert_eq!(per_key, 4.0);
    assert!(m.contains_key("gkm_build_info{version=\"0.1.0\"}"));
    assert!(!a.text().contains(KEYS[0]) && !a.text().contains(TOKEN));
}

#[test]
fn status_has_the_documented_shape() {
    let mock = MockUpstream::start(&KEYS);
    let lines = [format!("{} proj-a", KEYS[0]), KEYS[1].to_string()];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let proxy = Proxy::start_with(&mock.url(), &lines, |_| {});
    post_json(&format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url), &generate_body());
    let unauth = send("GET", &format!("{}/status", proxy.url), &[], b"");
    assert_eq!(unauth.status, 401);
    let v =
        send("GET", &format!("{}/status", proxy.url), &[("authorization", &format!("Bearer {TOKEN}"))], b"")
            .json();
    assert_eq!(v["timezone"], "America/Los_Angeles");
    assert!(chrono::NaiveDate::parse_from_str(v["quota_day"].as_str().unwrap(), "%Y-%m-%d").is_ok());
    let reset = chrono::DateTime::parse_from_rfc3339(v["next_reset"].as_str().unwrap()).unwrap();
    assert_eq!(reset.format("%H:%M:%S").to_string(), "00:00:00", "midnight in the reset zone");
    assert_eq!(v["totals"]["requests"], 1);
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(k["id"].as_str().unwrap().len(), 12);
        assert!(k["masked"].as_str().unwrap().contains('…'));
        assert_eq!(k["state"], "usable");
        assert!(k["disabled_reason"].is_null());
    }
    assert_eq!(keys[0]["project"], "proj-a");
    assert!(keys[1]["project"].is_null());
    let used = keys.iter().find(|k| k["requests"] == 1).unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(used["last_used"].as_str().unwrap()).is_ok());
    let m = &used["models"]["gemini-2.5-flash"];
    assert_eq!(m["requests"], 1);
    assert!(m["tokens"].as_u64().unwrap() > 0);
    assert!(m["parked_until"].is_null() && m["cooling_until"].is_null());
}

/// Issue 19: `?page`/`?limit` show a page of the keys with the totals of the whole pool;
/// `?summary` shows no key, only their count per state; without either, the whole document.
#[test]
fn status_pages_and_summary() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[2], key_invalid_400());
    let proxy = Proxy::start(&mock);
    for _ in 0..3 {
        post_json(&format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url), &generate_body());
    }
    let get =
        |query: &str| send("GET", &format!("{}/status{query}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    let all = get("").json();
    assert_eq!(all["keys"].as_array().unwrap().len(), 3);
    assert!(all.get("keys_total").is_none() && all.get("page").is_none(), "the default form is unchanged");
    let page = get("?page=2&limit=2").json();
    assert_eq!(page["keys"].as_array().unwrap().len(), 1);
    assert_eq!(page["keys"][0]["id"], all["keys"][2]["id"]);
    assert_eq!((page["page"].as_u64(), page["limit"].as_u64()), (Some(2), Some(2)));
    assert_eq!((page["pages"].as_u64(), page["keys_total"].as_u64()), (Some(2), Some(3)));
    assert_eq!(page["totals"], all["totals"], "totals are the whole pool's");
    assert_eq!(get("?page=9&limit=2").json()["keys"].as_array().unwrap().len(), 0);
    assert_eq!(get("?limit=1").json()["keys"][0]["id"], all["keys"][0]["id"]);
    let summary = get("?summary").json();
    assert!(summary.get("keys").is_none());
    assert_eq!(summary["keys_total"], 3);
    assert_eq!(summary["key_states"]["usable"], 2);
    assert_eq!(summary["key_states"]["disabled"], 1);
    assert_eq!(summary["totals"], all["totals"]);
    let bad = get("?page=0");
    assert_eq!(bad.status, 400, "{}", bad.text());
}

#[test]
fn the_dashboard_takes_basic_bearer_or_key_and_shows_masked_keys_only() {
    let mock = MockUpstream::start(&KEYS);
    mock.set_key_reply(KEYS[1], quota_per_day_429("gemini-2.5-flash"));
    let proxy = Proxy::start(&mock);
    for _ in 0..3 {
        post_json(&format!("{}/v1beta/models/gemini-2.5-flash:generateContent", proxy.url), &generate_body());
    }
    let url = format!("{}/dashboard", proxy.url);
    let none = send("GET", &url, &[], b"");
    assert_eq!(none.status, 401);
    assert!(none.header("www-authenticate").unwrap().starts_with("Basic"), "a browser gets the Basic prompt");
    let basic = format!("Basic {}", b64(&format!("anyone:{TOKEN}")));
    let wrong = format!("Basic {}", b64("anyone:wrong"));
    assert_eq!(send("GET", &url, &[("authorization", &wrong)], b"").status, 401);
    let bearer = format!("Bearer {TOKEN}");
    for a in [
        send("GET", &url, &[("authorization", &basic)], b""),
        send("GET", &url, &[("authorization", &bearer)], b""),
        send("GET", &format!("{url}?key={TOKEN}"), &[], b""),
    ] {
        assert_eq!(a.status, 200);
        assert!(a.header("content-type").unwrap().starts_with("text/html"));
        let html = a.text();
        assert!(html.contains("<svg"), "inline SVG charts");
        for k in KEYS {
            assert!(html.contains(&gemini_key_manager::keyfile::mask(k)));
            assert!(!html.contains(k), "raw key on the page");
        }
        assert!(html.contains("parked"), "the parked key shows its state");
        assert!(!html.contains(TOKEN));
        for external in ["src=", "href=\"http", "<script", "url(http"] {
            assert!(!html.contains(external), "external asset: {external}");
        }
    }
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `n` keys the mock accepts, as key-file lines; every one its own project.
fn large_pool(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("AIzaSyLARGEPOOL{i:024}")).collect()
}

fn metrics_of(url: &str) -> String {
    let a = send("GET", &format!("{url}/metrics"), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(a.status, 200, "{}", a.text());
    a.text()
}

/// Issue 19: a pool of 100 keys or more leaves the per-key series out of `/metrics` unless
/// `--metrics-per-key true` (the sums per state and model stay); below 100 they are there
/// unless `--metrics-per-key false`.
#[test]
fn per_key_metrics_are_off_by_default_from_100_keys_and_follow_the_flag() {
    let keys = large_pool(150);
    let lines: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(&lines);
    mock.set_key_reply(&keys[1], quota_per_day_429("gemini-2.5-flash"));
    let proxy = Proxy::start_with(&mock.url(), &lines, |_| {});
    for _ in 0..3 {
        assert_eq!(generate(&proxy, "gemini-2.5-flash").status, 200);
    }
    let text = metrics_of(&proxy.url);
    let m = parse_prometheus(&text);
    assert!(!text.contains("key=\""), "a per-key series at 150 keys by default");
    assert!(!m.keys().any(|k| k.starts_with("gkm_key_")));
    assert_eq!(m["gkm_keys_total"], 150.0);
    assert_eq!(m["gkm_keys_by_state{state=\"parked\"}"], 1.0, "key 1's 429");
    assert_eq!(m["gkm_keys_by_state{state=\"usable\"}"], 149.0);
    assert_eq!(m["gkm_model_requests_today{model=\"gemini-2.5-flash\"}"], 3.0);
    assert!(m["gkm_model_tokens_today{model=\"gemini-2.5-flash\"}"] > 0.0);

    // The real binary, the same pool, `--metrics-per-key true`: a series per key.
    let dir = temp_dir("metrics-per-key");
    let big = dir.join("big-key-file.txt");
    std::fs::write(&big, keys.join("\n")).unwrap();
    let big = big.to_string_lossy().into_owned();
    let (mut child, addr, _log) = spawn(&mock, &dir, &["--key-file", &big, "--metrics-per-key", "true"]);
    let url = format!("http://{addr}");
    let a = post_json(&format!("{url}/v1beta/models/gemini-2.5-flash:generateContent"), &generate_body());
    assert_eq!(a.status, 200);
    let m = parse_prometheus(&metrics_of(&url));
    let states = m.keys().filter(|k| k.starts_with("gkm_key_state{")).count();
    assert_eq!(states, 150 * 4, "every key, every state");
    let fp = gemini_key_manager::keyfile::fingerprint(&keys[0]);
    assert_eq!(m[&format!("gkm_key_requests_today{{key=\"{fp}\",model=\"gemini-2.5-flash\"}}")], 1.0);
    assert_eq!(m["gkm_model_requests_today{model=\"gemini-2.5-flash\"}"], 1.0);
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));

    // A small pool: per-key series by default, none with `--metrics-per-key false`.
    let small = Proxy::start(&mock);
    assert!(metrics_of(&small.url).contains("gkm_key_state{key=\""));
    let off = Proxy::start_with(&mock.url(), &KEYS, |cfg| cfg.metrics_per_key = Some(false));
    let text = metrics_of(&off.url);
    assert!(!text.contains("key=\"") && text.contains("gkm_keys_by_state{state=\"usable\"} 3\n"));
}

/// Issue 19: the dashboard of 3,000 keys stays under 300 KB: the keys summed per project and
/// model, the worst keys (a disabled one, then a parked one) named with their forms, and every key
/// on a page of 100.
#[test]
fn the_dashboard_of_a_large_pool_is_small_names_the_worst_keys_and_pages() {
    let keys = large_pool(3000);
    let lines: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(&lines);
    mock.set_key_reply(&keys[100], key_invalid_400());
    mock.set_key_reply(&keys[149], quota_per_day_429("gemini-2.5-flash"));
    let proxy = Proxy::start_with(&mock.url(), &lines, |_| {});
    // Round-robin: 150 requests reach key 151, past both.
    for _ in 0..150 {
        assert_eq!(generate(&proxy, "gemini-2.5-flash").status, 200);
    }
    let summary =
        send("GET", &format!("{}/status?summary", proxy.url), &[("x-goog-api-key", TOKEN)], b"").json();
    assert_eq!(
        summary["key_states"],
        serde_json::json!({"usable": 2998, "cooling": 0, "parked": 1, "disabled": 1})
    );

    let get = |query: &str| {
        let a = send("GET", &format!("{}/dashboard{query}", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
        assert_eq!(a.status, 200, "{}", a.text());
        assert!(a.body.len() < 300_000, "/dashboard{query}: {} bytes", a.body.len());
        a.text()
    };
    let fp = |i: usize| gemini_key_manager::keyfile::fingerprint(&keys[i]);
    let form = |i: usize| format!("action=\"/admin/keys/{}/disable?csrf=", fp(i));

    let html = get("");
    assert!(html.contains("Projects and models (3,000 keys)"));
    assert!(html.contains("<tr><td><em>keys without a project label</em></td><td>gemini-2.5-flash</td><td>151</td><td>1</td><td>150</td>"), "one row for 3,000 unlabelled keys (the parked one has no request)");
    let disabled = html.find(&fp(100)).expect("the disabled key is named");
    let parked = html.find(&fp(149)).expect("the parked key is named");
    assert!(disabled < parked, "worst first");
    assert!(html.contains("disabled: API_KEY_INVALID"));
    assert!(html.contains(&form(149)), "the worst keys have their forms");
    assert!(!html.contains(&fp(2000)) && !html.contains(&form(2000)), "a quiet key is on its page only");
    assert!(html.contains("<a href=\"?page=2\">2</a>") && html.contains("<a href=\"?page=30\">30</a>"));
    assert!(html.contains("<svg"), "the 30-day chart");
    for k in &keys[95..155] {
        assert!(!html.contains(k.as_str()), "a raw key on the page");
    }

    let page = get("?page=21");
    assert!(page.contains("Keys 2,001–2,100 of 3,000 · page 21 of 30"));
    assert!(page.contains(&fp(2000)) && page.contains(&form(2000)), "key 2000 and its form");
    assert!(page.contains(&fp(2099)) && !page.contains(&fp(2100)) && !page.contains(&fp(1999)));
    assert!(
        page.contains("<a href=\"?page=22\">next ›</a>")
            && page.contains("<a href=\"dashboard\">overview</a>")
    );
    assert!(get("?page=2").contains(&fp(149)), "the parked key on its page too");
    assert!(get("?page=31").contains("No keys on this page"));
    let bad = send("GET", &format!("{}/dashboard?page=0", proxy.url), &[("x-goog-api-key", TOKEN)], b"");
    assert_eq!(bad.status, 400, "{}", bad.text());
}
