//! The background threads: the key-file and tokens-file watcher (poll every few seconds; SIGHUP
//! calls the same reloads) and the re-prober that gives disabled keys their way back (SPEC §3, §5).
//!
//! Neither holds the pool lock across I/O: the watcher reads the file first and then swaps the
//! key list under the lock; the re-prober copies the disabled keys out, probes them with no lock
//! held, and re-enables those that answered.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::App;
use crate::keyfile;
use crate::quota::{self, Outcome};
use crate::upstream::{KeyStyle, Outgoing};

/// How often the key file is looked at.
pub const KEY_FILE_POLL: Duration = Duration::from_secs(2);

/// What a change of the key file looks like from outside: modification time, size, content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<SystemTime>, u64, [u8; 32]);

fn stamp(path: &Path) -> Option<FileStamp> {
    use sha2::Digest;
    let meta = std::fs::metadata(path).ok()?;
    let bytes = std::fs::read(path).ok()?;
    Some(FileStamp(meta.modified().ok(), meta.len(), sha2::Sha256::digest(&bytes).into()))
}

/// Re-read the key file and swap the pool's keys. A file that is missing, unreadable or empty
/// is refused with an error log, keeping the old pool.
pub fn reload_keys(app: &App, why: &str) -> Result<(), String> {
    let path = &app.config.key_file;
    let parsed = keyfile::load(path).map_err(|e| {
        let msg = format!(
            "key file reload ({why}) refused, keeping the current {} keys: {e}",
            app.pool.lock().len()
        );
        log::error!("{msg}");
        msg
    })?;
    for w in &parsed.warnings {
        log::warn!("key file {}: {w}", path.display());
    }
    crate::redact::add_keys(parsed.keys.iter().map(|k| k.key.clone()));
    app.upstream.set_key_proxies(&parsed.keys);
    let report = app.pool.lock().reload(parsed.keys).map_err(|e| {
        log::error!("key file reload ({why}) refused: {e}");
        e.to_string()
    })?;
    log::warn!(
        "key file reloaded ({why}): {} kept, {} added, {} removed, {} re-enabled",
        report.kept,
        report.added.len(),
        report.removed.len(),
        report.reenabled.len()
    );
    app.save.wanted();
    Ok(())
}

/// Re-read the tokens file (SPEC §13) and swap the named clients; their books are kept. A file
/// that is missing or malformed is refused with an error log, keeping the old clients.
pub fn reload_tokens(app: &App, why: &str) -> Result<(), String> {
    let Some(path) = &app.config.tokens_file else { return Ok(()) };
    let parsed = crate::clients::load(path).map_err(|e| {
        let msg = format!(
            "tokens file reload ({why}) refused, keeping the current {} clients: {e}",
            app.clients.len()
        );
        log::error!("{msg}");
        msg
    })?;
    crate::redact::add_tokens(parsed.tokens);
    let n = parsed.clients.len();
    app.clients.replace(parsed.clients);
    log::warn!("tokens file reloaded ({why}): {n} clients");
    Ok(())
}

/// Probe one key with models.list; `Ok(outcome)` of the answer, `Err` when nothing answered.
pub fn probe_key(app: &App, key: &str) -> Result<(u16, Outcome), String> {
    let out = Outgoing {
        method: "GET",
        path_and_query: "/v1beta/models?pageSize=1".into(),
        headers: Vec::new(),
        body: &[],
        key_style: KeyStyle::GoogHeader,
    };
    let answer = app
        .upstream
        .send(&out, key, std::time::Duration::MAX)
        .map_err(|e| format!("{:?}", e.into_error().message()))?;
    let status = answer.status();
    let body = answer.read_whole(1 << 20).unwrap_or_default();
    Ok((status, quota::classify(status, &body)))
}

/// Probe every disabled key once; re-enable those that answer 2xx. Returns how many came back.
pub fn reprobe_disabled(app: &App) -> usize {
    let disabled = app.pool.lock().disabled_keys();
    let mut back = 0;
    for (_, key) in disabled {
        let fp = crate::keyfile::fingerprint(&key);
        match probe_key(app, &key) {
            Ok((_, Outcome::Success)) => {
                if app.pool.lock().enable(&fp) {
                    back += 1;
                    log::warn!("key {fp} answered its re-probe and is usable again");
                }
            }
            Ok((status, outcome)) => log::debug!("key {fp} re-probe: {status} {outcome:?}; stays disabled"),
            Err(e) => log::debug!("key {fp} re-probe failed: {e}"),
        }
    }
    if back > 0 {
        app.save.wanted();
    }
    back
}

/// The watcher and re-prober threads; stopped with `stop`.
pub struct Background {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(app: Arc<App>) -> Result<Background, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        {
            let (app, stop) = (app.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("key-file-watch".into())
                    .spawn(move || {
                        let tokens_stamp = || app.config.tokens_file.as_deref().and_then(stamp);
                        let mut last = stamp(&app.config.key_file);
                        let mut last_tokens = tokens_stamp();
                        while sleep_unless_stopped(&stop, KEY_FILE_POLL) {
                            let now = stamp(&app.config.key_file);
                            if now != last {
                                let _ = reload_keys(&app, "file changed");
                                last = now;
                            }
                            let now = tokens_stamp();
                            if now != last_tokens {
                                let _ = reload_tokens(&app, "file changed");
                                last_tokens = now;
                            }
                        }
                    })
                    .map_err(|e| format!("cannot start the key-file watcher: {e}"))?,
            );
        }
        {
            let (app, stop) = (app.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("reprobe".into())
                    .spawn(move || {
                        while sleep_unless_stopped(&stop, app.config.reprobe_interval) {
                            reprobe_disabled(&app);
                        }
                    })
                    .map_err(|e| format!("cannot start the re-prober: {e}"))?,
            );
        }
        Ok(Background { stop, threads })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Sleep `d` in short steps; false as soon as `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    while !stop.load(Ordering::SeqCst) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::park_timeout(left.min(Duration::from_millis(200)));
    }
    false
}
