//! Durability under SIGKILL at random points of a 32-thread burst (its own test binary, so that
//! no other test competes for the CPU while it measures how far the file lags).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::*;

#[test]
fn twenty_sigkills_at_random_points_of_a_burst_never_tear_the_file_or_lose_more_than_a_second() {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let mock = MockUpstream::start(&KEYS);
    let dir = temp_dir("crash");
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut completed_total = 0u64;
    for round in 0..20 {
        let (mut child, addr, _reader) = spawn(&mock, &dir, &["--log-dir", ""]);
        let url = format!("http://{addr}/v1beta/models/gemini-2.5-flash:generateContent");
        let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
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
        // Missing only when nothing was ever saved; never torn (parsing panics on a torn file).
        let on_disk = if dir.join("usage.json").exists() { requests_on_disk(&dir) } else { 0 };
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
