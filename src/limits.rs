//! Limits: what Google's quotas allow a project for a model (SPEC §14) — requests per minute,
//! requests per day, tokens per minute — learned from the `QuotaFailure` of a 429 or configured
//! with `--limits`, and the proxy's own counts of what it sent: a sliding 60-second window and
//! today's total, per project and model. A [`Book`] says whether one more request fits, and when
//! it will if it does not.
//!
//! Pure: no I/O, no locks, no clock (`now` is a parameter); the pool owns the books.
//!
//! # Rules
//!
//! * A configured value wins over a learned one, field by field (the operator's word: a cap of
//!   their own, or a tier Google's old answer no longer describes); learned values fill the gaps.
//!   The latest 429 replaces what was learned before.
//! * Every attempt with a model is counted when its key is picked, so concurrent requests cannot
//!   overshoot a limit together; an attempt Google refused with a 429 is taken back (Google does
//!   not count what it refused).
//! * The minute window is kept in 100 ms ticks and a request leaves it 60 s after the end of its
//!   tick plus [`MARGIN_MS`] (the time the request takes to reach Google): the proxy's view is
//!   never younger than Google's, so it never sends what the window would refuse.
//! * Today's count ends at the daily reset (the pool's rollover); a per-day 429 sets it to the
//!   limit Google named (Google's books are the truth).

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The sliding window of per-minute limits.
pub const WINDOW_MS: i64 = 60_000;
/// Width of one counting tick of the window.
const TICK_MS: i64 = 100;
/// How much later than the proxy's pick Google may have counted a request.
pub const MARGIN_MS: i64 = 250;

/// Known limits of one project and model; `None` where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub rpd: Option<u64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

impl Limits {
    /// `self` where it knows a value, else `other`.
    pub fn or(self, other: Limits) -> Limits {
        Limits { rpd: self.rpd.or(other.rpd), rpm: self.rpm.or(other.rpm), tpm: self.tpm.or(other.tpm) }
    }

    pub fn is_empty(&self) -> bool {
        self.rpd.is_none() && self.rpm.is_none() && self.tpm.is_none()
    }

    fn set(&mut self, kind: Kind, value: u64) {
        match kind {
            Kind::Rpm => self.rpm = Some(value),
            Kind::Rpd => self.rpd = Some(value),
            Kind::Tpm => self.tpm = Some(value),
        }
    }
}

/// Which limit a quota names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rpm,
    Rpd,
    Tpm,
}

/// One violation of a 429's `QuotaFailure`: the limit it names, its value, and its model
/// (`quotaDimensions.model`), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: Kind,
    pub value: u64,
    pub model: Option<String>,
}

impl Violation {
    /// The limit a `quotaId` names: requests or tokens, per minute or per day. Tokens per day
    /// are not modelled (`None`), nor is anything else.
    pub fn kind_of(quota_id: &str) -> Option<Kind> {
        let tokens = quota_id.contains("Token");
        match (tokens, quota_id.contains("PerDay"), quota_id.contains("PerMinute")) {
            (false, true, _) => Some(Kind::Rpd),
            (false, false, true) => Some(Kind::Rpm),
            (true, false, true) => Some(Kind::Tpm),
            _ => None,
        }
    }
}

/// `--limits` (`LIMITS`): `PATTERN=rpm:N/rpd:N/tpm:N`, comma-separated, `*` glob over the model,
/// first match wins; a field may be left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configured {
    rules: Vec<(String, Limits)>,
}

impl Configured {
    pub fn parse(text: &str) -> Result<Configured, String> {
        let mut rules = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((pattern, spec)) = item.split_once('=') else {
                return Err(format!("'{item}' is not PATTERN=rpm:N/rpd:N/tpm:N"));
            };
            let pattern = pattern.trim().trim_start_matches("models/");
            if pattern.is_empty() {
                return Err(format!("'{item}' has no model pattern"));
            }
            let mut limits = Limits::default();
            for part in spec.split('/').map(str::trim).filter(|s| !s.is_empty()) {
                let (name, value) = part
                    .split_once(':')
                    .ok_or_else(|| format!("'{part}' in '{item}' is not rpm:N, rpd:N or tpm:N"))?;
                let value: u64 = value.trim().parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                    format!("'{part}' in '{item}': the limit must be a positive whole number")
                })?;
                let kind = match name.trim().to_ascii_lowercase().as_str() {
                    "rpm" => Kind::Rpm,
                    "rpd" => Kind::Rpd,
                    "tpm" => Kind::Tpm,
                    other => return Err(format!("'{other}' in '{item}' is not rpm, rpd or tpm")),
                };
                limits.set(kind, value);
            }
            if limits.is_empty() {
                return Err(format!("'{item}' sets no limit"));
            }
            rules.push((pattern.to_string(), limits));
        }
        Ok(Configured { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The configured limits of `model` (the first pattern that matches), empty when none does.
    pub fn of(&self, model: &str) -> Limits {
        self.rules.iter().find(|(p, _)| crate::alias::glob(p, model)).map(|(_, l)| *l).unwrap_or_default()
    }
}

/// When a blocked project and model can take a request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    At(DateTime<Utc>),
    /// The daily limit is reached: at the next reset.
    Reset,
}

/// One project's books for one model: what was learned, and what the proxy sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    pub learned: Limits,
    /// Requests sent today (attempts picked, minus those Google refused).
    pub today: u64,
    /// (tick, requests, tokens) of the last minute, oldest first.
    minute: VecDeque<(i64, u32, u64)>,
}

fn tick_of(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis().div_euclid(TICK_MS)
}

/// When a request counted in `tick` leaves the window.
fn leaves(tick: i64) -> DateTime<Utc> {
    let ms = (tick + 1).saturating_mul(TICK_MS).saturating_add(WINDOW_MS + MARGIN_MS);
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Book {
    fn prune(&mut self, now: DateTime<Utc>) {
        while self.minute.front().is_some_and(|(tick, _, _)| leaves(*tick) <= now) {
            self.minute.pop_front();
        }
    }

    fn entry(&mut self, now: DateTime<Utc>) -> &mut (i64, u32, u64) {
        let tick = tick_of(now);
        // A clock that steps back books into the newest tick (never younger than it is).
        if self.minute.back().is_none_or(|(t, _, _)| *t < tick) {
            self.minute.push_back((tick, 0, 0));
        }
        let last = self.minute.len() - 1;
        &mut self.minute[last]
    }

    /// One request sent at `now`.
    pub fn sent(&mut self, now: DateTime<Utc>) {
        self.prune(now);
        let e = self.entry(now);
        e.1 = e.1.saturating_add(1);
        self.today = self.today.saturating_add(1);
    }

    /// The request sent at `at` was refused (a 429): it does not count.
    pub fn refused(&mut self, at: DateTime<Utc>) {
        let tick = tick_of(at);
        if let Some(e) = self.minute.iter_mut().rev().find(|(t, n, _)| *t <= tick && *n > 0) {
            e.1 -= 1;
        }
        self.today = self.today.saturating_sub(1);
    }

    /// An answer of `tokens` tokens arrived at `now`.
    pub fn tokens(&mut self, tokens: u64, now: DateTime<Utc>) {
        if tokens == 0 {
            return;
        }
        self.prune(now);
        let e = self.entry(now);
        e.2 = e.2.saturating_add(tokens);
    }

    /// Requests and tokens in the window at `now`.
    pub fn in_window(&self, now: DateTime<Utc>) -> (u64, u64) {
        self.minute
            .iter()
            .filter(|(tick, _, _)| leaves(*tick) > now)
            .fold((0, 0), |(r, t), (_, n, k)| (r + u64::from(*n), t.saturating_add(*k)))
    }

    /// If one more request would break a limit of `limits` at `now`: until when.
    pub fn blocked(&self, limits: &Limits, now: DateTime<Utc>) -> Option<Until> {
        if limits.rpd.is_some_and(|rpd| self.today >= rpd) {
            return Some(Until::Reset);
        }
        let (requests, tokens) = self.in_window(now);
        let requests_free =
            limits.rpm.and_then(|rpm| self.frees(now, requests, rpm, |(_, n, _)| u64::from(*n)));
        let tokens_free = limits.tpm.and_then(|tpm| self.frees(now, tokens, tpm, |(_, _, k)| *k));
        let until = requests_free.max(tokens_free);
        until.map(Until::At)
    }

    /// When `used` (of what `amount` counts per tick) drops below `limit` as the window's ticks
    /// leave it; `None` when it is below already.
    fn frees(
        &self,
        now: DateTime<Utc>,
        used: u64,
        limit: u64,
        amount: impl Fn(&(i64, u32, u64)) -> u64,
    ) -> Option<DateTime<Utc>> {
        let mut over = (used + 1).checked_sub(limit).filter(|o| *o > 0)?;
        for entry in self.minute.iter().filter(|(tick, _, _)| leaves(*tick) > now) {
            let n = amount(entry);
            if n >= over && n > 0 {
                return Some(leaves(entry.0));
            }
            over -= n;
        }
        None
    }

    /// Learn a limit Google named; a daily one also means today's count is at least that.
    pub fn learn(&mut self, kind: Kind, value: u64) {
        self.learned.set(kind, value);
        if kind == Kind::Rpd {
            self.today = self.today.max(value);
        }
    }

    /// The daily reset: today's count starts over (the window runs on).
    pub fn new_day(&mut self) {
        self.today = 0;
    }

    /// Nothing worth keeping (no limit learned, nothing counted today, an empty window).
    pub fn is_idle(&self, now: DateTime<Utc>) -> bool {
        self.learned.is_empty() && self.today == 0 && self.in_window(now) == (0, 0)
    }
}

/// Bare 429s from this many projects ...
pub const THROTTLE_PROJECTS: usize = 3;
/// ... within this many seconds, for one model, mean Google limits the proxy's address.
pub const THROTTLE_WITHIN_SECS: i64 = 10;
/// First pool-wide cooldown; doubles while it repeats, up to [`THROTTLE_MAX_SECS`].
pub const THROTTLE_BASE_SECS: i64 = 5;
pub const THROTTLE_MAX_SECS: i64 = 300;

/// Pool-wide throttling of one model (SPEC §14): bare 429s (no `QuotaFailure`) from
/// [`THROTTLE_PROJECTS`] projects within [`THROTTLE_WITHIN_SECS`] cool the model for the whole
/// pool, 5 s doubling to 5 minutes while it repeats, instead of cooling each project. `P` is
/// whatever the pool needs to undo a project's own cooldown (its state before the 429).
#[derive(Debug, Clone)]
pub struct Throttle<K, P> {
    /// The bare 429s of the last seconds: when, whose project, the project's state before it.
    recent: VecDeque<(DateTime<Utc>, K, P)>,
    until: Option<DateTime<Utc>>,
    streak: u32,
}

impl<K, P> Default for Throttle<K, P> {
    fn default() -> Self {
        Throttle { recent: VecDeque::new(), until: None, streak: 0 }
    }
}

/// What one bare 429 means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bare<K, P> {
    /// A project's own matter so far: cool that project as usual.
    Project,
    /// The model is cooled pool-wide until then. `undo`: the projects whose own cooldowns came
    /// from the bare 429s that proved it, with their state before (the pool restores it).
    PoolWide { until: DateTime<Utc>, undo: Vec<(K, P)> },
}

impl<K: PartialEq + Clone, P: Clone> Throttle<K, P> {
    /// When the pool-wide cooldown ends, if it runs at `now`.
    pub fn until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.until.filter(|t| *t > now)
    }

    /// A bare 429 from `project` (whose state before it was `before`) at `now`.
    pub fn bare(&mut self, project: K, before: P, now: DateTime<Utc>) -> Bare<K, P> {
        if let Some(until) = self.until(now) {
            return Bare::PoolWide { until, undo: Vec::new() };
        }
        if self.until.is_some_and(|end| now - end > chrono::Duration::seconds(THROTTLE_MAX_SECS)) {
            // Quiet for a while since the last one: the doubling starts over.
            self.streak = 0;
        }
        let horizon = now - chrono::Duration::seconds(THROTTLE_WITHIN_SECS);
        self.recent.retain(|(t, _, _)| *t > horizon);
        self.recent.push_back((now, project, before));
        let mut projects: Vec<&K> = Vec::new();
        for (_, k, _) in &self.recent {
            if !projects.contains(&k) {
                projects.push(k);
            }
        }
        if projects.len() < THROTTLE_PROJECTS {
            return Bare::Project;
        }
        let secs = (THROTTLE_BASE_SECS << self.streak.min(8)).min(THROTTLE_MAX_SECS);
        self.streak = self.streak.saturating_add(1);
        let until = now + chrono::Duration::seconds(secs);
        self.until = Some(until);
        // Undo each project's own cooldown: its state before its first bare 429 of the run.
        let mut undo: Vec<(K, P)> = Vec::new();
        for (_, k, p) in self.recent.drain(..) {
            if !undo.iter().any(|(u, _)| *u == k) {
                undo.push((k, p));
            }
        }
        Bare::PoolWide { until, undo }
    }

    /// The daily reset: the doubling starts over.
    pub fn new_day(&mut self) {
        self.streak = 0;
    }

    /// Nothing running and nothing to remember.
    pub fn is_idle(&self, now: DateTime<Utc>) -> bool {
        self.until(now).is_none() && self.recent.is_empty() && self.streak == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 18, 0, 0).unwrap()
    }

    fn ms(n: i64) -> Duration {
        Duration::milliseconds(n)
    }

    #[test]
    fn quota_ids_name_their_kind() {
        let cases = [
            ("GenerateRequestsPerDayPerProjectPerModel-FreeTier", Some(Kind::Rpd)),
            ("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", Some(Kind::Rpm)),
            ("GenerateContentInputTokensPerModelPerMinute-FreeTier", Some(Kind::Tpm)),
            ("GenerateContentPaidTierInputTokensPerModelPerMinute", Some(Kind::Tpm)),
            ("GenerateContentInputTokensPerModelPerDay-FreeTier", None),
            ("SomethingElse", None),
        ];
        for (id, kind) in cases {
            assert_eq!(Violation::kind_of(id), kind, "{id}");
        }
    }

    #[test]
    fn configured_limits_parse_and_match_first_pattern() {
        let c = Configured::parse("gemini-2.5-pro=rpm:5/rpd:100, gemini-*=rpm:15/tpm:250000").unwrap();
        assert_eq!(c.of("gemini-2.5-pro"), Limits { rpm: Some(5), rpd: Some(100), tpm: None });
        assert_eq!(c.of("gemini-2.5-flash"), Limits { rpm: Some(15), rpd: None, tpm: Some(250_000) });
        assert_eq!(c.of("imagen-4"), Limits::default());
        assert!(Configured::parse("").unwrap().is_empty());
        for bad in ["x", "m=", "m=rpm", "m=rpm:0", "m=rpm:x", "m=rps:3", "=rpm:3"] {
            assert!(Configured::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_configured_value_wins_over_a_learned_one() {
        let configured = Limits { rpm: Some(5), ..Limits::default() };
        let learned = Limits { rpm: Some(10), rpd: Some(250), tpm: None };
        assert_eq!(configured.or(learned), Limits { rpm: Some(5), rpd: Some(250), tpm: None });
    }

    #[test]
    fn the_minute_window_frees_a_slot_when_its_oldest_request_leaves() {
        let limits = Limits { rpm: Some(3), ..Limits::default() };
        let mut b = Book::default();
        b.sent(t0());
        b.sent(t0() + ms(10_000));
        assert_eq!(b.blocked(&limits, t0() + ms(10_000)), None);
        b.sent(t0() + ms(20_000));
        // Full: the first request (tick ending at t0 + 100 ms) leaves 60 s + margin later.
        let free = t0() + ms(100 + WINDOW_MS + MARGIN_MS);
        assert_eq!(b.blocked(&limits, t0() + ms(20_000)), Some(Until::At(free)));
        assert_eq!(b.blocked(&limits, free - ms(1)), Some(Until::At(free)));
        assert_eq!(b.blocked(&limits, free), None);
        assert_eq!(b.in_window(free), (2, 0));
        // Never younger than Google's view: not free before 60 s after the send.
        assert!(free > t0() + ms(WINDOW_MS));
    }

    #[test]
    fn a_refused_request_is_taken_back() {
        let limits = Limits { rpm: Some(2), rpd: Some(5), tpm: None };
        let mut b = Book::default();
        b.sent(t0());
        b.sent(t0() + ms(500));
        assert!(b.blocked(&limits, t0() + ms(500)).is_some());
        b.refused(t0() + ms(500));
        assert_eq!(b.blocked(&limits, t0() + ms(500)), None);
        assert_eq!(b.today, 1);
    }

    #[test]
    fn the_day_limit_holds_until_the_reset() {
        let limits = Limits { rpd: Some(2), ..Limits::default() };
        let mut b = Book::default();
        b.sent(t0());
        b.sent(t0() + ms(90_000));
        assert_eq!(b.blocked(&limits, t0() + ms(200_000)), Some(Until::Reset));
        b.new_day();
        assert_eq!(b.blocked(&limits, t0() + ms(200_000)), None);
        b.learn(Kind::Rpd, 250);
        assert_eq!(b.today, 250, "a per-day 429: Google's count is the truth");
        assert_eq!(b.blocked(&b.learned.clone(), t0() + ms(200_000)), Some(Until::Reset));
    }

    #[test]
    fn tokens_per_minute_block_until_enough_tokens_leave() {
        let limits = Limits { tpm: Some(1000), ..Limits::default() };
        let mut b = Book::default();
        b.tokens(600, t0());
        b.tokens(500, t0() + ms(30_000));
        let free = t0() + ms(100 + WINDOW_MS + MARGIN_MS);
        assert_eq!(b.blocked(&limits, t0() + ms(30_000)), Some(Until::At(free)));
        assert_eq!(b.blocked(&limits, free), None);
    }

    #[test]
    fn a_clock_that_steps_back_books_into_the_newest_tick() {
        let mut b = Book::default();
        b.sent(t0());
        b.sent(t0() - ms(5_000));
        assert_eq!(b.in_window(t0()), (2, 0));
        assert!(!b.is_idle(t0() + ms(70_000)), "today still counts");
        b.new_day();
        assert!(b.is_idle(t0() + ms(70_000)));
    }
    #[test]
    fn bare_429s_from_three_projects_within_ten_seconds_cool_the_model_pool_wide() {
        let mut t: Throttle<&str, u32> = Throttle::default();
        assert_eq!(t.bare("a", 1, t0()), Bare::Project);
        assert_eq!(t.bare("a", 2, t0() + ms(1_000)), Bare::Project, "one project twice is still one");
        assert_eq!(t.bare("b", 3, t0() + ms(2_000)), Bare::Project);
        let at = t0() + ms(9_000);
        let until = at + Duration::seconds(5);
        assert_eq!(t.bare("c", 4, at), Bare::PoolWide { until, undo: vec![("a", 1), ("b", 3), ("c", 4)] });
        assert_eq!(t.until(at), Some(until));
        // While it runs, bare 429s change nothing.
        assert_eq!(t.bare("d", 5, at + ms(1_000)), Bare::PoolWide { until, undo: vec![] });
        // It repeats: 10 s, then 20 s ...
        let again = until + ms(1_000);
        t.bare("a", 0, again);
        t.bare("b", 0, again);
        let Bare::PoolWide { until: second, .. } = t.bare("c", 0, again) else { panic!("pool-wide") };
        assert_eq!(second, again + Duration::seconds(10));
        // ... up to 5 minutes.
        let mut now = second;
        for _ in 0..10 {
            now += ms(400_000);
            t.bare("a", 0, now);
            t.bare("b", 0, now);
            t.bare("c", 0, now);
        }
        assert_eq!(t.until(now), Some(now + Duration::seconds(5)), "quiet past 5 minutes: starts over");
        let mut now = t0() + Duration::days(1);
        let mut t: Throttle<&str, u32> = Throttle::default();
        let mut last = Duration::zero();
        for _ in 0..10 {
            t.bare("a", 0, now);
            t.bare("b", 0, now);
            let Bare::PoolWide { until, .. } = t.bare("c", 0, now) else { panic!() };
            last = until - now;
            now = until + ms(1_000);
        }
        assert_eq!(last, Duration::seconds(THROTTLE_MAX_SECS));
    }

    #[test]
    fn bare_429s_spread_wider_than_ten_seconds_stay_per_project() {
        let mut t: Throttle<&str, u32> = Throttle::default();
        assert_eq!(t.bare("a", 0, t0()), Bare::Project);
        assert_eq!(t.bare("b", 0, t0() + ms(6_000)), Bare::Project);
        assert_eq!(t.bare("c", 0, t0() + ms(10_500)), Bare::Project);
        assert!(t.until(t0() + ms(10_500)).is_none());
    }
}
