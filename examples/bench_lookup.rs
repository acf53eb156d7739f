//! The resource lookup's own cost per request (SPEC §5), for scripts/bench.sh section 7b: what
//! `resources::referenced` and the table lookup take on the bench's plain generate body, on one
//! naming a file the table does not hold, and on one naming a cache it does, with a table of
//! 10,000 entries. Prints one line per case: nanoseconds per request (best of 5 runs).

use std::hint::black_box;
use std::time::Instant;

use chrono::Utc;
use gemini_key_manager::keyfile::ProjectId;
use gemini_key_manager::resources::{self, Resources};

const PATH: &str = "/v1beta/models/gemini-2.5-flash:generateContent";
const PLAIN: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Say hello in one short sentence."}]}],"generationConfig":{"maxOutputTokens":64,"temperature":0.2}}"#;
const FILE: &str = r#"{"contents":[{"role":"user","parts":[{"text":"Say hello in one short sentence."},{"fileData":{"mimeType":"text/plain","fileUri":"https://generativelanguage.googleapis.com/v1beta/files/benchunknown"}}]}],"generationConfig":{"maxOutputTokens":64,"temperature":0.2}}"#;
const CACHE: &str = r#"{"cachedContent":"cachedContents/benchcache","contents":[{"role":"user","parts":[{"text":"Say hello in one short sentence."}]}],"generationConfig":{"maxOutputTokens":64,"temperature":0.2}}"#;

fn main() {
    let now = Utc::now();
    let mut table = Resources::default();
    let project = ProjectId::Label("bench".into());
    for i in 0..10_000 {
        table.remember(&format!("files/f{i}"), &project, "0123456789ab", None, None, now);
    }
    table.remember("cachedContents/benchcache", &project, "0123456789ab", None, None, now);
    let n: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    for (case, body) in
        [("plain body", PLAIN), ("body naming an unknown file", FILE), ("body naming a pinned cache", CACHE)]
    {
        let best = (0..5)
            .map(|_| {
                let started = Instant::now();
                for _ in 0..n {
                    let names = resources::referenced(black_box(PATH), None, black_box(body.as_bytes()));
                    let owners = if names.is_empty() { Vec::new() } else { table.owners(&names, now) };
                    black_box(owners);
                }
                started.elapsed().as_nanos() as f64 / f64::from(n)
            })
            .fold(f64::INFINITY, f64::min);
        println!("resource lookup, {case}: {best:.0} ns per request");
    }
}
