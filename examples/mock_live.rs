//! The scripted Live API mock (tests/support/mock_live.rs) as a standalone server, for the SDK
//! checks and for trying the Live tunnel by hand:
//!
//! `cargo run --example mock_live -- --port 0 --keys KEY1,KEY2 [--pieces 4] [--delay-ms 200]`
//!
//! Prints `mock live listening on http://127.0.0.1:PORT` and serves until killed. Only the given
//! keys (and the ephemeral tokens it issued) may open a session.

#[path = "common/cli.rs"]
mod cli;
#[path = "../tests/support/mock_live.rs"]
mod mock_live;

const USAGE: &str = "usage: mock_live [--port N] --keys KEY1,KEY2 [--pieces N] [--delay-ms MS]";

use std::time::Duration;

fn main() {
    let (mut port, mut keys, mut pieces, mut delay_ms) = (0u16, String::new(), 4usize, 200u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => port = parse(&flag, &value),
            "--keys" => keys = value,
            "--pieces" => pieces = parse(&flag, &value),
            "--delay-ms" => delay_ms = parse(&flag, &value),
            _ => fail(&format!("unknown argument {flag}")),
        }
    }
    let keys: Vec<&str> = keys.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        fail("--keys is required");
    }
    let mock = mock_live::MockLive::start_on_port(port);
    mock.accept_only(&keys);
    mock.set_echo(pieces, Duration::from_millis(delay_ms));
    cli::serve_forever("mock live", &mock.url())
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> T {
    cli::parse(flag, value, USAGE)
}

fn fail(message: &str) -> ! {
    cli::fail(message, USAGE)
}
