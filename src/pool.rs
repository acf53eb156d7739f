//! Pool: the keys and what is known about them — which key serves the next request, what each
//! upstream [`Outcome`] does (counts, cooldowns, parks, disabling), the quota day and its reset,
//! reloads of the key file, and the snapshot that gets persisted.
//!
//! It must never do I/O, take a lock (the caller guards the one [`KeyState`]), read the clock
//! (every call that needs the time takes `now`), or let a raw key out except through
//! [`Pick::Key`] and [`KeyState::disabled_keys`] (the two places that send it upstream): its
//! `Debug`, status and snapshot show fingerprints and masks only.
//!
//! # Rules
//!
//! * Parks and cooldowns belong to a **project** and a model: keys sharing a project label share
//!   them; a key without a label is its own project. A limit recorded for a request without a
//!   model goes to [`ALL_MODELS`] and blocks every model of that project.
//! * Requests without a model (models.list, files) may use any key that is not disabled.
//! * Per-day 429: parked until the next reset. Per-minute 429: cooling for the given delay.
//!   Detail-less 429: 60 s, doubling with each repeat that quota day for the project and model,
//!   capped at the next reset. Invalid key: that key alone is disabled.
//! * Success counts one request and `tokens` for the key and model (model-less requests count
//!   under [`NO_MODEL`]) and sets `last_used`. For a stream whose tokens are known only at its
//!   end, record `Success` with the tokens then.
//! * The quota day is the calendar date of `now` in the reset zone; the reset is the next local
//!   midnight (DST-aware; where a zone skips midnight, the first instant of the day). `pick`,
//!   `record` and `restore` roll the day over themselves; [`KeyState::rollover`] is also public so
//!   an idle proxy resets on a timer.
//! * Quota intelligence (SPEC §14, the books in `limits`): every attempt with a model is counted
//!   for its project when its key is picked (and taken back when Google refuses it with a 429);
//!   a 429's `QuotaFailure` teaches the project's limits for the model; `--limits` sets them too.
//!   A project a known limit would refuse is not picked, and its slot-free time is what
//!   [`Pick::Exhausted`] reports. Bare 429s from three projects within 10 s cool the model for the
//!   whole pool instead of each project (`limits::Throttle`).

use crate::calendar::{next_reset_at, quota_day_at};
use crate::history::History;
use crate::keyfile::{KeySpec, ProjectId, fingerprint, mask};
use crate::limits::{Bare, Book, Configured, Limits, Throttle, Until, Violation};
use crate::quota::Outcome;
use crate::status::{
    self, KeyCounts, KeyStateName, KeyView, LimitsView, ModelLimitsView, ModelView, StatusView, Totals,
};
use crate::store_format::{ALL_MODELS, DayTotals, KeyRecord, LimitRecord, ModelRecord, NO_MODEL, UsageFile};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

/// Past quota days kept in the history.
pub const HISTORY_DAYS: i64 = 30;
/// `Retry-After` when every key is disabled: nothing ends on its own then, and the re-probe
/// interval is not known here, so the hour that is its default.
pub const ALL_DISABLED_RETRY_SECS: u64 = 3600;
/// First cooldown of a detail-less 429; doubles with each repeat that day.
pub const BACKOFF_BASE_SECS: i64 = 60;
/// Doublings stop here (60 s × 2^12 is far past any day anyway).
const BACKOFF_MAX_SHIFT: u32 = 12;
/// Up to this many running limits, a pick scans them (no map key is built); past it, it looks
/// the key's project up, so that a pick costs the same whatever the pool's size.
const LIMITS_SCANNED: usize = 16;

/// Result of [`KeyState::pick`].
#[derive(Clone, PartialEq, Eq)]
pub enum Pick {
    /// Use this key; pass `idx` and `fingerprint` back to [`KeyState::record`].
    Key { idx: usize, key: String, fingerprint: String },
    /// No untried key is usable for `model`. `until` is when the first non-disabled key becomes
    /// usable again (`now` itself when usable keys exist but were all tried by this request);
    /// `None` when every key is disabled. `retry_after_secs` = ceil(until − now), at least 1;
    /// [`ALL_DISABLED_RETRY_SECS`] when every key is disabled.
    Exhausted { retry_after_secs: u64, until: Option<DateTime<Utc>>, model: Option<String> },
}

impl fmt::Debug for Pick {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pick::Key { idx, fingerprint, .. } => f
                .debug_struct("Key")
                .field("idx", idx)
                .field("fingerprint", fingerprint)
                .finish_non_exhaustive(),
            Pick::Exhausted { retry_after_secs, until, model } => f
                .debug_struct("Exhausted")
                .field("retry_after_secs", retry_after_secs)
                .field("until", until)
                .field("model", model)
                .finish(),
        }
    }
}

/// What [`KeyState::record`] did, for the caller's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// One request (and the tokens) counted.
    Counted,
    /// The key's project cools down for the model until then.
    Cooling { until: DateTime<Utc> },
    /// The key's project is parked for the model until then (the next reset).
    Parked { until: DateTime<Utc> },
    /// The key is disabled.
    Disabled,
    /// A bare 429 that is part of pool-wide throttling: the model is cooled for every key until
    /// then, and no project was cooled for it.
    Throttled { until: DateTime<Utc> },
    /// Nothing to change (transient or client error).
    Nothing,
    /// The key is no longer in the pool (a reload came between pick and record).
    UnknownKey,
}

/// What [`KeyState::reload`] changed, by fingerprint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub kept: usize,
    /// Kept keys that were disabled and get a fresh chance.
    pub reenabled: Vec<String>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    requests: u64,
    tokens: u64,
}

struct Key {
    key: String,
    fingerprint: String,
    masked: String,
    project: Option<String>,
    disabled: Option<(String, DateTime<Utc>)>,
    last_used: Option<DateTime<Utc>>,
    /// Today's usage per model.
    usage: BTreeMap<String, Usage>,
    /// Changed since the last save (its index is in [`KeyState::changed`]).
    changed: bool,
}

impl Key {
    fn new(spec: KeySpec) -> Key {
        Key {
            fingerprint: fingerprint(&spec.key),
            masked: mask(&spec.key),
            key: spec.key,
            project: spec.project,
            disabled: None,
            last_used: None,
            usage: BTreeMap::new(),
            changed: false,
        }
    }

    /// Is `pid` this key's project (what `project_id` would return)?
    fn belongs_to(&self, pid: &ProjectId) -> bool {
        match (pid, &self.project) {
            (ProjectId::Label(l), Some(label)) => l == label,
            (ProjectId::Solo(f), None) => *f == self.fingerprint,
            _ => false,
        }
    }

    fn project_id(&self) -> ProjectId {
        match &self.project {
            Some(label) => ProjectId::Label(label.clone()),
            None => ProjectId::Solo(self.fingerprint.clone()),
        }
    }

    fn totals(&self) -> Usage {
        self.usage.values().fold(Usage::default(), |a, u| Usage {
            requests: a.requests.saturating_add(u.requests),
            tokens: a.tokens.saturating_add(u.tokens),
        })
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("fingerprint", &self.fingerprint)
            .field("masked", &self.masked)
            .field("project", &self.project)
            .field("disabled", &self.disabled)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Limit {
    parked_until: Option<DateTime<Utc>>,
    cooling_until: Option<DateTime<Utc>>,
    streak: u32,
}

impl Limit {
    fn parked(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parked_until.filter(|t| *t > now)
    }

    fn cooling(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cooling_until.filter(|t| *t > now)
    }

    /// When this limit stops blocking, if it blocks at `now`.
    fn blocked_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parked(now).max(self.cooling(now))
    }
}

/// `t + d`, saturating at chrono's last representable instant instead of panicking.
fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn later(a: Option<DateTime<Utc>>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(a.map_or(b, |a| a.max(b)))
}

/// The pool's whole state. See the module comment for the rules.
#[derive(Debug)]
pub struct KeyState {
    tz: Tz,
    quota_day: NaiveDate,
    keys: Vec<Key>,
    /// Fingerprint → index in `keys` (rebuilt whenever `keys` changes).
    by_fingerprint: HashMap<String, usize>,
    limits: BTreeMap<(ProjectId, String), Limit>,
    history: History,
    cursor: usize,
    /// What each project sent and learned, per model (SPEC §14).
    books: BTreeMap<(ProjectId, String), Book>,
    /// `--limits`.
    configured: Configured,
    /// Whether 429s teach limits (on unless the operator turned it off).
    learning: bool,
    /// Some limit is known (configured or learned): picks consult the books.
    gating: bool,
    /// Pool-wide throttling per model.
    throttles: BTreeMap<String, Throttle<ProjectId, Option<Limit>>>,
    /// Project → its keys' indices, ascending (rebuilt whenever `keys` changes).
    by_project: HashMap<ProjectId, Vec<usize>>,
    /// Per model: which keys a pick still walks over (see [`Candidates`]).
    rotation: HashMap<String, Candidates>,
    /// Keys changed since the last save (each once), for a save that writes only those.
    changed: Vec<usize>,
    /// Everything may have changed (a new day, a reload, a restore): the next save is whole.
    all_changed: bool,
}

/// Per model: the keys not known to be blocked for it, and when the blocked ones may serve
/// again. A pick walks the open keys from the cursor and moves each blocked one it meets to
/// `waking` (until its block ends; a disabled key leaves until it is enabled), so that under a
/// long park a pick does not step over every parked key again: its cost follows the keys whose
/// state changed, not the pool's size. What can end a block early (a new day, a reload, an
/// enabled key, an attempt Google refused and the books gave back, pool-wide throttling taken
/// back) reopens the keys it concerns.
#[derive(Debug, Default)]
struct Candidates {
    open: BTreeSet<usize>,
    waking: BTreeSet<(DateTime<Utc>, usize)>,
}

/// At most this many models keep a [`Candidates`] (a client may name any model); past it they
/// are all dropped and rebuilt as asked.
const ROTATIONS_KEPT: usize = 256;

/// What changed since the last save, from [`KeyState::take_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changes {
    /// Too much to list (the day rolled over, the key file was reloaded, a file was restored):
    /// take a whole [`KeyState::snapshot`].
    Everything,
    /// The records of the keys that changed, and the books of their projects.
    Keys { keys: BTreeMap<String, KeyRecord>, limits: Vec<LimitRecord> },
}

impl KeyState {
    /// A pool of `keys` (duplicates dropped, first one wins) on `now`'s quota day. An empty list
    /// makes a pool whose every pick is [`Pick::Exhausted`]; refusing it is the caller's job.
    pub fn new(keys: Vec<KeySpec>, tz: Tz, now: DateTime<Utc>) -> Self {
        let keys: Vec<Key> = dedup(keys).into_iter().map(Key::new).collect();
        KeyState {
            tz,
            quota_day: quota_day_at(tz, now),
            by_fingerprint: index_of(&keys),
            by_project: index_by_project(&keys),
            rotation: HashMap::new(),
            keys,
            limits: BTreeMap::new(),
            history: History::default(),
            cursor: 0,
            books: BTreeMap::new(),
            configured: Configured::default(),
            learning: true,
            gating: false,
            throttles: BTreeMap::new(),
            changed: Vec::new(),
            all_changed: true,
        }
    }

    /// Key `idx` changed (its counts, its state, or its project's books or limits).
    fn touch(&mut self, idx: usize) {
        if let Some(key) = self.keys.get_mut(idx)
            && !key.changed
        {
            key.changed = true;
            self.changed.push(idx);
        }
    }

    /// Every key of `project` changed (a rare event: pool-wide throttling took its limit back).
    fn touch_project(&mut self, project: &ProjectId) {
        for idx in self.by_project.get(project).cloned().unwrap_or_default() {
            self.touch(idx);
        }
    }

    /// The keys of `project` may serve before the time a pick noted (for every model).
    fn reopen_project(&mut self, project: &ProjectId) {
        let Some(idxs) = self.by_project.get(project) else { return };
        for c in self.rotation.values_mut() {
            c.open.extend(idxs.iter().copied());
        }
    }

    /// What changed since the last call (or the last [`KeyState::saved`]); the pool then counts
    /// itself saved up to here. The cost follows the keys that changed, not the pool's size.
    pub fn take_changes(&mut self, now: DateTime<Utc>) -> Changes {
        if self.all_changed {
            return Changes::Everything;
        }
        let mut keys = BTreeMap::new();
        let mut projects = BTreeSet::new();
        for idx in std::mem::take(&mut self.changed) {
            self.keys[idx].changed = false;
            let key = &self.keys[idx];
            keys.insert(key.fingerprint.clone(), self.record_of(key, now));
            projects.insert(key.project_id());
        }
        let limits = projects.iter().flat_map(|pid| self.limit_records_of(pid)).collect();
        Changes::Keys { keys, limits }
    }

    /// A whole snapshot was taken and handed to the writer: nothing is pending any more.
    pub fn saved(&mut self) {
        for idx in std::mem::take(&mut self.changed) {
            if let Some(key) = self.keys.get_mut(idx) {
                key.changed = false;
            }
        }
        self.all_changed = false;
    }

    /// The next save must be whole (its delta was lost: a failed write).
    pub fn changed_everything(&mut self) {
        self.all_changed = true;
    }

    /// Set the configured limits (`--limits`) and whether 429s teach limits.
    pub fn set_limits(&mut self, configured: Configured, learning: bool) {
        self.rotation.clear();
        self.gating = !configured.is_empty() || self.books.values().any(|b| !b.learned.is_empty());
        self.configured = configured;
        self.learning = learning;
    }

    /// The limits that apply to `project` for `model`: configured, else learned.
    fn limits_for(&self, book: Option<&Book>, model: &str) -> Limits {
        let learned = book.map(|b| b.learned).unwrap_or_default();
        self.configured.of(model).or(learned)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The quota day the counts belong to (as of the last rollover).
    pub fn quota_day(&self) -> NaiveDate {
        self.quota_day
    }

    /// The next local midnight after `now` in the reset zone.
    pub fn next_reset(&self, now: DateTime<Utc>) -> DateTime<Tz> {
        next_reset_at(self.tz, now)
    }

    /// Past days' totals per fingerprint (at most [`HISTORY_DAYS`] days).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Keys that can serve some model at `now`: not disabled and not blocked for every model.
    /// (Blocks for every model come only from model-less 429s and the seed's flat parks, so in
    /// practice this is the "not disabled" count of `/healthz`.)
    pub fn usable_count(&self, now: DateTime<Utc>) -> usize {
        (0..self.keys.len())
            .filter(|&i| self.keys[i].disabled.is_none())
            .filter(|&i| self.blocked_until(i, ALL_MODELS, now).is_none())
            .count()
    }

    /// Keys usable for `model` at `now` (any non-disabled key when `model` is `None`).
    pub fn usable_for(&self, model: Option<&str>, now: DateTime<Utc>) -> usize {
        (0..self.keys.len()).filter(|&i| self.usable(i, model, now)).count()
    }

    fn usable(&self, idx: usize, model: Option<&str>, now: DateTime<Utc>) -> bool {
        // A request without a model still may not use a key blocked for all models (SPEC §5).
        self.keys[idx].disabled.is_none()
            && self.blocked_until(idx, model.unwrap_or(ALL_MODELS), now).is_none()
    }

    /// When key `idx` stops being blocked for `model` (its project's limit for the model or for
    /// all models), if it is blocked at `now`.
    /// (Runs for every pick: a scan of the few running limits, without building their keys; two
    /// lookups when there are many.)
    fn blocked_until(&self, idx: usize, model: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let key = &self.keys[idx];
        let mut until = if self.limits.is_empty() {
            None
        } else if self.limits.len() <= LIMITS_SCANNED {
            self.limits
                .iter()
                .filter(|((pid, m), _)| key.belongs_to(pid) && (m == model || m == ALL_MODELS))
                .filter_map(|(_, limit)| limit.blocked_until(now))
                .max()
        } else {
            let pid = key.project_id();
            let of =
                |m: &str| self.limits.get(&(pid.clone(), m.to_string())).and_then(|l| l.blocked_until(now));
            of(model).max(if model == ALL_MODELS { None } else { of(ALL_MODELS) })
        };
        if model != ALL_MODELS {
            if let Some(t) = self.throttles.get(model).and_then(|t| t.until(now)) {
                until = until.max(Some(t));
            }
            if self.gating {
                until = until.max(self.gate(&key.project_id(), model, now));
            }
        }
        until
    }

    /// When `project` may send one more request for `model`, if a known limit refuses it now.
    fn gate(&self, project: &ProjectId, model: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let book = self.books.get(&(project.clone(), model.to_string()));
        let limits = self.limits_for(book, model);
        if limits.is_empty() {
            return None;
        }
        match book.unwrap_or(&Book::default()).blocked(&limits, now)? {
            Until::At(t) => Some(t),
            Until::Reset => Some(self.next_reset(now).with_timezone(&Utc)),
        }
    }

    /// Count one attempt of key `idx` for `model` at `now` (model-less requests spend no quota).
    fn count_sent(&mut self, idx: usize, model: Option<&str>, now: DateTime<Utc>) {
        if let Some(model) = model.filter(|m| *m != ALL_MODELS) {
            let pid = self.keys[idx].project_id();
            self.books.entry((pid, model.to_string())).or_default().sent(now);
            self.touch(idx);
        }
    }

    /// The attempt of the key with `fingerprint` for `model`, picked at `at`, was refused with a
    /// 429: Google did not count it, so neither does the pool.
    pub fn refused(&mut self, fingerprint: &str, model: Option<&str>, at: DateTime<Utc>) {
        let (Some(model), Some(&idx)) = (model, self.by_fingerprint.get(fingerprint)) else { return };
        let pid = self.keys[idx].project_id();
        if let Some(book) = self.books.get_mut(&(pid.clone(), model.to_string())) {
            book.refused(at);
            self.touch(idx);
            self.reopen_project(&pid);
        }
    }

    /// Learn the limits a 429's `QuotaFailure` names for the project of the key with
    /// `fingerprint` (a violation without a model is `model`'s). Whether anything was learned.
    pub fn learn(&mut self, fingerprint: &str, model: Option<&str>, violations: &[Violation]) -> bool {
        let Some(pid) = self.project_of(fingerprint).filter(|_| self.learning) else { return false };
        let mut learned = false;
        for v in violations {
            let Some(m) = v.model.as_deref().or(model).filter(|m| *m != ALL_MODELS) else { continue };
            self.books.entry((pid.clone(), m.to_string())).or_default().learn(v.kind, v.value);
            learned = true;
        }
        self.gating |= learned;
        if learned && let Some(&idx) = self.by_fingerprint.get(fingerprint) {
            self.touch(idx);
            // A limit learned anew may be higher than the one a pick noted the block of.
            self.reopen_project(&pid);
        }
        learned
    }

    /// Pick the next key for `model`: round-robin over the keys usable for it, skipping `tried`
    /// (fingerprints of the keys this request already used: indices would shift if the key file
    /// were reloaded between two attempts). See [`Pick::Exhausted`] for when none is left.
    pub fn pick(&mut self, model: Option<&str>, tried: &[String], now: DateTime<Utc>) -> Pick {
        self.rollover(now);
        match self.walk_for(model, tried, now) {
            Ok(idx) => {
                self.cursor = (idx + 1) % self.keys.len();
                self.count_sent(idx, model, now);
                let key = &self.keys[idx];
                Pick::Key { idx, key: key.key.clone(), fingerprint: key.fingerprint.clone() }
            }
            Err(exhausted) => exhausted,
        }
    }

    /// One walk of `model`'s candidates: the key found, or the [`Pick::Exhausted`] answer.
    fn walk_for(&mut self, model: Option<&str>, tried: &[String], now: DateTime<Utc>) -> Result<usize, Pick> {
        let name = model.unwrap_or(ALL_MODELS);
        let mut candidates = self.candidates(name, now);
        let found = match self.walk(&mut candidates, model, tried, now) {
            Some(idx) => Ok(idx),
            None => Err(self.exhausted_after_walk(&mut candidates, model, now)),
        };
        if let Some(slot) = self.rotation.get_mut(name) {
            *slot = candidates;
        }
        found
    }

    /// The [`Candidates`] of `model`, taken out of the map (put back by the caller), with the
    /// keys whose block has ended at `now` open again.
    fn candidates(&mut self, model: &str, now: DateTime<Utc>) -> Candidates {
        if !self.rotation.contains_key(model) {
            if self.rotation.len() >= ROTATIONS_KEPT {
                self.rotation.clear();
            }
            let open = (0..self.keys.len()).collect();
            self.rotation.insert(model.to_string(), Candidates { open, waking: BTreeSet::new() });
        }
        let mut c = self.rotation.get_mut(model).map(std::mem::take).unwrap_or_default();
        while let Some(&(t, idx)) = c.waking.first() {
            if t > now {
                break;
            }
            c.waking.pop_first();
            c.open.insert(idx);
        }
        c
    }

    /// Why key `idx` cannot serve `model` at `now`: `Some(Some(t))` blocked until `t`,
    /// `Some(None)` disabled, `None` when it can.
    fn block_of(&self, idx: usize, model: Option<&str>, now: DateTime<Utc>) -> Option<Option<DateTime<Utc>>> {
        if self.keys[idx].disabled.is_some() {
            return Some(None);
        }
        self.blocked_until(idx, model.unwrap_or(ALL_MODELS), now).map(Some)
    }

    /// The first open key from the cursor on (wrapping) that can serve `model` and is not in
    /// `tried`; each blocked key met on the way leaves the open set.
    fn walk(
        &self,
        c: &mut Candidates,
        model: Option<&str>,
        tried: &[String],
        now: DateTime<Utc>,
    ) -> Option<usize> {
        let start = self.cursor.min(self.keys.len());
        let mut blocked = Vec::new();
        let mut found = None;
        for idx in c.open.range(start..).chain(c.open.range(..start)).copied() {
            match self.block_of(idx, model, now) {
                Some(until) => blocked.push((idx, until)),
                None if tried.contains(&self.keys[idx].fingerprint) => {}
                None => {
                    found = Some(idx);
                    break;
                }
            }
        }
        for (idx, until) in blocked {
            c.open.remove(&idx);
            if let Some(t) = until {
                c.waking.insert((t, idx));
            }
        }
        found
    }

    /// [`Pick::Exhausted`] after a walk that found no key: the open keys left can serve but were
    /// tried (so: now), else the first block to end (its entry checked: a key reopened and
    /// blocked again has an older entry too), else every key is disabled.
    fn exhausted_after_walk(&self, c: &mut Candidates, model: Option<&str>, now: DateTime<Utc>) -> Pick {
        let until = if c.open.is_empty() {
            loop {
                let Some(&(t, idx)) = c.waking.first() else { break None };
                match self.block_of(idx, model, now) {
                    Some(Some(actual)) if actual == t => break Some(t),
                    Some(Some(actual)) => {
                        c.waking.pop_first();
                        c.waking.insert((actual, idx));
                    }
                    Some(None) => {
                        c.waking.pop_first();
                    }
                    None => {
                        c.waking.pop_first();
                        c.open.insert(idx);
                        break Some(now);
                    }
                }
            }
        } else {
            Some(now)
        };
        exhausted_at(until, model, now)
    }

    /// Like [`pick`](Self::pick), among the keys of `project` only (a server-side resource lives
    /// there: SPEC §5). `Exhausted` with `until: None` when none of its keys is in the pool and
    /// enabled.
    pub fn pick_in_project(
        &mut self,
        project: &ProjectId,
        model: Option<&str>,
        tried: &[String],
        now: DateTime<Utc>,
    ) -> Pick {
        self.rollover(now);
        let n = self.keys.len();
        let idxs = self.by_project.get(project).map(Vec::as_slice).unwrap_or_default();
        let from = idxs.partition_point(|&i| i < self.cursor);
        let order = idxs[from..].iter().chain(&idxs[..from]).copied();
        let found = order
            .into_iter()
            .find(|&idx| !tried.contains(&self.keys[idx].fingerprint) && self.usable(idx, model, now));
        if let Some(idx) = found {
            let key = &self.keys[idx];
            self.cursor = (idx + 1) % n;
            let pick = Pick::Key { idx, key: key.key.clone(), fingerprint: key.fingerprint.clone() };
            self.count_sent(idx, model, now);
            return pick;
        }
        self.exhausted_in(project, model, now)
    }

    /// The project of the key with this fingerprint, if it is in the pool.
    pub fn project_of(&self, fingerprint: &str) -> Option<ProjectId> {
        self.by_fingerprint.get(fingerprint).map(|&i| self.keys[i].project_id())
    }

    /// Every project of the pool once, in key-file order, with the fingerprint of its first key.
    pub fn projects(&self) -> Vec<(ProjectId, String)> {
        let mut firsts: Vec<(usize, &ProjectId)> =
            self.by_project.iter().filter_map(|(pid, idxs)| Some((*idxs.first()?, pid))).collect();
        firsts.sort_unstable_by_key(|(i, _)| *i);
        firsts.into_iter().map(|(i, pid)| (pid.clone(), self.keys[i].fingerprint.clone())).collect()
    }

    /// The answer when no key is left for `model`: when the first key becomes usable again
    /// (now, if some key is usable). A walk of the model's candidates, not a scan of the pool.
    pub fn exhausted(&mut self, model: Option<&str>, now: DateTime<Utc>) -> Pick {
        match self.walk_for(model, &[], now) {
            Ok(_) => exhausted_at(Some(now), model, now),
            Err(exhausted) => exhausted,
        }
    }

    /// [`exhausted`](Self::exhausted) among the keys of `project` (its keys only are looked at).
    pub fn exhausted_in(&self, project: &ProjectId, model: Option<&str>, now: DateTime<Utc>) -> Pick {
        let idxs = self.by_project.get(project).map(Vec::as_slice).unwrap_or_default();
        let earliest = idxs
            .iter()
            .filter(|&&i| self.keys[i].disabled.is_none())
            .map(|&i| self.blocked_until(i, model.unwrap_or(ALL_MODELS), now).unwrap_or(now))
            .min();
        exhausted_at(earliest, model, now)
    }

    /// The current index of the key picked as (`idx`, `fingerprint`): `idx` if it still holds
    /// that key, else wherever a reload moved it, else `None`.
    fn resolve(&self, idx: usize, fingerprint: &str) -> Option<usize> {
        if self.keys.get(idx).is_some_and(|k| k.fingerprint == fingerprint) {
            return Some(idx);
        }
        self.by_fingerprint.get(fingerprint).copied()
    }

    fn limit_mut(&mut self, idx: usize, model: Option<&str>) -> &mut Limit {
        let pid = self.keys[idx].project_id();
        let model = model.unwrap_or(ALL_MODELS).to_string();
        self.limits.entry((pid, model)).or_default()
    }

    /// Apply the outcome of an attempt with the key picked as (`idx`, `fingerprint`) for `model`.
    /// `tokens` counts only with [`Outcome::Success`].
    pub fn record(
        &mut self,
        idx: usize,
        fingerprint: &str,
        model: Option<&str>,
        outcome: &Outcome,
        tokens: u64,
        now: DateTime<Utc>,
    ) -> Recorded {
        self.rollover(now);
        let Some(idx) = self.resolve(idx, fingerprint) else {
            return Recorded::UnknownKey;
        };
        if !matches!(outcome, Outcome::Transient | Outcome::ClientError) {
            self.touch(idx);
        }
        let reset = self.next_reset(now).with_timezone(&Utc);
        match outcome {
            Outcome::Success => {
                let key = &mut self.keys[idx];
                let usage = key.usage.entry(model.unwrap_or(NO_MODEL).to_string()).or_default();
                usage.requests = usage.requests.saturating_add(1);
                usage.tokens = usage.tokens.saturating_add(tokens);
                key.last_used = Some(now);
                if let Some(model) = model.filter(|m| *m != ALL_MODELS && tokens > 0) {
                    let pid = self.keys[idx].project_id();
                    self.books.entry((pid, model.to_string())).or_default().tokens(tokens, now);
                }
                Recorded::Counted
            }
            Outcome::QuotaPerDay => {
                let limit = self.limit_mut(idx, model);
                limit.parked_until = later(limit.parked_until, reset);
                Recorded::Parked { until: reset }
            }
            Outcome::QuotaPerMinute { retry } => {
                let retry = (*retry).clamp(crate::quota::MIN_RETRY, crate::quota::MAX_RETRY);
                let delay = Duration::from_std(retry).unwrap_or(Duration::seconds(60));
                let until = add(now, delay);
                let limit = self.limit_mut(idx, model);
                limit.cooling_until = later(limit.cooling_until, until);
                Recorded::Cooling { until: limit.cooling_until.unwrap_or(until) }
            }
            Outcome::RateLimited => {
                if let Some(m) = model.filter(|m| *m != ALL_MODELS) {
                    let pid = self.keys[idx].project_id();
                    let before = self.limits.get(&(pid.clone(), m.to_string())).copied();
                    match self.throttles.entry(m.to_string()).or_default().bare(pid, before, now) {
                        Bare::Project => {}
                        Bare::PoolWide { until, undo } => {
                            for (pid, before) in undo {
                                self.touch_project(&pid);
                                self.reopen_project(&pid);
                                let at = (pid, m.to_string());
                                match before {
                                    Some(limit) => self.limits.insert(at, limit),
                                    None => self.limits.remove(&at),
                                };
                            }
                            return Recorded::Throttled { until };
                        }
                    }
                }
                let limit = self.limit_mut(idx, model);
                let backoff = BACKOFF_BASE_SECS << limit.streak.min(BACKOFF_MAX_SHIFT);
                let until = add(now, Duration::seconds(backoff)).min(reset);
                limit.streak = limit.streak.saturating_add(1);
                limit.cooling_until = later(limit.cooling_until, until);
                Recorded::Cooling { until: limit.cooling_until.unwrap_or(until) }
            }
            Outcome::KeyInvalid { reason } => {
                self.keys[idx].disabled = Some((reason.clone(), now));
                Recorded::Disabled
            }
            Outcome::Transient | Outcome::ClientError => Recorded::Nothing,
        }
    }

    /// Book `tokens` against a key and model without counting a request (a Live session's
    /// `usageMetadata` frames, after the session itself was counted by [`KeyState::record`]).
    /// False when the key has left the pool.
    pub fn add_tokens(
        &mut self,
        idx: usize,
        fingerprint: &str,
        model: Option<&str>,
        tokens: u64,
        now: DateTime<Utc>,
    ) -> bool {
        self.rollover(now);
        let Some(idx) = self.resolve(idx, fingerprint) else { return false };
        self.touch(idx);
        let key = &mut self.keys[idx];
        let usage = key.usage.entry(model.unwrap_or(NO_MODEL).to_string()).or_default();
        usage.tokens = usage.tokens.saturating_add(tokens);
        key.last_used = Some(now);
        true
    }

    /// If `now` is on a later quota day: today's counts move into the history (30 days kept),
    /// every per-day park ends, the backoff streaks restart, and the quota day advances. Running
    /// cooldowns run on (per-minute quotas do not reset at midnight). Returns whether it rolled.
    /// A clock that goes back never rolls the day backwards.
    pub fn rollover(&mut self, now: DateTime<Utc>) -> bool {
        let today = quota_day_at(self.tz, now);
        if today <= self.quota_day {
            return false;
        }
        let past = self.quota_day;
        for key in &mut self.keys {
            let totals = key.totals();
            key.usage.clear();
            let totals = DayTotals { requests: totals.requests, tokens: totals.tokens };
            if !totals.is_zero() {
                self.history.add(past, &key.fingerprint, totals);
            }
        }
        for limit in self.limits.values_mut() {
            limit.parked_until = None;
            limit.streak = 0;
        }
        self.limits.retain(|_, l| l.cooling(now).is_some());
        for book in self.books.values_mut() {
            book.new_day();
        }
        self.books.retain(|_, b| !b.is_idle(now));
        for throttle in self.throttles.values_mut() {
            throttle.new_day();
        }
        self.throttles.retain(|_, t| !t.is_idle(now));
        self.quota_day = today;
        self.prune_history();
        self.all_changed = true;
        self.rotation.clear();
        true
    }

    fn prune_history(&mut self) {
        if let Some(cutoff) = self.quota_day.checked_sub_signed(Duration::days(HISTORY_DAYS)) {
            self.history.keep_from(cutoff);
        }
    }

    /// Replace the key list. Refused (the pool unchanged) if it would leave no keys. Keys that
    /// stay (matched by the key itself) keep their counts, parks and cooldowns and take their new
    /// project label; disabled ones are enabled again (the operator has acted); removed keys go,
    /// new keys join. Index positions change: pending `record`s find their key by fingerprint.
    pub fn reload(&mut self, keys: Vec<KeySpec>) -> Result<ReloadReport, &'static str> {
        let specs = dedup(keys);
        if specs.is_empty() {
            return Err("the new key list is empty; keeping the current keys");
        }
        let mut old: HashMap<String, Key> = self.keys.drain(..).map(|k| (k.key.clone(), k)).collect();
        let mut report = ReloadReport::default();
        for spec in specs {
            match old.remove(&spec.key) {
                Some(mut key) => {
                    report.kept += 1;
                    if key.disabled.take().is_some() {
                        report.reenabled.push(key.fingerprint.clone());
                    }
                    key.project = spec.project;
                    self.keys.push(key);
                }
                None => {
                    let key = Key::new(spec);
                    report.added.push(key.fingerprint.clone());
                    self.keys.push(key);
                }
            }
        }
        report.removed = old.into_values().map(|k| k.fingerprint).collect();
        report.removed.sort();
        self.by_fingerprint = index_of(&self.keys);
        self.by_project = index_by_project(&self.keys);
        self.rotation.clear();
        self.cursor = 0;
        self.changed.clear();
        self.keys.iter_mut().for_each(|k| k.changed = false);
        self.all_changed = true;
        let projects: HashSet<ProjectId> = self.keys.iter().map(Key::project_id).collect();
        self.limits.retain(|(pid, _), _| projects.contains(pid));
        self.books.retain(|(pid, _), _| projects.contains(pid));
        Ok(report)
    }

    /// Disabled keys, for the re-probe loop: `(index, raw key)`.
    pub fn disabled_keys(&self) -> Vec<(usize, String)> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.disabled.is_some())
            .map(|(i, k)| (i, k.key.clone()))
            .collect()
    }

    /// Enable the key with this fingerprint (a re-probe succeeded). Whether it was disabled.
    pub fn enable(&mut self, fingerprint: &str) -> bool {
        let Some(&idx) = self.by_fingerprint.get(fingerprint) else { return false };
        self.touch(idx);
        for c in self.rotation.values_mut() {
            c.open.insert(idx);
        }
        self.keys[idx].disabled.take().is_some()
    }

    /// What gets persisted: no raw key, only limits still running at `now`.
    pub fn snapshot(&self, now: DateTime<Utc>) -> UsageFile {
        let mut file = UsageFile::new(self.quota_day, self.tz.name());
        file.saved_at = Some(now);
        file.history = self.history.clone();
        for key in &self.keys {
            file.keys.insert(key.fingerprint.clone(), self.record_of(key, now));
        }
        file.limits = self
            .books
            .iter()
            .filter(|(_, b)| worth_saving(b))
            .map(|((pid, model), b)| limit_record(pid, model, b))
            .collect();
        file
    }

    /// The persisted form of `key`: today's usage and its project's running limits at `now`.
    fn record_of(&self, key: &Key, now: DateTime<Utc>) -> KeyRecord {
        let mut models: BTreeMap<String, ModelRecord> = key
            .usage
            .iter()
            .map(|(m, u)| {
                let record = ModelRecord { requests: u.requests, tokens: u.tokens, ..ModelRecord::default() };
                (m.clone(), record)
            })
            .collect();
        for (model, limit) in self.limits_of(&key.project_id()) {
            let parked = limit.parked(now);
            let cooling = limit.cooling(now);
            if parked.is_none() && cooling.is_none() && limit.streak == 0 {
                continue;
            }
            let record = models.entry(model.to_string()).or_default();
            record.parked_until = parked;
            record.cooling_until = cooling;
            record.cooldown_streak = limit.streak;
        }
        KeyRecord {
            masked: key.masked.clone(),
            project: key.project.clone(),
            disabled: key.disabled.as_ref().map(|(r, _)| r.clone()),
            disabled_at: key.disabled.as_ref().map(|(_, t)| *t),
            last_used: key.last_used,
            models,
        }
    }

    /// The books of `pid` worth saving, by model.
    fn limit_records_of<'a>(&'a self, pid: &'a ProjectId) -> impl Iterator<Item = LimitRecord> + 'a {
        of_project(&self.books, pid).filter(|(_, b)| worth_saving(b)).map(|(m, b)| limit_record(pid, m, b))
    }

    /// The limits of `pid`, by model (a range of the map, not a scan of it).
    fn limits_of<'a>(&'a self, pid: &'a ProjectId) -> impl Iterator<Item = (&'a str, &'a Limit)> {
        of_project(&self.limits, pid)
    }

    /// Load a persisted file (or a converted seed file), matching keys by fingerprint; records of
    /// fingerprints not in the pool are ignored, except in the history. What the file holds
    /// replaces what the pool has for the same key (restoring twice changes nothing); limits
    /// merge, the later end winning. If the file's quota day is past, its counts go into the
    /// history and its parks and streaks are dropped (the reset happened while the proxy was
    /// down); running cooldowns and disabled keys are kept either way. A file from a *later* day
    /// than `now`'s (clock or zone changed) is taken as today's, so no count is lost.
    pub fn restore(&mut self, file: &UsageFile, now: DateTime<Utc>) {
        self.rollover(now);
        self.all_changed = true;
        self.rotation.clear();
        let today = self.quota_day;
        let current = file.quota_day >= today;
        for day in file.history.days().filter(|day| *day < today) {
            for (fp, totals) in file.history.on(day) {
                self.history.set(day, fp, totals);
            }
        }
        if !current {
            for (fp, record) in &file.keys {
                let totals = record.models.values().fold(DayTotals::default(), |mut t, m| {
                    t.add(DayTotals { requests: m.requests, tokens: m.tokens });
                    t
                });
                if !totals.is_zero() {
                    self.history.set(file.quota_day, fp, totals);
                }
            }
        }
        for (fp, record) in &file.keys {
            let Some(&idx) = self.by_fingerprint.get(fp) else {
                continue;
            };
            let key = &mut self.keys[idx];
            key.last_used = key.last_used.max(record.last_used);
            key.disabled =
                record.disabled.as_ref().map(|reason| (reason.clone(), record.disabled_at.unwrap_or(now)));
            if current {
                key.usage = record
                    .models
                    .iter()
                    .filter(|(_, m)| m.requests > 0 || m.tokens > 0)
                    .map(|(name, m)| {
                        let usage = Usage { requests: m.requests, tokens: m.tokens };
                        (name.clone(), usage)
                    })
                    .collect();
            }
            for (model, m) in &record.models {
                let cooling = m.cooling_until.filter(|t| *t > now);
                let parked = m.parked_until.filter(|t| *t > now && current);
                let streak = if current { m.cooldown_streak } else { 0 };
                if cooling.is_none() && parked.is_none() && streak == 0 {
                    continue;
                }
                let limit = self.limit_mut(idx, Some(model));
                if let Some(t) = parked {
                    limit.parked_until = later(limit.parked_until, t);
                }
                if let Some(t) = cooling {
                    limit.cooling_until = later(limit.cooling_until, t);
                }
                limit.streak = limit.streak.max(streak);
            }
        }
        // Learned limits hold whatever the day; today's counts only on the same day. A file
        // without counts (older versions) still has the successes of today, a lower bound.
        for r in &file.limits {
            let book = self.books.entry((r.project.clone(), r.model.clone())).or_default();
            book.learned = Limits { rpm: r.rpm, rpd: r.rpd, tpm: r.tpm }.or(book.learned);
            if current {
                book.today = book.today.max(r.sent_today);
            }
        }
        if current {
            let mut used: BTreeMap<(ProjectId, String), u64> = BTreeMap::new();
            for key in &self.keys {
                for (model, u) in key.usage.iter().filter(|(m, _)| *m != NO_MODEL && *m != ALL_MODELS) {
                    *used.entry((key.project_id(), model.clone())).or_default() += u.requests;
                }
            }
            for (at, requests) in used {
                let book = self.books.entry(at).or_default();
                book.today = book.today.max(requests);
            }
        }
        let projects: HashSet<ProjectId> = self.keys.iter().map(Key::project_id).collect();
        self.books.retain(|(pid, _), b| projects.contains(pid) && !b.is_idle(now));
        self.gating = !self.configured.is_empty() || self.books.values().any(|b| !b.learned.is_empty());
        self.prune_history();
    }

    /// The `/status` view of SPEC §4: times in the reset zone, `None` (`null`) where nothing
    /// applies; `state` is `disabled`, else `parked` (for some model), else `cooling` (for some
    /// model), else `usable`. Limits of the key's project show under each model, also models
    /// without requests today; a limit for every model shows under `"*"`. It reads the state as it
    /// is (`&self`): call [`KeyState::rollover`] first, under the same lock, so that an idle
    /// pool's counts and `quota_day` are today's.
    pub fn status(&self, now: DateTime<Utc>) -> StatusView {
        self.status_where(now, |_| true)
    }

    /// [`status`](Self::status) with the views of only the keys `keep` accepts (by index in
    /// key-file order); totals and models are the whole pool's. A page or a summary of a large
    /// pool builds only what it shows.
    pub fn status_where(&self, now: DateTime<Utc>, keep: impl Fn(usize) -> bool) -> StatusView {
        let tz = self.tz;
        let time = |t: Option<DateTime<Utc>>| t.map(|t| status::in_zone(t, tz));
        let mut total = Usage::default();
        let mut keys = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            if !keep(i) {
                let totals = key.totals();
                total.requests = total.requests.saturating_add(totals.requests);
                total.tokens = total.tokens.saturating_add(totals.tokens);
                continue;
            }
            let pid = key.project_id();
            let mut names: BTreeSet<&str> = key.usage.keys().map(String::as_str).collect();
            let mut parked = false;
            let mut cooling = false;
            for (model, limit) in self.limits_of(&pid) {
                if limit.blocked_until(now).is_some() {
                    names.insert(model);
                }
                parked |= limit.parked(now).is_some();
                cooling |= limit.cooling(now).is_some();
            }
            for (model, book) in of_project(&self.books, &pid) {
                if !book.learned.is_empty() {
                    names.insert(model);
                }
            }
            let mut models = BTreeMap::new();
            for name in names {
                let usage = key.usage.get(name).copied().unwrap_or_default();
                let limit = self.limits.get(&(pid.clone(), name.to_string())).copied().unwrap_or_default();
                let (limits, remaining_today) = self.limits_view(&pid, name);
                let view = ModelView {
                    requests: usage.requests,
                    tokens: usage.tokens,
                    parked_until: time(limit.parked(now)),
                    cooling_until: time(limit.cooling(now)),
                    limits,
                    remaining_today,
                };
                models.insert(name.to_string(), view);
            }
            let totals = key.totals();
            total.requests = total.requests.saturating_add(totals.requests);
            total.tokens = total.tokens.saturating_add(totals.tokens);
            keys.push(KeyView {
                egress: None,
                id: key.fingerprint.clone(),
                masked: key.masked.clone(),
                project: key.project.clone(),
                state: KeyStateName::of(key.disabled.is_some(), parked, cooling),
                disabled_reason: key.disabled.as_ref().map(|(r, _)| r.clone()),
                last_used: time(key.last_used),
                requests: totals.requests,
                tokens: totals.tokens,
                models,
            });
        }
        StatusView {
            models: self.model_limits(),
            quota_day: self.quota_day,
            timezone: tz.name().to_string(),
            next_reset: self.next_reset(now).fixed_offset(),
            totals: Totals { requests: total.requests, tokens: total.tokens },
            keys,
        }
    }
}

impl KeyState {
    /// The counts of `/metrics` without a view of each key: keys per state, today's requests and
    /// tokens per model (every model the pool has a count, a limit or a book of, zero included).
    pub fn key_counts(&self, now: DateTime<Utc>) -> KeyCounts {
        let mut per_model: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for key in &self.keys {
            for (model, u) in &key.usage {
                let sum = per_model.entry(model.clone()).or_default();
                *sum = (sum.0.saturating_add(u.requests), sum.1.saturating_add(u.tokens));
            }
        }
        for (_, model) in self.limits.keys().chain(self.books.keys()) {
            per_model.entry(model.clone()).or_default();
        }
        KeyCounts { total: self.keys.len(), by_state: self.state_counts(now), per_model }
    }

    /// How many keys are in each state at `now` (as [`status`](Self::status) names them).
    pub fn state_counts(&self, now: DateTime<Utc>) -> BTreeMap<KeyStateName, usize> {
        let mut counts = BTreeMap::new();
        for key in &self.keys {
            let pid = key.project_id();
            let parked = self.limits_of(&pid).any(|(_, l)| l.parked(now).is_some());
            let cooling = self.limits_of(&pid).any(|(_, l)| l.cooling(now).is_some());
            *counts.entry(KeyStateName::of(key.disabled.is_some(), parked, cooling)).or_default() += 1;
        }
        counts
    }

    /// The limits of `project` for `model` as `/status` shows them, and what remains today.
    fn limits_view(&self, project: &ProjectId, model: &str) -> (LimitsView, Option<u64>) {
        if model == ALL_MODELS || model == NO_MODEL {
            return (LimitsView::default(), None);
        }
        let book = self.books.get(&(project.clone(), model.to_string()));
        let limits = self.limits_for(book, model);
        let today = book.map_or(0, |b| b.today);
        let view = LimitsView { rpd: limits.rpd, rpm: limits.rpm, tpm: limits.tpm };
        (view, limits.rpd.map(|rpd| rpd.saturating_sub(today)))
    }

    /// Per model, summed over the projects that know its daily limit: what remains today.
    fn model_limits(&self) -> BTreeMap<String, ModelLimitsView> {
        let mut models: BTreeSet<&str> = self.books.keys().map(|(_, m)| m.as_str()).collect();
        for key in &self.keys {
            models.extend(key.usage.keys().map(String::as_str));
        }
        let projects: Vec<ProjectId> = self.projects().into_iter().map(|(p, _)| p).collect();
        let mut out = BTreeMap::new();
        for model in models {
            let mut view = ModelLimitsView::default();
            for pid in &projects {
                if let (limits, Some(remaining)) = self.limits_view(pid, model) {
                    view.projects += 1;
                    view.rpd = view.rpd.saturating_add(limits.rpd.unwrap_or(0));
                    view.remaining_today = view.remaining_today.saturating_add(remaining);
                }
            }
            if view.projects > 0 {
                out.insert(model.to_string(), view);
            }
        }
        out
    }
}

/// The entries of `map` for project `pid`, by model: a range, so its cost follows what the
/// project has, not what the whole pool has.
fn of_project<'a, V>(
    map: &'a BTreeMap<(ProjectId, String), V>,
    pid: &'a ProjectId,
) -> impl Iterator<Item = (&'a str, &'a V)> {
    map.range((pid.clone(), String::new())..)
        .take_while(move |((p, _), _)| p == pid)
        .map(|((_, m), v)| (m.as_str(), v))
}

/// [`Pick::Exhausted`] for a pool whose first key serves again at `until` (`None`: every key
/// is disabled).
fn exhausted_at(until: Option<DateTime<Utc>>, model: Option<&str>, now: DateTime<Utc>) -> Pick {
    let model = model.map(str::to_string);
    match until {
        Some(until) => {
            let ms = (until - now).num_milliseconds().max(0);
            let secs = u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1);
            Pick::Exhausted { retry_after_secs: secs, until: Some(until), model }
        }
        None => Pick::Exhausted { retry_after_secs: ALL_DISABLED_RETRY_SECS, until: None, model },
    }
}

/// Project → indices of its keys, ascending.
fn index_by_project(keys: &[Key]) -> HashMap<ProjectId, Vec<usize>> {
    let mut map: HashMap<ProjectId, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        map.entry(k.project_id()).or_default().push(i);
    }
    map
}

/// A book is saved when it learned something or sent something today.
fn worth_saving(book: &Book) -> bool {
    !book.learned.is_empty() || book.today > 0
}

fn limit_record(project: &ProjectId, model: &str, book: &Book) -> LimitRecord {
    LimitRecord {
        project: project.clone(),
        model: model.to_string(),
        rpm: book.learned.rpm,
        rpd: book.learned.rpd,
        tpm: book.learned.tpm,
        sent_today: book.today,
    }
}

/// Fingerprint → index of each key.
fn index_of(keys: &[Key]) -> HashMap<String, usize> {
    keys.iter().enumerate().map(|(i, k)| (k.fingerprint.clone(), i)).collect()
}

/// Drop duplicate keys (the first occurrence wins) and blank ones.
fn dedup(keys: Vec<KeySpec>) -> Vec<KeySpec> {
    let mut seen = HashSet::new();
    keys.into_iter().filter(|k| !k.key.is_empty() && seen.insert(k.key.clone())).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Timelike};
    use serde_json::{Value, json};
    use std::time::Duration as StdDuration;

    const LA: Tz = chrono_tz::America::Los_Angeles;
    const FLASH: Option<&str> = Some("gemini-2.5-flash");
    const PRO: Option<&str> = Some("gemini-2.5-pro");

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    /// A local wall-clock time in Los Angeles (must exist and be unambiguous).
    fn la(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        LA.with_ymd_and_hms(y, mo, d, h, mi, 0).single().unwrap().with_timezone(&Utc)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn key(i: usize) -> String {
        format!("AIzaSyTESTKEY{i:026}")
    }

    fn specs(projects: &[Option<&str>]) -> Vec<KeySpec> {
        projects.iter().enumerate().map(|(i, p)| KeySpec::new(&key(i), *p)).collect()
    }

    /// The fingerprints of the keys `pool` made at these indices.
    fn tried(idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| fingerprint(&key(i))).collect()
    }

    fn pool(n: usize, now: DateTime<Utc>) -> KeyState {
        KeyState::new(specs(&vec![None; n]), LA, now)
    }

    fn t0() -> DateTime<Utc> {
        la(2026, 11, 22, 10, 0)
    }

    fn picked(p: &Pick) -> usize {
        match p {
            Pick::Key { idx, .. } => *idx,
            Pick::Exhausted { .. } => panic!("expected a key, got {p:?}"),
        }
    }

    /// Pick for `model` and record `outcome` on the picked key; returns its index.
    fn use_key(s: &mut KeyState, model: Option<&str>, outcome: Outcome, now: DateTime<Utc>) -> usize {
        let p = s.pick(model, &[], now);
        let idx = picked(&p);
        s.record(idx, &fingerprint(&key(idx)), model, &outcome, 10, now);
        idx
    }

    fn per_minute(secs: u64) -> Outcome {
        Outcome::QuotaPerMinute { retry: StdDuration::from_secs(secs) }
    }

    /// The `/status` document as JSON, for the assertions that read it by path.
    fn status_json(s: &KeyState, now: DateTime<Utc>) -> Value {
        serde_json::to_value(s.status(now)).unwrap()
    }

    fn record(s: &mut KeyState, idx: usize, model: Option<&str>, o: Outcome, now: DateTime<Utc>) -> Recorded {
        s.record(idx, &fingerprint(&key(idx)), model, &o, 0, now)
    }

    // ---- the rotation agrees with a scan ----------------------------------------------------

    /// The pick of version 1, a scan of every key from the cursor: what the rotation must agree
    /// with, pick for pick.
    fn pick_by_scan(s: &mut KeyState, model: Option<&str>, tried: &[String], now: DateTime<Utc>) -> Pick {
        s.rollover(now);
        let n = s.keys.len();
        for step in 0..n {
            let idx = (s.cursor + step) % n;
            if tried.contains(&s.keys[idx].fingerprint) || !s.usable(idx, model, now) {
                continue;
            }
            s.cursor = (idx + 1) % n;
            s.count_sent(idx, model, now);
            let key = &s.keys[idx];
            return Pick::Key { idx, key: key.key.clone(), fingerprint: key.fingerprint.clone() };
        }
        exhausted_by_scan(s, model, now)
    }

    fn exhausted_by_scan(s: &KeyState, model: Option<&str>, now: DateTime<Utc>) -> Pick {
        let earliest = (0..s.keys.len())
            .filter(|&i| s.keys[i].disabled.is_none())
            .map(|i| s.blocked_until(i, model.unwrap_or(ALL_MODELS), now).unwrap_or(now))
            .min();
        exhausted_at(earliest, model, now)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Pick { model: usize, tried: u8 },
        Record { key: usize, model: usize, outcome: usize, secs: u64 },
        Refused { key: usize, model: usize },
        Learn { key: usize, model: usize, rpm: u64 },
        Enable { key: usize },
        Advance { secs: u64 },
        Exhausted { model: usize },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..3usize, any::<u8>()).prop_map(|(model, tried)| Op::Pick { model, tried }),
            3 => (0..6usize, 0..3usize, 0..6usize, 1..400u64)
                .prop_map(|(key, model, outcome, secs)| Op::Record { key, model, outcome, secs }),
            1 => (0..6usize, 0..3usize).prop_map(|(key, model)| Op::Refused { key, model }),
            1 => (0..6usize, 0..3usize, 1..4u64).prop_map(|(key, model, rpm)| Op::Learn { key, model, rpm }),
            1 => (0..6usize).prop_map(|key| Op::Enable { key }),
            2 => prop_oneof![0..5u64, 0..120u64, 0..40_000u64].prop_map(|secs| Op::Advance { secs }),
            1 => (0..3usize).prop_map(|model| Op::Exhausted { model }),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Any sequence of picks, outcomes, refusals, learned limits, re-enabled keys and time:
        /// the rotation picks the same key (or gives the same `Exhausted`) as a scan would.
        #[test]
        fn the_rotation_picks_what_a_scan_would(ops in proptest::collection::vec(op(), 1..120)) {
            let models = [None, FLASH, PRO];
            let projects = [Some("a"), Some("a"), Some("b"), Some("b"), None, None];
            let mut fast = KeyState::new(specs(&projects), LA, t0());
            let mut scan = KeyState::new(specs(&projects), LA, t0());
            let mut now = t0();
            for op in ops {
                match op {
                    Op::Pick { model, tried: mask } => {
                        let tried: Vec<String> =
                            (0..6).filter(|i| mask & (1 << i) != 0).map(|i| fingerprint(&key(i))).collect();
                        let a = fast.pick(models[model], &tried, now);
                        let b = pick_by_scan(&mut scan, models[model], &tried, now);
                        proptest::prop_assert_eq!(a, b);
                    }
                    Op::Record { key: k, model, outcome, secs } => {
                        let outcome = match outcome {
                            0 => Outcome::Success,
                            1 => Outcome::QuotaPerDay,
                            2 => per_minute(secs),
                            3 => Outcome::RateLimited,
                            4 => Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() },
                            _ => Outcome::Transient,
                        };
                        let fp = fingerprint(&key(k));
                        let a = fast.record(k, &fp, models[model], &outcome, 7, now);
                        let b = scan.record(k, &fp, models[model], &outcome, 7, now);
                        proptest::prop_assert_eq!(a, b);
                    }
                    Op::Refused { key: k, model } => {
                        fast.refused(&fingerprint(&key(k)), models[model], now);
                        scan.refused(&fingerprint(&key(k)), models[model], now);
                    }
                    Op::Learn { key: k, model, rpm } => {
                        let v = [Violation { kind: crate::limits::Kind::Rpm, value: rpm, model: None }];
                        fast.learn(&fingerprint(&key(k)), models[model], &v);
                        scan.learn(&fingerprint(&key(k)), models[model], &v);
                    }
                    Op::Enable { key: k } => {
                        proptest::prop_assert_eq!(fast.enable(&fingerprint(&key(k))), scan.enable(&fingerprint(&key(k))));
                    }
                    Op::Advance { secs } => now += Duration::seconds(secs as i64),
                    Op::Exhausted { model } => {
                        fast.rollover(now);
                        scan.rollover(now);
                        proptest::prop_assert_eq!(fast.exhausted(models[model], now), exhausted_by_scan(&scan, models[model], now));
                    }
                }
            }
        }
    }

    #[test]
    fn the_counts_without_views_are_those_of_the_views() {
        let mut s = KeyState::new(specs(&[Some("a"), Some("a"), None, None]), LA, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        use_key(&mut s, PRO, Outcome::Success, t0());
        record(&mut s, 1, FLASH, Outcome::QuotaPerDay, t0());
        record(&mut s, 2, PRO, per_minute(60), t0());
        record(&mut s, 3, FLASH, Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() }, t0());
        let counts = s.key_counts(t0());
        let views = KeyCounts::of(&s.status(t0()));
        assert_eq!(counts.total, 4);
        assert_eq!(counts.by_state, views.by_state);
        assert_eq!(counts.by_state.values().sum::<usize>(), 4);
        for (model, sums) in &views.per_model {
            assert_eq!(counts.per_model.get(model), Some(sums), "{model}");
        }
        assert_eq!(counts.per_model[FLASH.unwrap()], (1, 10));
    }

    #[test]
    fn a_pick_under_a_long_park_does_not_walk_the_parked_keys_again() {
        let mut s = pool(1000, t0());
        for idx in 0..999 {
            record(&mut s, idx, FLASH, Outcome::QuotaPerDay, t0());
        }
        assert_eq!(picked(&s.pick(FLASH, &[], t0())), 999, "the first pick walks past the parked keys once");
        let open = |s: &KeyState| s.rotation.get("gemini-2.5-flash").map(|c| c.open.len());
        assert_eq!(open(&s), Some(1), "and takes them out of the walk");
        for _ in 0..10 {
            assert_eq!(picked(&s.pick(FLASH, &[], t0())), 999);
        }
        assert_eq!(picked(&s.pick(PRO, &[], t0())), 0, "another model still has every key");
        // The next day every key serves again.
        let tomorrow = la(2026, 11, 23, 9, 0);
        assert_eq!(picked(&s.pick(FLASH, &[], tomorrow)), 1, "the key after the last one picked");
    }

    // ---- identity -------------------------------------------------------------------------

    #[test]
    fn debug_never_shows_raw_keys() {
        let mut s = pool(2, t0());
        record(&mut s, 0, FLASH, per_minute(5), t0());
        let shown = format!("{s:?} {:?} {:?}", s.pick(FLASH, &[], t0()), specs(&[None]));
        assert!(!shown.contains("TESTKEY"), "{shown}");
    }

    // ---- selection ------------------------------------------------------------------------

    #[test]
    fn round_robin_over_all_keys() {
        let mut s = pool(3, t0());
        let order: Vec<usize> = (0..6).map(|_| picked(&s.pick(FLASH, &[], t0()))).collect();
        assert_eq!(order, vec![0, 1, 2, 0, 1, 2]);
    }

    /// Past [`LIMITS_SCANNED`] running limits a pick looks its project up instead of scanning:
    /// the same keys are skipped either way, for the model and for every model.
    #[test]
    fn many_running_limits_block_the_same_keys_as_a_few() {
        let now = t0();
        let mut s = pool(40, now);
        for i in 0..30 {
            let model = if i == 7 { None } else { Some("m") };
            s.record(i, &fingerprint(&key(i)), model, &per_minute(60), 0, now);
        }
        assert!(s.limits.len() > LIMITS_SCANNED);
        for _ in 0..20 {
            assert!(picked(&s.pick(Some("m"), &[], now)) >= 30);
        }
        // Another model: only the key cooled for every model is skipped.
        let others: Vec<usize> = (0..39).map(|_| picked(&s.pick(Some("other"), &[], now))).collect();
        assert!(!others.contains(&7) && others.contains(&8), "{others:?}");
        assert_eq!(s.usable_for(Some("m"), now), 10);
        assert_eq!(s.usable_for(Some("m"), now + Duration::seconds(61)), 40);
    }

    #[test]
    fn pick_skips_tried_keys_then_reports_exhausted() {
        let mut s = pool(3, t0());
        assert_eq!(picked(&s.pick(FLASH, &tried(&[0]), t0())), 1);
        assert_eq!(picked(&s.pick(FLASH, &tried(&[0, 2]), t0())), 1);
        let p = s.pick(FLASH, &tried(&[0, 1, 2]), t0());
        // Usable keys exist, this request tried them all: usable again "now".
        assert_eq!(
            p,
            Pick::Exhausted { retry_after_secs: 1, until: Some(t0()), model: FLASH.map(str::to_string) }
        );
    }

    #[test]
    fn keys_tried_before_a_reload_stay_tried_after_it() {
        let mut s = pool(3, t0());
        // Key 1 was tried; a reload drops key 0, so key 1 moves to index 0 and key 2 to index 1.
        s.reload(specs(&[None; 3]).into_iter().skip(1).collect()).unwrap();
        for _ in 0..3 {
            assert_eq!(
                s.pick(FLASH, &tried(&[1]), t0()),
                Pick::Key { idx: 1, key: key(2), fingerprint: fingerprint(&key(2)) }
            );
        }
        assert!(matches!(s.pick(FLASH, &tried(&[1, 2]), t0()), Pick::Exhausted { .. }));
    }

    #[test]
    fn pick_returns_key_and_fingerprint() {
        let mut s = pool(1, t0());
        let p = s.pick(None, &[], t0());
        assert_eq!(p, Pick::Key { idx: 0, key: key(0), fingerprint: fingerprint(&key(0)) });
    }

    #[test]
    fn empty_pool_is_exhausted() {
        let mut s = KeyState::new(vec![], LA, t0());
        assert!(s.is_empty());
        let p = s.pick(FLASH, &[], t0());
        assert!(matches!(p, Pick::Exhausted { until: None, retry_after_secs: ALL_DISABLED_RETRY_SECS, .. }));
    }

    #[test]
    fn duplicates_and_blank_keys_dropped() {
        let list = vec![
            KeySpec::new("k1-aaaaaaaaaa", Some("a")),
            KeySpec::new("", None),
            KeySpec::new("k1-aaaaaaaaaa", Some("b")),
            KeySpec::new("k2-bbbbbbbbbb", None),
        ];
        let s = KeyState::new(list, LA, t0());
        assert_eq!(s.len(), 2);
        assert_eq!(status_json(&s, t0())["keys"][0]["project"], "a");
    }

    // ---- outcomes -------------------------------------------------------------------------

    #[test]
    fn success_counts_requests_tokens_and_last_used() {
        let mut s = pool(1, t0());
        let fp = fingerprint(&key(0));
        assert_eq!(s.record(0, &fp, FLASH, &Outcome::Success, 100, t0()), Recorded::Counted);
        s.record(0, &fp, FLASH, &Outcome::Success, 57, t0());
        s.record(0, &fp, None, &Outcome::Success, 0, t0());
        let st = status_json(&s, t0());
        let k = &st["keys"][0];
        assert_eq!(k["requests"], 3);
        assert_eq!(k["tokens"], 157);
        assert_eq!(k["models"]["gemini-2.5-flash"]["requests"], 2);
        assert_eq!(k["models"]["gemini-2.5-flash"]["tokens"], 157);
        assert_eq!(k["models"][NO_MODEL]["requests"], 1);
        assert_eq!(k["last_used"], "2026-11-22T10:00:00-08:00");
        assert_eq!(st["totals"], json!({"requests": 3, "tokens": 157}));
    }

    #[test]
    fn transient_and_client_errors_change_nothing() {
        let mut s = pool(1, t0());
        for o in [Outcome::Transient, Outcome::ClientError] {
            assert_eq!(record(&mut s, 0, FLASH, o, t0()), Recorded::Nothing);
        }
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["state"], "usable");
        assert_eq!(st["keys"][0]["requests"], 0);
        assert_eq!(st["keys"][0]["last_used"], Value::Null);
    }

    #[test]
    fn per_minute_cools_only_that_model() {
        let mut s = pool(2, t0());
        let r = record(&mut s, 0, FLASH, per_minute(26), t0());
        let until = t0() + Duration::seconds(26);
        assert_eq!(r, Recorded::Cooling { until });
        assert_eq!(picked(&s.pick(FLASH, &[], t0())), 1);
        assert_eq!(picked(&s.pick(FLASH, &[], t0())), 1);
        assert_eq!(picked(&s.pick(PRO, &[], t0())), 0, "other model unaffected");
        assert_eq!(s.usable_for(FLASH, until - Duration::milliseconds(1)), 1);
        assert_eq!(s.usable_for(FLASH, until), 2, "usable again when it ends");
        assert_eq!(picked(&s.pick(FLASH, &tried(&[1]), until)), 0);
    }

    #[test]
    fn per_minute_never_shortens_a_running_cooldown_and_is_at_least_one_second() {
        let mut s = pool(1, t0());
        record(&mut s, 0, FLASH, per_minute(30), t0());
        let r = record(&mut s, 0, FLASH, per_minute(5), t0());
        assert_eq!(r, Recorded::Cooling { until: t0() + Duration::seconds(30) });
        let mut s = pool(1, t0());
        let r = record(&mut s, 0, FLASH, per_minute(0), t0());
        assert_eq!(r, Recorded::Cooling { until: t0() + Duration::seconds(1) });
    }

    #[test]
    fn rate_limited_backoff_doubles_and_resets_next_day() {
        let mut s = pool(1, t0());
        let mut now = t0();
        let mut seen = vec![];
        for _ in 0..4 {
            let Recorded::Cooling { until } = record(&mut s, 0, FLASH, Outcome::RateLimited, now) else {
                panic!("expected cooling");
            };
            seen.push((until - now).num_seconds());
            now = until;
        }
        assert_eq!(seen, vec![60, 120, 240, 480]);
        // Next quota day: the streak starts over.
        let tomorrow = la(2026, 11, 23, 10, 0);
        let Recorded::Cooling { until } = record(&mut s, 0, FLASH, Outcome::RateLimited, tomorrow) else {
            panic!("expected cooling");
        };
        assert_eq!((until - tomorrow).num_seconds(), 60);
    }

    #[test]
    fn rate_limited_backoff_never_passes_the_reset() {
        let now = la(2026, 11, 22, 23, 59);
        let mut s = pool(1, now);
        let r = record(&mut s, 0, FLASH, Outcome::RateLimited, now + Duration::seconds(30));
        assert_eq!(r, Recorded::Cooling { until: la(2026, 11, 23, 0, 0) });
        // A huge streak does not overflow either.
        let mut s = pool(1, t0());
        for _ in 0..100 {
            record(&mut s, 0, FLASH, Outcome::RateLimited, t0());
        }
        assert_eq!(
            s.snapshot(t0()).keys[&fingerprint(&key(0))].models["gemini-2.5-flash"].cooldown_streak,
            100
        );
        let p = s.pick(FLASH, &[], t0());
        assert!(matches!(p, Pick::Exhausted { until: Some(u), .. } if u == la(2026, 11, 23, 0, 0)));
    }

    #[test]
    fn per_day_parks_until_next_reset() {
        let mut s = pool(2, t0());
        let r = record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        let reset = la(2026, 11, 23, 0, 0);
        assert_eq!(r, Recorded::Parked { until: reset });
        assert_eq!(reset, utc(2026, 11, 23, 8, 0, 0), "Pacific midnight is 08:00 UTC in winter");
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["state"], "parked");
        assert_eq!(st["keys"][0]["models"]["gemini-2.5-flash"]["parked_until"], "2026-11-23T00:00:00-08:00");
        assert_eq!(picked(&s.pick(FLASH, &[], reset - Duration::seconds(1))), 1);
        assert_eq!(picked(&s.pick(FLASH, &[], reset - Duration::seconds(1))), 1);
        assert_eq!(picked(&s.pick(FLASH, &[], reset)), 0);
    }

    #[test]
    fn limits_are_shared_by_a_project() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("p"), None, Some("q")]), LA, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        let order: Vec<usize> = (0..4).map(|_| picked(&s.pick(FLASH, &[], t0()))).collect();
        assert_eq!(order, vec![2, 3, 2, 3], "key 1 shares key 0's project");
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][1]["state"], "parked");
        assert_eq!(st["keys"][2]["state"], "usable");
    }

    #[test]
    fn a_pinned_project_is_served_by_its_own_keys_only() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("q"), Some("p"), None]), LA, t0());
        let p = ProjectId::Label("p".into());
        let order: Vec<usize> = (0..4).map(|_| picked(&s.pick_in_project(&p, FLASH, &[], t0()))).collect();
        assert_eq!(order, vec![0, 2, 0, 2], "round-robin within p");
        assert_eq!(picked(&s.pick_in_project(&p, FLASH, &tried(&[0]), t0())), 2);
        // Parked for flash: the project has nothing for flash (503 with the park's end), pro goes on.
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        match s.pick_in_project(&p, FLASH, &[], t0()) {
            Pick::Exhausted { until: Some(until), .. } => assert!(until > t0()),
            other => panic!("{other:?}"),
        }
        assert!([0, 2].contains(&picked(&s.pick_in_project(&p, PRO, &[], t0()))), "pro is not parked");
        assert!([1, 3].contains(&picked(&s.pick(FLASH, &[], t0()))), "other projects still serve flash");
        // Both keys disabled: no time to wait for (the 409 case); a lone key is its own project.
        record(&mut s, 0, PRO, Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() }, t0());
        record(&mut s, 2, PRO, Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() }, t0());
        assert!(matches!(s.pick_in_project(&p, PRO, &[], t0()), Pick::Exhausted { until: None, .. }));
        let solo = s.project_of(&fingerprint(&key(3))).unwrap();
        assert_eq!(solo, ProjectId::Solo(fingerprint(&key(3))));
        assert_eq!(picked(&s.pick_in_project(&solo, FLASH, &[], t0())), 3);
        let gone = ProjectId::Label("gone".into());
        assert!(matches!(s.pick_in_project(&gone, FLASH, &[], t0()), Pick::Exhausted { until: None, .. }));
        let projects: Vec<ProjectId> = s.projects().into_iter().map(|(p, _)| p).collect();
        assert_eq!(projects, vec![p, ProjectId::Label("q".into()), solo]);
    }

    #[test]
    fn unlabelled_keys_are_their_own_projects() {
        let mut s = pool(2, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        assert_eq!(status_json(&s, t0())["keys"][1]["state"], "usable");
    }

    #[test]
    fn invalid_key_is_disabled_alone() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("p")]), LA, t0());
        let o = Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() };
        assert_eq!(record(&mut s, 0, FLASH, o, t0()), Recorded::Disabled);
        assert_eq!(picked(&s.pick(None, &[], t0())), 1);
        assert_eq!(picked(&s.pick(None, &[], t0())), 1);
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["state"], "disabled");
        assert_eq!(st["keys"][0]["disabled_reason"], "API_KEY_INVALID");
        assert_eq!(st["keys"][1]["disabled_reason"], Value::Null);
        assert_eq!(s.disabled_keys(), vec![(0, key(0))]);
        assert_eq!(s.usable_count(t0()), 1);
    }

    #[test]
    fn enable_after_reprobe() {
        let mut s = pool(1, t0());
        record(&mut s, 0, FLASH, Outcome::KeyInvalid { reason: "X".into() }, t0());
        assert!(!s.enable("000000000000"));
        assert!(s.enable(&fingerprint(&key(0))));
        assert!(!s.enable(&fingerprint(&key(0))), "already enabled");
        assert!(s.disabled_keys().is_empty());
        assert_eq!(picked(&s.pick(FLASH, &[], t0())), 0);
    }

    #[test]
    fn model_less_requests_ignore_parks_and_cooldowns() {
        let mut s = pool(1, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        record(&mut s, 0, PRO, per_minute(60), t0());
        assert_eq!(picked(&s.pick(None, &[], t0())), 0);
        assert_eq!(s.usable_for(FLASH, t0()), 0);
        assert_eq!(s.usable_for(None, t0()), 1);
    }

    #[test]
    fn model_less_quota_blocks_every_model() {
        let mut s = pool(2, t0());
        record(&mut s, 0, None, per_minute(30), t0());
        assert_eq!(picked(&s.pick(FLASH, &[], t0())), 1);
        assert_eq!(picked(&s.pick(PRO, &[], t0())), 1);
        assert_eq!(s.usable_count(t0()), 1);
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["state"], "cooling");
        assert!(st["keys"][0]["models"][ALL_MODELS]["cooling_until"].is_string());
    }

    #[test]
    fn exhausted_reports_the_earliest_end() {
        let mut s = pool(3, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        record(&mut s, 1, FLASH, per_minute(90), t0());
        record(&mut s, 2, FLASH, Outcome::Transient, t0());
        record(&mut s, 2, FLASH, Outcome::KeyInvalid { reason: "X".into() }, t0());
        let later = t0() + Duration::milliseconds(500);
        let p = s.pick(FLASH, &[], later);
        assert_eq!(
            p,
            Pick::Exhausted {
                retry_after_secs: 90, // 89.5 s rounded up
                until: Some(t0() + Duration::seconds(90)),
                model: Some("gemini-2.5-flash".into())
            }
        );
    }

    #[test]
    fn exhausted_when_everything_is_disabled() {
        let mut s = pool(2, t0());
        for i in 0..2 {
            record(&mut s, i, FLASH, Outcome::KeyInvalid { reason: "X".into() }, t0());
        }
        for model in [FLASH, None] {
            let p = s.pick(model, &[], t0());
            assert_eq!(
                p,
                Pick::Exhausted {
                    retry_after_secs: ALL_DISABLED_RETRY_SECS,
                    until: None,
                    model: model.map(str::to_string)
                }
            );
        }
        assert_eq!(s.usable_count(t0()), 0);
    }

    #[test]
    fn record_after_reload_finds_the_key_by_fingerprint() {
        let mut s = pool(3, t0());
        let p = s.pick(FLASH, &[], t0());
        let Pick::Key { idx, fingerprint: fp, .. } = p.clone() else { panic!() };
        assert_eq!(idx, 0);
        // Reload drops key 0's predecessor position: key(0) now sits at index 1.
        s.reload(vec![KeySpec::new(&key(5), None), KeySpec::new(&key(0), None)]).unwrap();
        assert_eq!(s.record(idx, &fp, FLASH, &Outcome::Success, 3, t0()), Recorded::Counted);
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["requests"], 0, "the key now at index 0 is not charged");
        assert_eq!(st["keys"][1]["requests"], 1);
        // A key that left the pool is ignored.
        s.reload(vec![KeySpec::new(&key(5), None)]).unwrap();
        assert_eq!(s.record(1, &fp, FLASH, &Outcome::Success, 3, t0()), Recorded::UnknownKey);
    }

    // ---- reload ---------------------------------------------------------------------------

    #[test]
    fn reload_keeps_state_of_staying_keys() {
        let mut s = KeyState::new(specs(&[Some("p"), None, None]), LA, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        record(&mut s, 1, FLASH, Outcome::KeyInvalid { reason: "X".into() }, t0());
        let report = s
            .reload(vec![
                KeySpec::new(&key(1), None),
                KeySpec::new(&key(0), Some("p")),
                KeySpec::new(&key(9), None),
                KeySpec::new(&key(9), None),
            ])
            .unwrap();
        assert_eq!(report.kept, 2);
        assert_eq!(report.added, vec![fingerprint(&key(9))]);
        assert_eq!(report.removed, vec![fingerprint(&key(2))]);
        assert_eq!(report.reenabled, vec![fingerprint(&key(1))]);
        assert_eq!(s.len(), 3);
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["id"], fingerprint(&key(1)).as_str());
        assert_eq!(st["keys"][0]["state"], "usable", "re-enabled");
        assert_eq!(st["keys"][1]["state"], "parked", "park kept");
        assert_eq!(st["keys"][1]["requests"], 1, "count kept");
        assert_eq!(st["keys"][2]["requests"], 0);
    }

    #[test]
    fn reload_refuses_an_empty_list() {
        let mut s = pool(2, t0());
        assert!(s.reload(vec![]).is_err());
        assert!(s.reload(vec![KeySpec::new("", None)]).is_err());
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn reload_moving_a_key_between_projects() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("p"), Some("q")]), LA, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        // key 1 moves to project q: no longer parked; key 0 stays parked with project p.
        s.reload(specs(&[Some("p"), Some("q"), Some("q")])).unwrap();
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["state"], "parked");
        assert_eq!(st["keys"][1]["state"], "usable");
        // Project p vanishes entirely: its limits go with it.
        s.reload(specs(&[Some("r"), Some("q"), Some("q")])).unwrap();
        assert_eq!(status_json(&s, t0())["keys"][0]["state"], "usable");
    }

    // ---- the quota day --------------------------------------------------------------------

    #[test]
    fn park_at_2359_ends_at_local_midnight_across_dst() {
        // (local date of the 23:59 park, expected end in UTC)
        let cases = [
            ((2027, 3, 13), utc(2027, 3, 14, 8, 0, 0)), // the night into spring-forward day
            ((2027, 3, 14), utc(2027, 3, 15, 7, 0, 0)), // the 23-hour day
            ((2027, 11, 6), utc(2027, 11, 7, 7, 0, 0)), // the night into fall-back day
            ((2027, 11, 7), utc(2027, 11, 8, 8, 0, 0)), // the 25-hour day
        ];
        for ((y, m, d), end) in cases {
            let now = la(y, m, d, 23, 59);
            let mut s = pool(1, now);
            assert_eq!(record(&mut s, 0, FLASH, Outcome::QuotaPerDay, now), Recorded::Parked { until: end });
            assert_eq!(end.with_timezone(&LA).hour(), 0);
            assert!(matches!(
                s.pick(FLASH, &[], end - Duration::seconds(1)),
                Pick::Exhausted { retry_after_secs: 1, .. }
            ));
            assert_eq!(picked(&s.pick(FLASH, &[], end)), 0, "parked until {end}");
            assert_eq!(s.quota_day(), end.with_timezone(&LA).date_naive());
        }
    }

    #[test]
    fn far_future_instants_do_not_panic() {
        // chrono itself cannot show its last instants in a zone west of UTC, so "far" is year 9999.
        let end = utc(9999, 12, 31, 15, 0, 0);
        let mut s = pool(1, end);
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, end);
        record(&mut s, 0, FLASH, per_minute(86_400), end);
        for _ in 0..20 {
            record(&mut s, 0, FLASH, Outcome::RateLimited, end);
        }
        assert!(matches!(s.pick(FLASH, &[], end), Pick::Exhausted { .. }));
        assert_eq!(status_json(&s, end)["keys"][0]["state"], "parked");
    }

    #[test]
    fn rollover_moves_counts_to_history_and_ends_parks() {
        let mut s = pool(2, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        record(&mut s, 1, FLASH, Outcome::QuotaPerDay, t0());
        record(&mut s, 1, PRO, per_minute(600), la(2026, 11, 22, 23, 55));
        assert!(!s.rollover(la(2026, 11, 22, 23, 59)));
        let midnight = la(2026, 11, 23, 0, 0);
        assert!(s.rollover(midnight));
        assert!(!s.rollover(midnight), "rolls once");
        assert_eq!(s.quota_day(), date(2026, 11, 23));
        let day = date(2026, 11, 22);
        assert_eq!(s.history().get(day, &fingerprint(&key(0))), Some(DayTotals { requests: 1, tokens: 10 }));
        assert_eq!(s.history().get(day, &fingerprint(&key(1))), None, "no zero rows");
        let st = status_json(&s, midnight);
        assert_eq!(st["keys"][0]["requests"], 0);
        assert_eq!(st["keys"][1]["state"], "cooling", "per-minute cooldown runs on past midnight");
        assert_eq!(st["keys"][1]["models"]["gemini-2.5-flash"], Value::Null);
        assert_eq!(st["quota_day"], "2026-11-23");
    }

    #[test]
    fn rollover_never_goes_backwards_and_skips_idle_days() {
        let mut s = pool(1, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        assert!(!s.rollover(t0() - Duration::days(3)));
        assert_eq!(s.quota_day(), date(2026, 11, 22));
        // Down for three days: one roll, the counts land on the day they were made.
        assert!(s.rollover(t0() + Duration::days(3)));
        assert_eq!(s.quota_day(), date(2026, 11, 25));
        assert_eq!(s.history().days().collect::<Vec<_>>(), vec![date(2026, 11, 22)]);
    }

    #[test]
    fn history_keeps_thirty_days() {
        let mut s = pool(1, t0());
        for d in 0..40 {
            let now = t0() + Duration::days(d);
            use_key(&mut s, FLASH, Outcome::Success, now);
        }
        assert!(s.rollover(t0() + Duration::days(40)));
        let days: Vec<NaiveDate> = s.history().days().collect();
        assert_eq!(days.len(), 30);
        assert_eq!(days.first().copied(), Some(s.quota_day() - Duration::days(30)));
        assert_eq!(days.last().copied(), Some(s.quota_day() - Duration::days(1)));
    }

    #[test]
    fn pick_and_record_roll_the_day_themselves() {
        let mut s = pool(1, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        let tomorrow = la(2026, 11, 23, 0, 0);
        assert_eq!(picked(&s.pick(FLASH, &[], tomorrow)), 0);
        assert_eq!(s.quota_day(), date(2026, 11, 23));
    }

    // ---- status ---------------------------------------------------------------------------

    #[test]
    fn status_has_the_spec_shape() {
        let mut s = KeyState::new(vec![KeySpec::new("AIzaSyABCDEFGHIJKLMNOPXyZ1", Some("proj-a"))], LA, t0());
        let fp = fingerprint("AIzaSyABCDEFGHIJKLMNOPXyZ1");
        let at = la(2026, 11, 22, 10, 1) + Duration::seconds(2) + Duration::milliseconds(345);
        s.record(0, &fp, FLASH, &Outcome::Success, 3400, at);
        let expected = json!({
            "quota_day": "2026-11-22", "timezone": "America/Los_Angeles",
            "next_reset": "2026-11-23T00:00:00-08:00",
            "totals": {"requests": 1, "tokens": 3400},
            "keys": [{"id": fp, "masked": "AIza…XyZ1", "project": "proj-a",
                      "state": "usable", "disabled_reason": null,
                      "last_used": "2026-11-22T10:01:02-08:00",
                      "requests": 1, "tokens": 3400,
                      "models": {"gemini-2.5-flash": {"requests": 1, "tokens": 3400,
                                                      "parked_until": null, "cooling_until": null,
                                                      "limits": {"rpm": null, "rpd": null, "tpm": null},
                                                      "remaining_today": null}}}],
            "models": {}
        });
        assert_eq!(status_json(&s, at), expected);
    }

    #[test]
    fn status_states_table() {
        // (outcome recorded on key 0 for FLASH, expected state)
        let cases = [
            (Outcome::Success, "usable"),
            (per_minute(10), "cooling"),
            (Outcome::RateLimited, "cooling"),
            (Outcome::QuotaPerDay, "parked"),
            (Outcome::KeyInvalid { reason: "X".into() }, "disabled"),
        ];
        for (outcome, state) in cases {
            let mut s = pool(1, t0());
            record(&mut s, 0, FLASH, outcome.clone(), t0());
            assert_eq!(status_json(&s, t0())["keys"][0]["state"], state, "after {outcome:?}");
        }
        // Expired limits show as usable and as nulls.
        let mut s = pool(1, t0());
        record(&mut s, 0, FLASH, per_minute(10), t0());
        let later = t0() + Duration::seconds(10);
        assert_eq!(status_json(&s, later)["keys"][0]["state"], "usable");
        // Parked beats cooling.
        record(&mut s, 0, PRO, per_minute(10), later);
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, later);
        assert_eq!(status_json(&s, later)["keys"][0]["state"], "parked");
    }

    #[test]
    fn status_never_contains_raw_keys() {
        let mut s = KeyState::new(specs(&[Some("p"), None]), LA, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        record(&mut s, 1, FLASH, Outcome::KeyInvalid { reason: "CONSUMER_SUSPENDED".into() }, t0());
        let text = status_json(&s, t0()).to_string() + &serde_json::to_string(&s.snapshot(t0())).unwrap();
        assert!(!text.contains("TESTKEY"), "{text}");
    }

    // ---- persistence ----------------------------------------------------------------------

    #[test]
    fn snapshot_restore_round_trip_same_day() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("p"), None]), LA, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        use_key(&mut s, PRO, Outcome::Success, t0());
        record(&mut s, 0, FLASH, Outcome::QuotaPerDay, t0());
        record(&mut s, 2, PRO, Outcome::RateLimited, t0());
        record(&mut s, 2, FLASH, Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() }, t0());
        let file = s.snapshot(t0());
        assert_eq!(file.quota_day, date(2026, 11, 22));
        assert_eq!(file.timezone, "America/Los_Angeles");
        // Survives serialization.
        let text = serde_json::to_string(&file).unwrap();
        let file = crate::store_format::parse_usage(text.as_bytes(), LA).unwrap();

        let later = t0() + Duration::seconds(5);
        let mut fresh = KeyState::new(specs(&[Some("p"), Some("p"), None]), LA, later);
        fresh.restore(&file, later);
        fresh.restore(&file, later); // idempotent
        assert_eq!(fresh.status(later), s.status(later));
        // The streak came back too: the next detail-less 429 waits 120 s.
        let r = record(&mut fresh, 2, PRO, Outcome::RateLimited, t0() + Duration::seconds(60));
        assert_eq!(r, Recorded::Cooling { until: t0() + Duration::seconds(180) });
    }

    #[test]
    fn restore_from_a_past_day_is_a_rollover() {
        let yesterday = t0();
        let mut s = pool(2, yesterday);
        use_key(&mut s, FLASH, Outcome::Success, yesterday);
        record(&mut s, 1, FLASH, Outcome::QuotaPerDay, yesterday);
        record(&mut s, 1, PRO, Outcome::KeyInvalid { reason: "X".into() }, yesterday);
        let file = s.snapshot(yesterday);

        let today = la(2026, 11, 23, 9, 0);
        let mut fresh = pool(2, today);
        fresh.restore(&file, today);
        assert_eq!(fresh.quota_day(), date(2026, 11, 23));
        let st = status_json(&fresh, today);
        assert_eq!(st["totals"]["requests"], 0);
        assert_eq!(st["keys"][1]["state"], "disabled", "disabled survives");
        assert_eq!(
            fresh.history().get(date(2026, 11, 22), &fingerprint(&key(0))),
            Some(DayTotals { requests: 1, tokens: 10 })
        );
        assert_eq!(fresh.usable_for(FLASH, today), 1, "yesterday's park is over");
    }

    #[test]
    fn restore_ignores_unknown_keys_but_keeps_their_history() {
        let mut s = pool(1, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        let mut file = s.snapshot(t0());
        file.history.set(date(2026, 11, 1), "abcdefabcdef", DayTotals { requests: 9, tokens: 9 });
        let mut other = KeyState::new(vec![KeySpec::new(&key(7), None)], LA, t0());
        other.restore(&file, t0());
        assert_eq!(status_json(&other, t0())["totals"]["requests"], 0);
        assert_eq!(other.history().get(date(2026, 11, 1), "abcdefabcdef").unwrap().requests, 9);
    }

    #[test]
    fn restore_converted_seed_files() {
        let raw0 = key(0);
        let raw1 = key(1);
        // Flat seed file from today: counts under "unknown", the exhausted key parked for all models.
        let text = format!(
            r#"{{"date":"2026-11-22","counts":{{"{raw0}":12,"{raw1}":2}},"exhausted_keys":["{raw0}"]}}"#
        );
        let file = crate::store_format::parse_usage(text.as_bytes(), LA).unwrap();
        let mut s = pool(2, t0());
        s.restore(&file, t0());
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["models"][NO_MODEL]["requests"], 12);
        assert_eq!(st["keys"][0]["state"], "parked");
        assert_eq!(st["keys"][0]["models"][ALL_MODELS]["parked_until"], "2026-11-23T00:00:00-08:00");
        assert_eq!(st["totals"]["requests"], 14);
        assert_eq!(picked(&s.pick(FLASH, &[], t0())), 1);
        assert_eq!(picked(&s.pick(PRO, &[], t0())), 1);
        // SPEC §5 (version 2): a key blocked for all models is not tried by any request until
        // the block ends, model-less ones included (version 1 let models.list use it).
        assert_eq!(picked(&s.pick(None, &[], t0())), 1, "model-less requests do not use it either");
        let saved = serde_json::to_string(&s.snapshot(t0())).unwrap();
        assert!(!saved.contains(&raw0) && !saved.contains(&raw1));

        // Per-model seed file from yesterday: counts become history, parks are over.
        let text = format!(
            r#"{{"date":"2026-11-21","model_counts":{{"{raw0}":{{"gemini-2.5-flash":3}}}},"exhausted_keys":{{"{raw0}":["gemini-2.5-flash"]}}}}"#
        );
        let file = crate::store_format::parse_usage(text.as_bytes(), LA).unwrap();
        let mut s = pool(2, t0());
        s.restore(&file, t0());
        assert_eq!(s.history().get(date(2026, 11, 21), &fingerprint(&raw0)).unwrap().requests, 3);
        assert_eq!(s.usable_for(FLASH, t0()), 2);
    }

    #[test]
    fn restore_from_a_future_day_keeps_the_counts() {
        let mut s = pool(1, t0());
        use_key(&mut s, FLASH, Outcome::Success, t0());
        let mut file = s.snapshot(t0());
        file.quota_day = date(2026, 11, 23);
        let mut fresh = pool(1, t0());
        fresh.restore(&file, t0());
        assert_eq!(status_json(&fresh, t0())["totals"]["requests"], 1);
        assert_eq!(fresh.quota_day(), date(2026, 11, 22));
    }

    #[test]
    fn snapshot_drops_expired_limits() {
        let mut s = pool(1, t0());
        record(&mut s, 0, FLASH, per_minute(5), t0());
        let file = s.snapshot(t0() + Duration::seconds(6));
        assert!(file.keys[&fingerprint(&key(0))].models.is_empty());
        let file = s.snapshot(t0());
        assert_eq!(
            file.keys[&fingerprint(&key(0))].models["gemini-2.5-flash"].cooling_until,
            Some(t0() + Duration::seconds(5))
        );
    }

    // ---- quota intelligence (SPEC §14) ---------------------------------------------------

    fn violation(kind: crate::limits::Kind, value: u64) -> Vec<Violation> {
        vec![Violation { kind, value, model: FLASH.map(str::to_string) }]
    }

    /// Pick for FLASH at `now` and book it a success.
    fn serve(s: &mut KeyState, now: DateTime<Utc>) -> usize {
        let idx = picked(&s.pick(FLASH, &[], now));
        s.record(idx, &fingerprint(&key(idx)), FLASH, &Outcome::Success, 5, now);
        idx
    }

    #[test]
    fn a_learned_per_minute_limit_stops_picks_until_a_slot_frees() {
        use crate::limits::{Kind, MARGIN_MS, WINDOW_MS};
        let mut s = pool(1, t0());
        for i in 0..10 {
            serve(&mut s, t0() + Duration::seconds(i));
        }
        // The 11th is refused by Google: it is taken back, the limit learned, the project cools.
        let at = t0() + Duration::seconds(10);
        let idx = picked(&s.pick(FLASH, &[], at));
        record(&mut s, idx, FLASH, per_minute(26), at);
        s.refused(&fingerprint(&key(0)), FLASH, at);
        assert!(s.learn(&fingerprint(&key(0)), None, &violation(Kind::Rpm, 10)));
        // After the cooldown the window is still full: no pick until the first request leaves it.
        let after = at + Duration::seconds(27);
        let free = t0() + Duration::milliseconds(100 + WINDOW_MS + MARGIN_MS);
        let Pick::Exhausted { until, retry_after_secs, .. } = s.pick(FLASH, &[], after) else {
            panic!("a full window refuses")
        };
        assert_eq!(until, Some(free));
        assert_eq!(retry_after_secs, u64::try_from((free - after).num_seconds()).unwrap() + 1);
        assert_eq!(picked(&s.pick(FLASH, &[], free)), 0);
        assert!(matches!(s.pick(FLASH, &[], free), Pick::Exhausted { .. }), "one slot freed, one used");
        // Other models are not limited by it.
        assert_eq!(picked(&s.pick(PRO, &[], free)), 0);
        let st = status_json(&s, free);
        assert_eq!(
            st["keys"][0]["models"]["gemini-2.5-flash"]["limits"],
            json!({"rpm": 10, "rpd": null, "tpm": null})
        );
        assert_eq!(st["keys"][0]["models"]["gemini-2.5-flash"]["remaining_today"], Value::Null);
    }

    #[test]
    fn a_limit_is_per_project_and_the_pick_moves_on() {
        use crate::limits::Kind;
        let mut s = KeyState::new(specs(&[Some("p"), Some("p"), Some("q")]), LA, t0());
        s.learn(&fingerprint(&key(0)), FLASH, &violation(Kind::Rpm, 2));
        let order: Vec<usize> = (0..5).map(|_| serve(&mut s, t0())).collect();
        // Project p takes two, then only q's key is picked.
        assert_eq!(order, vec![0, 1, 2, 2, 2]);
    }

    #[test]
    fn configured_daily_limits_answer_until_the_reset_and_show_what_remains() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("q")]), LA, t0());
        s.set_limits(Configured::parse("gemini-2.5-*=rpd:2/rpm:100").unwrap(), true);
        for _ in 0..3 {
            serve(&mut s, t0());
        }
        let st = status_json(&s, t0());
        assert_eq!(st["keys"][0]["models"]["gemini-2.5-flash"]["remaining_today"], 0);
        assert_eq!(st["keys"][1]["models"]["gemini-2.5-flash"]["remaining_today"], 1);
        assert_eq!(st["keys"][1]["models"]["gemini-2.5-flash"]["limits"]["rpm"], 100);
        assert_eq!(st["models"]["gemini-2.5-flash"], json!({"projects": 2, "rpd": 4, "remaining_today": 1}));
        serve(&mut s, t0());
        let Pick::Exhausted { until, .. } = s.pick(FLASH, &[], t0()) else { panic!("all used up") };
        assert_eq!(until, Some(la(2026, 11, 23, 0, 0)), "until the reset");
        assert_eq!(picked(&s.pick(FLASH, &[], la(2026, 11, 23, 0, 0))), 0, "a new day");
    }

    #[test]
    fn a_configured_value_wins_and_learning_can_be_off() {
        use crate::limits::Kind;
        let mut s = pool(1, t0());
        s.set_limits(Configured::parse("*=rpm:3").unwrap(), true);
        s.learn(&fingerprint(&key(0)), FLASH, &violation(Kind::Rpm, 1));
        for _ in 0..3 {
            serve(&mut s, t0());
        }
        assert!(matches!(s.pick(FLASH, &[], t0()), Pick::Exhausted { .. }));
        let mut off = pool(1, t0());
        off.set_limits(Configured::default(), false);
        assert!(!off.learn(&fingerprint(&key(0)), FLASH, &violation(Kind::Rpm, 1)));
        for _ in 0..5 {
            serve(&mut off, t0());
        }
    }

    #[test]
    fn learned_limits_and_todays_counts_survive_a_restart() {
        use crate::limits::Kind;
        let mut s = pool(2, t0());
        serve(&mut s, t0());
        serve(&mut s, t0());
        s.learn(&fingerprint(&key(0)), FLASH, &violation(Kind::Rpd, 3));
        s.learn(&fingerprint(&key(1)), FLASH, &violation(Kind::Rpm, 9));
        let text = serde_json::to_string(&s.snapshot(t0())).unwrap();
        let file = crate::store_format::parse_usage(text.as_bytes(), LA).unwrap();
        assert_eq!(file.limits.len(), 2);
        let mut fresh = pool(2, t0());
        fresh.restore(&file, t0());
        assert_eq!(status_json(&fresh, t0()), status_json(&s, t0()));
        // Key 0's project: Google said 3 a day and it is used up.
        assert_eq!(picked(&fresh.pick(FLASH, &[], t0())), 1);
        assert_eq!(picked(&fresh.pick(FLASH, &[], t0())), 1);
        // Tomorrow the counts are gone, the limits stay.
        let tomorrow = la(2026, 11, 23, 9, 0);
        let mut next = pool(2, tomorrow);
        next.restore(&file, tomorrow);
        let st = status_json(&next, tomorrow);
        assert_eq!(st["keys"][0]["models"]["gemini-2.5-flash"]["remaining_today"], 3);
        assert_eq!(st["keys"][1]["models"]["gemini-2.5-flash"]["limits"]["rpm"], 9);
    }

    #[test]
    fn todays_successes_count_for_a_file_without_limits() {
        let mut s = KeyState::new(specs(&[Some("p"), Some("p")]), LA, t0());
        serve(&mut s, t0());
        serve(&mut s, t0());
        let mut file = s.snapshot(t0());
        file.limits.clear();
        let mut fresh = KeyState::new(specs(&[Some("p"), Some("p")]), LA, t0());
        fresh.set_limits(Configured::parse("*=rpd:3").unwrap(), true);
        fresh.restore(&file, t0());
        serve(&mut fresh, t0());
        assert!(matches!(fresh.pick(FLASH, &[], t0()), Pick::Exhausted { .. }), "2 + 1 of 3");
    }

    #[test]
    fn bare_429s_from_three_projects_cool_the_model_for_the_whole_pool() {
        let mut s = KeyState::new(specs(&[Some("a"), Some("b"), Some("c"), Some("d")]), LA, t0());
        let at = |secs| t0() + Duration::seconds(secs);
        assert!(matches!(record(&mut s, 0, FLASH, Outcome::RateLimited, at(0)), Recorded::Cooling { .. }));
        assert!(matches!(record(&mut s, 1, FLASH, Outcome::RateLimited, at(3)), Recorded::Cooling { .. }));
        let r = record(&mut s, 2, FLASH, Outcome::RateLimited, at(6));
        assert_eq!(r, Recorded::Throttled { until: at(11) });
        // No project keeps a cooldown of its own; the model waits pool-wide, other models do not.
        let st = status_json(&s, at(6));
        for k in st["keys"].as_array().unwrap() {
            assert_eq!(k["state"], "usable", "{k}");
        }
        let Pick::Exhausted { retry_after_secs, .. } = s.pick(FLASH, &[], at(6)) else { panic!("pool-wide") };
        assert_eq!(retry_after_secs, 5);
        assert_eq!(picked(&s.pick(PRO, &[], at(6))), 0);
        assert_eq!(
            record(&mut s, 3, FLASH, Outcome::RateLimited, at(7)),
            Recorded::Throttled { until: at(11) }
        );
        assert!(matches!(s.pick(FLASH, &[], at(11)), Pick::Key { .. }));
        // The streak of a project is back where it was: its next bare 429 waits 60 s again.
        let r = record(&mut s, 0, FLASH, Outcome::RateLimited, at(40));
        assert_eq!(r, Recorded::Cooling { until: at(100) });
    }
}
