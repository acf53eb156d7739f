//! The scripted Gemini mock with Google's per-project limits, for the quota-efficiency bench
//! (`scripts/bench/quota.py`): every key is a project of its own, and each project may make
//! `--rpm` generate requests per model in any 60 seconds and `--rpd` per model in the run (its
//! "day"). Past a limit the answer is Google's 429 — `QuotaFailure` with the limit's `quotaId`
//! and `quotaValue`, `RetryInfo` with the time until a slot frees — and a refused request does
//! not count, as with Google. Everything else is the plain mock (`tests/support/mock_upstream.rs`,
//! used through its `set_script` hook, unchanged).
//!
//! `cargo run --example quota_mock -- --port 0 --keys KEY1,KEY2 --rpm 20 --rpd 50`
//!
//! Prints `mock upstream listening on http://127.0.0.1:PORT`; `GET /_stats` answers
//! `{"served": N, "per_minute_429": N, "per_day_429": N, "requests": N}` (generate requests only).

#[path = "common/cli.rs"]
mod cli;
#[path = "../tests/support/mock_upstream.rs"]
mod mock_upstream;

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

const USAGE: &str = "usage: quota_mock [--port N] --keys KEY1,KEY2 --rpm N --rpd N";
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Books {
    /// (key, model) → times of the requests served in the last minute.
    minute: HashMap<(String, String), VecDeque<Instant>>,
    /// (key, model) → requests served in the run.
    day: HashMap<(String, String), u64>,
    served: u64,
    per_minute_429: u64,
    per_day_429: u64,
}

fn quota_429(model: &str, quota_id: &str, limit: u64, retry: Duration) -> mock_upstream::Reply {
    let metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests";
    let delay = format!("{:.3}s", retry.as_secs_f64());
    mock_upstream::Reply::json(
        429,
        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
            "message": format!("You exceeded your current quota. Quota exceeded for metric: {metric}, limit: {limit}, model: {model}. Please retry in {delay}."),
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                    "quotaMetric": metric, "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": limit.to_string()}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}),
    )
}

fn main() {
    let (mut port, mut keys, mut rpm, mut rpd) = (0u16, String::new(), 0u64, 0u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => port = parse(&flag, &value),
            "--keys" => keys = value.clone(),
            "--rpm" => rpm = parse(&flag, &value),
            "--rpd" => rpd = parse(&flag, &value),
            _ => fail(&format!("unknown argument {flag}")),
        }
    }
    let keys: Vec<&str> = keys.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
    if keys.is_empty() || rpm == 0 || rpd == 0 {
        fail("--keys, --rpm and --rpd are required");
    }
    let mock = mock_upstream::MockUpstream::start_on_port(port, &keys);
    let books = Mutex::new(Books::default());
    mock.set_script(move |rec| {
        let mut b = books.lock().unwrap_or_else(|e| e.into_inner());
        if rec.path == "/_stats" {
            let requests = b.served + b.per_minute_429 + b.per_day_429;
            return Some(mock_upstream::Reply::json(
                200,
                json!({"served": b.served, "per_minute_429": b.per_minute_429,
                       "per_day_429": b.per_day_429, "requests": requests}),
            ));
        }
        if !rec.path.contains("generateContent") {
            return None;
        }
        let model = rec.model().unwrap_or_default();
        let at = (rec.key.clone().unwrap_or_default(), model.clone());
        let now = Instant::now();
        if b.day.get(&at).copied().unwrap_or(0) >= rpd {
            b.per_day_429 += 1;
            return Some(quota_429(
                &model,
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                rpd,
                Duration::from_secs(26),
            ));
        }
        let window = b.minute.entry(at.clone()).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            window.pop_front();
        }
        if window.len() as u64 >= rpm {
            let oldest = window.front().copied().unwrap_or(now);
            let retry = WINDOW.saturating_sub(now.duration_since(oldest));
            b.per_minute_429 += 1;
            return Some(quota_429(
                &model,
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                rpm,
                retry,
            ));
        }
        window.push_back(now);
        *b.day.entry(at).or_default() += 1;
        b.served += 1;
        None
    });
    cli::serve_forever("mock upstream", &mock.url())
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    cli::parse(flag, value, USAGE)
}

fn fail(message: &str) -> ! {
    cli::fail(message, USAGE)
}
