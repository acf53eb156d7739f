//! The usage file on disk and the persistence thread that alone writes it (SPEC §6).
//!
//! Workers never touch the file: after a state change they `try_send` on a channel of capacity
//! one (a full channel means a save is already pending). The thread writes at most once per
//! [`MIN_INTERVAL`] whatever the traffic: it takes a snapshot under the pool lock, releases it,
//! serializes, and skips the write when the bytes are those it wrote last (nothing changed);
//! otherwise it writes a temporary file in the same directory, fsyncs it, renames it over the old
//! one and fsyncs the directory: a crash leaves the old file or the new one, never a torn one. A
//! failing disk is logged once a minute and retried.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use crossbeam_channel::{Receiver, Sender, select};

use crate::App;
use crate::store_format::{self, UsageFile};

/// The shortest time between two writes: under steady traffic the file is written about once a
/// second, and the 100 ms left of the second are for the write itself, so that the file is never
/// more than a second behind the memory state (`tests/pool.rs` measures that lag).
const MIN_INTERVAL: Duration = Duration::from_millis(900);
/// How often the thread wakes without a signal (daily reset, retry after a failure).
const TICK: Duration = Duration::from_secs(1);
/// Failures are logged at most this often.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What a worker holds to ask for a save.
///
/// Only the first change after a save wakes the persistence thread: a flag says a wake is
/// already on its way, so the requests that follow cost one atomic load each, not a thread
/// hand-off (a wake per request was a context switch per request under load).
#[derive(Clone)]
pub struct SaveSignal {
    tx: Sender<()>,
    pending: Arc<AtomicBool>,
}

impl SaveSignal {
    pub fn new() -> (SaveSignal, Receiver<()>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        (SaveSignal { tx, pending: Arc::new(AtomicBool::new(false)) }, rx)
    }

    /// Never blocks: a wake already sent (and not yet taken by a save) means "save soon".
    pub fn wanted(&self) {
        if !self.pending.load(Ordering::Acquire) && !self.pending.swap(true, Ordering::AcqRel) {
            let _ = self.tx.try_send(());
        }
    }

    /// The persistence thread is about to take its snapshot: a change from now on wakes it again.
    fn taken(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

/// Read the usage file at startup. Missing: `Ok(None)`. Corrupt: moved aside to
/// `*.corrupt-<timestamp>`, logged loudly, `Ok(None)`.
pub fn load(path: &Path, tz: chrono_tz::Tz) -> Result<Option<UsageFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read usage file {}: {e}", path.display())),
    };
    match store_format::parse_usage(&bytes, tz) {
        Ok(file) => Ok(Some(file)),
        Err(why) => {
            let aside = corrupt_name(path);
            std::fs::rename(path, &aside).map_err(|e| {
                format!("usage file {} is corrupt ({why}) and cannot be moved aside: {e}", path.display())
            })?;
            log::error!(
                "USAGE FILE CORRUPT: {} ({why}); moved to {} and starting with empty usage",
                path.display(),
                aside.display()
            );
            Ok(None)
        }
    }
}

fn corrupt_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".corrupt-{}", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
    PathBuf::from(name)
}

/// Write `bytes` to `path` atomically: temporary file in the same directory, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name =
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "usage".into());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Control of the persistence thread.
pub struct Persister {
    flush_tx: Sender<Sender<Result<(), String>>>,
    stop_tx: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Persister {
    /// Start the thread that owns `app.config.usage_file`.
    pub fn spawn(app: Arc<App>, save_rx: Receiver<()>) -> Result<Persister, String> {
        let (flush_tx, flush_rx) = crossbeam_channel::unbounded::<Sender<Result<(), String>>>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("persistence".into())
            .spawn(move || run(&app, &save_rx, &flush_rx, &stop_rx))
            .map_err(|e| format!("cannot start the persistence thread: {e}"))?;
        Ok(Persister { flush_tx, stop_tx, thread: Some(thread) })
    }

    /// Write the current state now and wait for it (shutdown, tests).
    pub fn flush(&self) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.flush_tx.send(tx).map_err(|_| "the persistence thread is gone".to_string())?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the persistence thread did not answer".to_string())?
    }

    /// Final flush, then stop the thread.
    pub fn stop(mut self) -> Result<(), String> {
        let flushed = self.flush();
        let _ = self.stop_tx.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        flushed
    }
}

struct Writer {
    dirty: bool,
    last_failure_log: Option<Instant>,
    failing: bool,
    /// When the last save began (its snapshot), written or skipped.
    last_save: Option<Instant>,
    /// A hash of the bytes last written, `saved_at` left out: an unchanged state is not written.
    last_written: Option<u64>,
}

impl Writer {
    /// A save is wanted and the last one is at least [`MIN_INTERVAL`] old.
    fn due(&self) -> bool {
        self.dirty && self.last_save.is_none_or(|t| t.elapsed() >= MIN_INTERVAL)
    }

    /// How long until [`due`](Self::due) can hold, or [`TICK`] when nothing is wanted.
    fn wait(&self) -> Duration {
        match (self.dirty, self.last_save) {
            (true, Some(t)) => MIN_INTERVAL.saturating_sub(t.elapsed()),
            (true, None) => Duration::ZERO,
            (false, _) => TICK,
        }
    }

    fn save(&mut self, app: &App) -> Result<(), String> {
        self.last_save = Some(Instant::now());
        app.save.taken();
        let now = Utc::now();
        let snapshot = {
            let mut pool = app.pool.lock();
            pool.rollover(now);
            let mut file = pool.snapshot(now);
            file.resources = app.resources.lock().records(now);
            file
        };
        let mut snapshot = snapshot;
        app.clients.fill(&mut snapshot, now);
        let saved_at = snapshot.saved_at.take();
        let unchanged = serde_json::to_vec(&snapshot).map_err(|e| format!("cannot serialize usage: {e}"))?;
        let hash = hash_of(&unchanged);
        if self.last_written == Some(hash) && !self.failing {
            self.dirty = false;
            return Ok(());
        }
        drop(unchanged);
        snapshot.saved_at = saved_at;
        let bytes =
            serde_json::to_vec_pretty(&snapshot).map_err(|e| format!("cannot serialize usage: {e}"))?;
        // Keys are fingerprints and masked forms by construction; the redactor is the backstop.
        let bytes = crate::redact::current().bytes(&bytes).into_owned();
        let path = &app.config.usage_file;
        match write_atomic(path, &bytes) {
            Ok(()) => {
                if self.failing {
                    log::warn!("usage file {} is written again", path.display());
                }
                self.failing = false;
                self.dirty = false;
                self.last_written = Some(hash);
                Ok(())
            }
            Err(e) => {
                let msg =
                    format!("cannot write usage file {}: {e}; still serving, will retry", path.display());
                if self.last_failure_log.is_none_or(|t| t.elapsed() >= FAILURE_LOG_INTERVAL) {
                    log::error!("{msg}");
                    self.last_failure_log = Some(Instant::now());
                }
                self.failing = true;
                self.dirty = true;
                Err(msg)
            }
        }
    }
}

fn run(
    app: &App,
    save_rx: &Receiver<()>,
    flush_rx: &Receiver<Sender<Result<(), String>>>,
    stop_rx: &Receiver<()>,
) {
    let mut w =
        Writer { dirty: false, last_failure_log: None, failing: false, last_save: None, last_written: None };
    let mut last_roll_check = Instant::now();
    loop {
        select! {
            recv(save_rx) -> msg => {
                if msg.is_err() { return; }
                w.dirty = true;
            }
            recv(flush_rx) -> msg => {
                match msg {
                    Ok(reply) => { w.dirty = true; let _ = reply.send(w.save(app)); }
                    Err(_) => return,
                }
            }
            recv(stop_rx) -> _ => return,
            default(w.wait()) => {}
        }
        // Checked after every event, not only on a timeout: under constant load a signal is
        // always ready and a timeout would never come.
        if last_roll_check.elapsed() >= TICK {
            last_roll_check = Instant::now();
            if app.pool.lock().rollover(Utc::now()) {
                log::info!("quota day rolled over: per-day parks ended, counts moved to history");
                w.dirty = true;
            }
        }
        if w.failing {
            w.dirty = true;
        }
        if w.due() {
            let _ = w.save(app);
        }
    }
}

/// A hash of serialized bytes, to tell an unchanged state from a changed one.
fn hash_of(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary() {
        let dir = std::env::temp_dir().join(format!("gkm-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.json");
        write_atomic(&path, b"{\"a\":1}").unwrap();
        write_atomic(&path, b"{\"a\":2}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":2}");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["usage.json".to_string()]);
    }

    #[test]
    fn a_corrupt_file_is_moved_aside() {
        let dir = std::env::temp_dir().join(format!("gkm-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("usage.json");
        std::fs::write(&path, b"{\"version\":1, torn").unwrap();
        assert!(load(&path, chrono_tz::America::Los_Angeles).unwrap().is_none());
        assert!(!path.exists());
        let aside: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1);
        assert!(aside[0].starts_with("usage.json.corrupt-"), "{aside:?}");
        assert!(load(&dir.join("missing.json"), chrono_tz::UTC).unwrap().is_none());
    }
}
