//! Durability under SIGKILL at random points of a 32-thread burst (its own test binary, so that
//! no other test competes for the CPU while it measures how far the file lags).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

#[test]
fn twenty_sigkills_at_random_points_of_a_burst_never_tear_the_file_or_lose_more_than_a_second() {
    let dir = temp_dir("crash");
    sigkills_during_bursts(
        &dir,
        20,
        &[],
        |_| true,
        |dir| {
            // Missing only when nothing was ever saved; never torn (parsing panics on a torn file).
            if dir.join("usage.json").exists() { requests_on_disk(dir) } else { 0 }
        },
    );
}

/// The same in journal mode (a large state: 30 days of history for 400 past keys): the base is
/// never torn, and the base with its journal never lags more than a second.
#[test]
fn sigkills_in_journal_mode_never_tear_the_base_or_lose_more_than_a_second() {
    let dir = temp_dir("crash-journal");
    large_usage_file(&dir, 400);
    // Each round waits for the new process's first save, a whole new base (a new journal id)
    // from the files it read, before the burst: that one serializes the whole state, which a
    // debug build under 32 threads of load can take over a second to get the CPU for. What the
    // kills measure is the journal.
    let mut last_id = String::new();
    let new_base = move |dir: &std::path::Path| {
        let text = std::fs::read(dir.join("usage.json")).unwrap_or_default();
        let base: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
        match base["journal"].as_str() {
            Some(id) if id != last_id => {
                last_id = id.to_string();
                true
            }
            _ => false,
        }
    };
    sigkills_during_bursts(&dir, 8, &["--reset-timezone", "UTC"], new_base, |dir| {
        let _: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("usage.json")).unwrap())
            .expect("the base is whole");
        requests_by_usage_command(dir, "UTC")
    });
    let base: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("usage.json")).unwrap()).unwrap();
    assert!(base["journal"].is_string(), "the state was written in journal mode");
}

/// `rounds` times: a 32-thread burst of generate requests, a SIGKILL at a random point, and then
/// `on_disk` (the requests the files hold) at least what completed over a second before the kill.
fn sigkills_during_bursts(
    dir: &std::path::Path,
    rounds: usize,
    extra: &[&str],
    mut ready: impl FnMut(&std::path::Path) -> bool,
    on_disk: impl Fn(&std::path::Path) -> u64,
) {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let mock = MockUpstream::start(&KEYS);
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut completed_total = 0u64;
    let mut args = vec!["--log-dir", ""];
    args.extend_from_slice(extra);
    for round in 0..rounds {
        let (mut child, addr, _reader) = spawn(&mock, dir, &args);
        let url = format!("http://{addr}/v1beta/models/gemini-2.5-flash:generateContent");
        let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let first = send("POST", &url, &[("x-goog-api-key", TOKEN)], generate_body().to_string().as_bytes());
        assert_eq!(first.status, 200, "{}", first.text());
        done.lock().unwrap().push(Instant::now());
        eventually(Duration::from_secs(20), "the proxy's first save", || ready(dir));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let (url, done, stop) = (url.clone(), done.clone(), stop.clone());
                std::thread::spawn(move || {
                    let agent = client();
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let req = ureq::http::Request::builder()
                            .method("POST")
                            .uri(&url)
                            .header("x-goog-api-key", TOKEN)
                            .body(generate_body().to_string())
                            .unwrap();
                        match agent.run(req) {
                            Ok(r) if r.status() == 200 => done.lock().unwrap().push(Instant::now()),
                            _ => break, // the proxy is gone
                        }
                    }
                })
            })
            .collect();
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wait = Duration::from_millis(200 + (seed >> 33) % 1300);
        std::thread::sleep(wait);
        let killed_at = Instant::now();
        signal(&child, "-KILL");
        let _ = child.wait();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in workers {
            let _ = w.join();
        }
        let times = done.lock().unwrap().clone();
        let older =
            times.iter().filter(|t| killed_at.duration_since(**t) > Duration::from_millis(1100)).count()
                as u64;
        completed_total += times.len() as u64;
        let on_disk = on_disk(dir);
        eprintln!(
            "round {round}: killed after {wait:?}, {} served this round, {on_disk} on disk",
            times.len()
        );
        let before_round = completed_total - times.len() as u64;
        assert!(
            on_disk >= before_round + older,
            "round {round}: {on_disk} on disk, but {} requests had completed over a second before the kill",
            before_round + older
        );
        assert!(on_disk <= completed_total + 32, "round {round}: more on disk ({on_disk}) than were served");
        // What was lost in this round is recounted from the file: the next round starts from it.
        completed_total = on_disk;
    }
}
