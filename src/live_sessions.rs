//! The registry of open Live API sessions and the totals of all of them: the place each
//! session takes under `--max-live-sessions`, its counters (frames and bytes each way, tokens),
//! and what `/status` (`live`) and `/metrics` (`gkm_live_*`) show. Counting is an atomic add;
//! the table's lock is held only to add, remove or copy out a session. No I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::Serialize;

/// The sessions open now and the totals of all sessions (`/status`, `/metrics`).
#[derive(Default)]
pub struct Sessions {
    open: AtomicUsize,
    next_id: AtomicU64,
    table: Mutex<BTreeMap<u64, Arc<SessionStats>>>,
    /// Sessions accepted (`101` sent), refused at the cap, and ended.
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Frames and bytes client → Google (`up`) and Google → client (`down`), all sessions.
    totals: Counters,
}

/// Frame and byte counters of one direction pair.
#[derive(Default)]
struct Counters {
    frames_up: AtomicU64,
    frames_down: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// One open session, as `/status` shows it.
pub struct SessionStats {
    id: u64,
    model: Mutex<Option<String>>,
    key: Mutex<Option<String>>,
    started: DateTime<Utc>,
    counters: Counters,
    tokens: AtomicU64,
}

/// One session in `/status` (`live.sessions`).
#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    pub id: u64,
    pub model: Option<String>,
    /// The fingerprint of the key it uses (`null` until setup succeeded).
    pub key: Option<String>,
    pub started: String,
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub tokens: u64,
}

/// `/status`'s `live` object.
#[derive(Debug, Clone, Serialize)]
pub struct LiveView {
    pub open: usize,
    pub max: usize,
    pub sessions: Vec<SessionView>,
}

/// A place among the open sessions; dropping it frees it.
pub struct Admitted<'a> {
    sessions: &'a Sessions,
    stats: Arc<SessionStats>,
}

impl Admitted<'_> {
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }
}

impl SessionStats {
    pub fn set_model(&self, model: Option<String>) {
        *self.model.lock() = model;
    }

    pub fn set_key(&self, fingerprint: &str) {
        *self.key.lock() = Some(fingerprint.to_string());
    }

    pub fn add_tokens(&self, tokens: u64) {
        self.tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    /// This session as `/status` shows it (times formatted by `format`).
    pub fn view(&self, format: impl Fn(DateTime<Utc>) -> String) -> SessionView {
        let c = &self.counters;
        SessionView {
            id: self.id,
            model: self.model.lock().clone(),
            key: self.key.lock().clone(),
            started: format(self.started),
            frames_in: c.frames_up.load(Ordering::Relaxed),
            frames_out: c.frames_down.load(Ordering::Relaxed),
            bytes_in: c.bytes_up.load(Ordering::Relaxed),
            bytes_out: c.bytes_down.load(Ordering::Relaxed),
            tokens: self.tokens.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.sessions.table.lock().remove(&self.stats.id);
        self.sessions.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Sessions {
    /// Take a place if fewer than `max` sessions are open.
    pub(crate) fn admit(&self, max: usize) -> Option<Admitted<'_>> {
        let taken =
            self.open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1));
        if taken.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let stats = Arc::new(SessionStats {
            id,
            model: Mutex::new(None),
            key: Mutex::new(None),
            started: Utc::now(),
            counters: Counters::default(),
            tokens: AtomicU64::new(0),
        });
        self.table.lock().insert(id, stats.clone());
        Some(Admitted { sessions: self, stats })
    }

    /// A session was accepted (its `101` sent).
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// The `/status` view (times formatted by `format`).
    pub fn view(&self, max: usize, format: impl Fn(DateTime<Utc>) -> String) -> LiveView {
        let open: Vec<Arc<SessionStats>> = self.table.lock().values().cloned().collect();
        let sessions = open.iter().map(|s| s.view(&format)).collect();
        LiveView { open: self.open(), max, sessions }
    }

    /// The Live families of `/metrics`.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let t = &self.totals;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP gkm_live_sessions_open Live API sessions open now.\n# TYPE gkm_live_sessions_open gauge\n\
             gkm_live_sessions_open {}\n\
             # HELP gkm_live_sessions_total Live API sessions accepted (101 sent).\n# TYPE gkm_live_sessions_total counter\n\
             gkm_live_sessions_total {}\n\
             # HELP gkm_live_sessions_refused_total Live API sessions refused with 503 at --max-live-sessions.\n\
             # TYPE gkm_live_sessions_refused_total counter\ngkm_live_sessions_refused_total {}\n\
             # HELP gkm_live_frames_total Live API data frames relayed, by direction.\n# TYPE gkm_live_frames_total counter\n\
             gkm_live_frames_total{{direction=\"client_to_upstream\"}} {}\n\
             gkm_live_frames_total{{direction=\"upstream_to_client\"}} {}\n\
             # HELP gkm_live_bytes_total Live API payload bytes relayed, by direction.\n# TYPE gkm_live_bytes_total counter\n\
             gkm_live_bytes_total{{direction=\"client_to_upstream\"}} {}\n\
             gkm_live_bytes_total{{direction=\"upstream_to_client\"}} {}\n",
            self.open(),
            load(&self.accepted),
            load(&self.refused),
            load(&t.frames_up),
            load(&t.frames_down),
            load(&t.bytes_up),
            load(&t.bytes_down),
        );
    }

    /// One data frame of `bytes` relayed: client → Google (`up`) or back.
    pub(crate) fn count(&self, session: &SessionStats, up: bool, bytes: usize) {
        for c in [&self.totals, &session.counters] {
            let (frames, b) = if up { (&c.frames_up, &c.bytes_up) } else { (&c.frames_down, &c.bytes_down) };
            frames.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }
}
