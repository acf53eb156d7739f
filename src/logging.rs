//! Logging: `fern` formatting, redaction of secrets, and one writer thread for the console and
//! the size-rotated `gemini-key-manager.log` (SPEC §7).
//!
//! Every formatted line passes `redact` (the one redactor of `redact.rs`, plus key shapes) before
//! it leaves the process. Workers never write to a file or a terminal: a line is handed to the
//! writer thread over a bounded channel, and if that thread falls behind, lines are dropped and
//! counted rather than making requests wait.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender};

pub const LOG_FILE_NAME: &str = "gemini-key-manager.log";
const QUEUE: usize = 16 * 1024;
/// How long the writer gathers lines before writing them out.
const BATCH: std::time::Duration = std::time::Duration::from_millis(20);

static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK: OnceLock<Sender<Msg>> = OnceLock::new();

enum Msg {
    Line(String),
    Flush(Sender<()>),
}

/// Mask every registered secret (`redact::current`) and anything shaped like a Google API key
/// (`redact::key_shapes`: a key that is not in the pool, such as one a client sent).
pub fn redact(line: &str) -> String {
    let r = crate::redact::current();
    crate::redact::key_shapes(&r.text(line)).into_owned()
}

/// Lines dropped because the writer thread could not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// A file that rotates to `.1` … `.keep` when it would grow past `max_bytes`.
pub struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: Option<std::io::BufWriter<File>>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> std::io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        let file = Some(std::io::BufWriter::with_capacity(64 * 1024, file));
        Ok(RotatingFile { path: path.to_path_buf(), max_bytes, keep, file, size })
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(mut f) = self.file.take() {
            f.flush()?;
        }
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.file = Some(std::io::BufWriter::with_capacity(64 * 1024, file));
        self.size = 0;
        Ok(())
    }

    pub fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }

    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.max_bytes {
            self.rotate()?;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            self.size += len;
        }
        Ok(())
    }
}

/// Install the logger. `file` is `(dir, max_bytes, keep)`; `None` logs to the console only.
/// Calling it twice keeps the first logger (tests start several proxies in one process).
pub fn init(level: log::LevelFilter, file: Option<(&Path, u64, usize)>, console: bool) -> Result<(), String> {
    if SINK.get().is_some() {
        return Ok(());
    }
    let mut rotating = match file {
        Some((dir, max, keep)) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
            let path = dir.join(LOG_FILE_NAME);
            Some(
                RotatingFile::open(&path, max, keep)
                    .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let (tx, rx): (Sender<Msg>, Receiver<Msg>) = crossbeam_channel::bounded(QUEUE);
    if SINK.set(tx.clone()).is_err() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let mut file_failed = false;
            let mut stderr_buf = String::new();
            // Wake at most every BATCH, not once per line: a busy proxy logs a line per request,
            // and a wake-up per line would cost a context switch per request.
            while let Ok(first) = rx.recv() {
                std::thread::sleep(BATCH);
                let mut acks = Vec::new();
                for msg in std::iter::once(first).chain(rx.try_iter()) {
                    match msg {
                        Msg::Line(line) => {
                            if console {
                                stderr_buf.push_str(&line);
                                stderr_buf.push('\n');
                            }
                            if let Some(f) = rotating.as_mut() {
                                match f.write_line(&line) {
                                    Err(e) if !file_failed => {
                                        file_failed = true;
                                        stderr_buf.push_str(&format!("log file write failed: {e}\n"));
                                    }
                                    Err(_) => {}
                                    Ok(()) => file_failed = false,
                                }
                            }
                        }
                        Msg::Flush(ack) => acks.push(ack),
                    }
                }
                if !stderr_buf.is_empty() {
                    let _ = std::io::stderr().lock().write_all(stderr_buf.as_bytes());
                    stderr_buf.clear();
                }
                if let Some(f) = rotating.as_mut() {
                    f.flush();
                }
                for ack in acks {
                    let _ = ack.send(());
                }
            }
        })
        .map_err(|e| format!("cannot start the log writer: {e}"))?;

    fern::Dispatch::new()
        .level(level)
        // Dependencies are quiet unless we are tracing.
        .level_for("ureq", log::LevelFilter::Warn.min(level))
        .level_for("ureq_proto", log::LevelFilter::Warn.min(level))
        .level_for("rustls", log::LevelFilter::Warn.min(level))
        .level_for("tiny_http", log::LevelFilter::Warn.min(level))
        .format(|out, message, record| {
            let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
            out.finish(format_args!("{now} {:<5} {}", record.level(), message))
        })
        .chain(fern::Output::call(move |record| {
            let line = redact(&record.args().to_string());
            if tx.try_send(Msg::Line(line)).is_err() {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }))
        .apply()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Wait until every line logged so far has been written (shutdown, tests).
pub fn flush() {
    if let Some(tx) = SINK.get() {
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_and_key_shapes_are_masked() {
        crate::redact::add_tokens(["client-token-xyz".to_string()]);
        let key = "AIzaSyA1234567890abcdefghijklmnopqrstuv";
        let line = format!("GET /v1beta/models?key=client-token-xyz used {key} and AIzaShort");
        let r = redact(&line);
        assert!(!r.contains("client-token-xyz"), "{r}");
        assert!(!r.contains(key), "{r}");
        assert!(r.contains("AIzaShort"), "short words that merely start with AIza stay: {r}");
        assert!(r.contains("[REDACTED]"));
    }

    #[test]
    fn the_log_file_rotates_by_size_and_keeps_n() {
        let dir = std::env::temp_dir().join(format!("gkm-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(LOG_FILE_NAME);
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..20 {
            f.write_line(&format!("line {i:02} {}", "x".repeat(30))).unwrap();
        }
        f.flush();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert!(size(&path) <= 100 && size(&path) > 0);
        assert!(size(&dir.join(format!("{LOG_FILE_NAME}.1"))) > 0);
        assert!(size(&dir.join(format!("{LOG_FILE_NAME}.2"))) > 0);
        assert!(!dir.join(format!("{LOG_FILE_NAME}.3")).exists());
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("line 19"));
    }
}
