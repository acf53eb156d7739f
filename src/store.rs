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
use crate::pool::Changes;
use crate::store_format::{self, JournalEntry, UsageFile};

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

/// Read the usage file at startup (its journal replayed). Missing: `Ok(None)`. Corrupt: moved
/// aside to `*.corrupt-<timestamp>`, logged loudly, `Ok(None)`.
pub fn load(path: &Path, tz: chrono_tz::Tz) -> Result<Option<UsageFile>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read usage file {}: {e}", path.display())),
    };
    match store_format::parse_usage(&bytes, tz) {
        Ok(mut file) => {
            drop(bytes);
            if let Err(why) = replay(path, &mut file) {
                let journal = journal_path(path);
                let aside = corrupt_name(&journal);
                let moved = std::fs::rename(&journal, &aside).map_err(|e| e.to_string());
                log::error!(
                    "USAGE JOURNAL CORRUPT: {} ({why}); the lines before it are taken, the rest is {}",
                    journal.display(),
                    match moved {
                        Ok(()) => format!("moved to {}", aside.display()),
                        Err(e) => format!("left in place (cannot move it: {e})"),
                    }
                );
            }
            Ok(Some(file))
        }
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

/// Read the usage file and its journal without changing anything (the `usage` command).
pub fn read(path: &Path, tz: chrono_tz::Tz) -> Result<UsageFile, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read usage file {}: {e}", path.display()))?;
    let mut file =
        store_format::parse_usage(&bytes, tz).map_err(|e| format!("usage file {}: {e}", path.display()))?;
    if let Err(why) = replay(path, &mut file) {
        eprintln!("gemini-key-manager: journal {}: {why}; its later lines are left out", path.display());
    }
    Ok(file)
}

/// The journal beside a usage file in journal mode.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".journal");
    PathBuf::from(name)
}

/// Apply the journal lines that continue `file` (those naming its base id), in order. A torn
/// last line (a crash in the middle of an append) is the end of the journal; a bad line before
/// the last is an error (the lines before it are applied).
fn replay(path: &Path, file: &mut UsageFile) -> Result<(), String> {
    let Some(id) = file.journal.clone() else { return Ok(()) };
    let bytes = match std::fs::read(journal_path(path)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let mut lines = bytes.split(|b| *b == b'\n').enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let last = lines.peek().is_none_or(|(_, rest)| rest.iter().all(u8::is_ascii_whitespace));
        match serde_json::from_slice::<JournalEntry>(line) {
            // Lines of an older base: the compaction that replaced it did not get to truncate.
            Ok(entry) if entry.base != id => return Ok(()),
            Ok(entry) if entry.quota_day != file.quota_day => {
                return Err(format!(
                    "line {} is of quota day {}, not {}",
                    n + 1,
                    entry.quota_day,
                    file.quota_day
                ));
            }
            Ok(entry) => file.apply(entry),
            Err(_) if last => {
                log::warn!("usage journal {}: torn last line left out", journal_path(path).display());
                return Ok(());
            }
            Err(e) => return Err(format!("line {} is not a journal entry (column {})", n + 1, e.column())),
        }
    }
    Ok(())
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
    flush_tx: Sender<(Whole, Sender<Result<(), String>>)>,
    stop_tx: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Whether a save must write the whole state (compacting a journal) or may append what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whole {
    IfDue,
    Yes,
}

impl Persister {
    /// Start the thread that owns `app.config.usage_file`.
    pub fn spawn(app: Arc<App>, save_rx: Receiver<()>) -> Result<Persister, String> {
        let (flush_tx, flush_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let thread = std::thread::Builder::new()
            .name("persistence".into())
            .spawn(move || run(&app, &save_rx, &flush_rx, &stop_rx))
            .map_err(|e| format!("cannot start the persistence thread: {e}"))?;
        Ok(Persister { flush_tx, stop_tx, thread: Some(thread) })
    }

    /// Write the current state now and wait for it (tests).
    pub fn flush(&self) -> Result<(), String> {
        self.flush_as(Whole::IfDue)
    }

    fn flush_as(&self, whole: Whole) -> Result<(), String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.flush_tx.send((whole, tx)).map_err(|_| "the persistence thread is gone".to_string())?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the persistence thread did not answer".to_string())?
    }

    /// Final flush (whole: a journal is compacted into the file), then stop the thread.
    pub fn stop(mut self) -> Result<(), String> {
        let flushed = self.flush_as(Whole::Yes);
        let _ = self.stop_tx.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        flushed
    }
}

/// Up to this size the state is written whole each time; from it on, as a journal of changes
/// beside a base written now and then (SPEC §6: large pools)...
const JOURNAL_FROM: usize = 64 * 1024;
/// ...and whole again below this (a pool that shrank).
const JOURNAL_UNTIL: usize = JOURNAL_FROM / 2;
/// The journal is compacted into a new base when it outgrows the base (and this).
const COMPACT_FROM: u64 = 1024 * 1024;

/// The open journal of journal mode.
struct Journal {
    /// The base's id, which every line names.
    id: String,
    file: std::fs::File,
    len: u64,
    base_len: u64,
}

struct Writer {
    dirty: bool,
    last_failure_log: Option<Instant>,
    failing: bool,
    /// When the last save began (its snapshot), written or skipped.
    last_save: Option<Instant>,
    /// A hash of the bytes last written whole, `saved_at` left out: an unchanged state is not
    /// written.
    last_written: Option<u64>,
    /// Journal mode, when the state is large.
    journal: Option<Journal>,
    /// A hash of the named clients' books last journaled.
    clients_written: Option<u64>,
    /// The next save is whole: the journal is due for compaction, or a write failed (what the
    /// failed line held is in memory, and a whole write has all of it).
    whole_next: bool,
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

    fn save(&mut self, app: &App, whole: Whole) -> Result<(), String> {
        self.last_save = Some(Instant::now());
        app.save.taken();
        let started = Instant::now();
        let appending = self.journal.is_some() && whole == Whole::IfDue && !self.whole_next;
        let result = if appending { self.append(app) } else { self.write_whole(app) };
        log::debug!(
            "usage saved ({}) in {} ms",
            if appending { "journal line" } else { "whole" },
            started.elapsed().as_millis()
        );
        let path = &app.config.usage_file;
        match result {
            Ok(()) => {
                if self.failing {
                    log::warn!("usage file {} is written again", path.display());
                }
                self.failing = false;
                self.dirty = false;
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
                self.whole_next = true;
                Err(msg)
            }
        }
    }

    /// Journal mode: append one line of what changed since the last save, and sync it. The
    /// lock is held only to collect the records of the keys that changed.
    fn append(&mut self, app: &App) -> Result<(), String> {
        let now = Utc::now();
        let (changes, quota_day) = {
            let mut pool = app.pool.lock();
            pool.rollover(now);
            (pool.take_changes(now), pool.quota_day())
        };
        let Changes::Keys { keys, limits } = changes else { return self.write_whole(app) };
        let resources = app.resources.lock().take_changes();
        let mut books = UsageFile::new(quota_day, "");
        app.clients.fill(&mut books, now);
        let clients_hash =
            hash_of(&serde_json::to_vec(&(&books.clients, &books.client_history)).unwrap_or_default());
        let clients_changed = self.clients_written != Some(clients_hash);
        let Some(journal) = self.journal.as_mut() else { return self.write_whole(app) };
        let entry = JournalEntry {
            base: journal.id.clone(),
            quota_day,
            saved_at: now,
            keys,
            limits,
            resources,
            clients: clients_changed.then_some(books.clients),
            client_history: clients_changed.then_some(books.client_history),
        };
        if entry.is_empty() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&entry).map_err(|e| format!("cannot serialize usage: {e}"))?;
        line.push(b'\n');
        let redactor = crate::redact::current();
        let line = redactor.bytes(&line);
        journal.file.write_all(&line).and_then(|()| journal.file.sync_data()).map_err(|e| e.to_string())?;
        journal.len += line.len() as u64;
        self.clients_written = Some(clients_hash);
        if journal.len > journal.base_len.max(COMPACT_FROM) {
            self.whole_next = true;
        }
        Ok(())
    }

    /// The whole state: as one JSON file, or (large) as a new base with an empty journal.
    fn write_whole(&mut self, app: &App) -> Result<(), String> {
        let now = Utc::now();
        let mut snapshot = {
            let mut pool = app.pool.lock();
            pool.rollover(now);
            let mut file = pool.snapshot(now);
            pool.saved();
            file.resources = app.resources.lock().records(now);
            file
        };
        app.clients.fill(&mut snapshot, now);
        let path = &app.config.usage_file;
        let id = format!("{:x}", now.timestamp_nanos_opt().unwrap_or_default());
        if self.journal.is_some() {
            // Already in journal mode: serialized once, as the new base (it stays a base unless
            // the state shrank well below the threshold).
            snapshot.journal = Some(id.clone());
            let bytes = serde_json::to_vec(&snapshot).map_err(|e| format!("cannot serialize usage: {e}"))?;
            if bytes.len() >= JOURNAL_UNTIL {
                drop(snapshot);
                return self.write_base(path, id, &bytes);
            }
            snapshot.journal = None;
        }
        let saved_at = snapshot.saved_at.take();
        let compact = serde_json::to_vec(&snapshot).map_err(|e| format!("cannot serialize usage: {e}"))?;
        let hash = hash_of(&compact);
        if compact.len() < JOURNAL_FROM {
            if self.last_written == Some(hash) && self.journal.is_none() && !self.failing {
                return Ok(());
            }
            drop(compact);
            snapshot.saved_at = saved_at;
            let bytes =
                serde_json::to_vec_pretty(&snapshot).map_err(|e| format!("cannot serialize usage: {e}"))?;
            // Keys are fingerprints and masked forms by construction; the redactor is the backstop.
            write_atomic(path, &crate::redact::current().bytes(&bytes)).map_err(|e| e.to_string())?;
            self.last_written = Some(hash);
            if self.journal.take().is_some() {
                let _ = std::fs::remove_file(journal_path(path));
            }
            self.whole_next = false;
            return Ok(());
        }
        drop(compact);
        snapshot.saved_at = saved_at;
        snapshot.journal = Some(id.clone());
        let bytes = serde_json::to_vec(&snapshot).map_err(|e| format!("cannot serialize usage: {e}"))?;
        drop(snapshot);
        self.write_base(path, id, &bytes)
    }

    /// Journal mode: `bytes` (the whole state, naming journal `id`) as the new base, then an
    /// empty journal for it.
    fn write_base(&mut self, path: &Path, id: String, bytes: &[u8]) -> Result<(), String> {
        write_atomic(path, &crate::redact::current().bytes(bytes)).map_err(|e| e.to_string())?;
        // The base is in place; lines of the old journal name the old base and are never read
        // again, so a crash from here on loses nothing.
        let journal = journal_path(path);
        write_atomic(&journal, b"").map_err(|e| e.to_string())?;
        let file = std::fs::OpenOptions::new().append(true).open(&journal).map_err(|e| e.to_string())?;
        if self.journal.is_none() {
            log::info!(
                "usage state is {} KB: writing what changed to {} and the whole state now and then",
                bytes.len() / 1000,
                journal.display()
            );
        }
        self.journal = Some(Journal { id, file, len: 0, base_len: bytes.len() as u64 });
        self.last_written = None;
        self.clients_written = None;
        self.whole_next = false;
        Ok(())
    }
}

fn run(
    app: &App,
    save_rx: &Receiver<()>,
    flush_rx: &Receiver<(Whole, Sender<Result<(), String>>)>,
    stop_rx: &Receiver<()>,
) {
    let mut w = Writer {
        dirty: false,
        last_failure_log: None,
        failing: false,
        last_save: None,
        last_written: None,
        journal: None,
        clients_written: None,
        whole_next: false,
    };
    let mut last_roll_check = Instant::now();
    loop {
        select! {
            recv(save_rx) -> msg => {
                if msg.is_err() { return; }
                w.dirty = true;
            }
            recv(flush_rx) -> msg => {
                match msg {
                    Ok((whole, reply)) => { w.dirty = true; let _ = reply.send(w.save(app, whole)); }
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
            let _ = w.save(app, Whole::IfDue);
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
