//! The scripted Gemini mock as a standalone server, for trying the proxy by hand:
//!
//! `cargo run --example mock_upstream -- --port 0 --keys KEY1,KEY2 [--delay-ms 200] [--events 3]
//!  [--day-quota-exhausted KEY1] [--projects KEY1=proj-a,KEY2=proj-a] [--hops 2]`
//!
//! `--projects` groups keys into Cloud projects (a key not named is its own project); `--hops N`
//! makes every interaction take N continuation hops.
//!
//! Prints `mock upstream listening on http://127.0.0.1:PORT` and serves until killed.

#[path = "common/cli.rs"]
mod cli;
#[path = "../tests/support/mock_upstream.rs"]
mod mock_upstream;

use std::time::Duration;

const USAGE: &str = "usage: mock_upstream [--port N] --keys KEY1,KEY2 [--delay-ms MS] [--events N] \
                     [--day-quota-exhausted KEY]... [--projects KEY=PROJ,KEY=PROJ] [--hops N]";

fn main() {
    let (mut port, mut keys, mut delay_ms, mut events) = (0u16, String::new(), 0u64, 3usize);
    let mut day_exhausted: Vec<String> = Vec::new();
    let (mut projects, mut hops) = (String::new(), 1usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => port = parse(&flag, &value),
            "--keys" => keys = value.clone(),
            "--delay-ms" => delay_ms = parse(&flag, &value),
            "--events" => events = parse(&flag, &value),
            "--day-quota-exhausted" => day_exhausted.push(value.clone()),
            "--projects" => projects = value.clone(),
            "--hops" => hops = parse(&flag, &value),
            _ => fail(&format!("unknown argument {flag}")),
        }
    }
    let keys: Vec<&str> = keys.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        fail("--keys is required");
    }
    let mock = mock_upstream::MockUpstream::start_on_port(port, &keys);
    mock.set_stream_delay(Duration::from_millis(delay_ms));
    mock.set_stream_events(events);
    mock.set_interaction_hops(hops);
    let pairs: Vec<(&str, &str)> = projects
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or_else(|| fail(&format!("--projects needs KEY=PROJ, not {p}"))))
        .collect();
    mock.set_projects(&pairs);
    // Keys whose daily quota is used up: every generation request gets Google's per-day 429.
    if !day_exhausted.is_empty() {
        mock.set_script(move |rec| {
            let generates =
                rec.path.contains(":generateContent") || rec.path.contains(":streamGenerateContent");
            let key = rec.key.clone().unwrap_or_default();
            (generates && day_exhausted.contains(&key))
                .then(|| mock_upstream::quota_per_day_429(&rec.model().unwrap_or_default()))
        });
    }
    cli::serve_forever("mock upstream", &mock.url())
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    cli::parse(flag, value, USAGE)
}

fn fail(message: &str) -> ! {
    cli::fail(message, USAGE)
}
