//! Admin: the operator's views of the pool — the `/status` document (SPEC §4), the `/metrics`
//! text, and the answers of the admin routes
//! (`/status`, `/metrics`, `/dashboard`; the page itself is rendered by [`crate::dashboard`]).
//!
//! It must never hold the pool lock while it serializes, renders or answers (it reads a view
//! under one short lock, then lets go), never show a raw key or client token (views carry
//! fingerprints and masks only), and never change the pool beyond rolling the quota day over.
//! The view types themselves are in [`crate::status`].

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use chrono::{DateTime, Utc};

use crate::App;
use crate::error::{ProxyError, Reply};
use crate::metrics::Metrics;
use crate::server::ServerStats;
use crate::status::{KeyCounts, KeyStateName, StatusView};

/// The pool's `/status` view at `now`, the quota day rolled over first (so that an idle pool's
/// counts are today's). The lock is held only while the view is built.
pub fn status_view(app: &App, now: DateTime<Utc>) -> StatusView {
    let mut pool = app.pool.lock();
    pool.rollover(now);
    pool.status(now)
}

/// Below this many keys `/metrics` has the per-key series unless `--metrics-per-key` says
/// otherwise; at this many or more it leaves them out.
pub const METRICS_PER_KEY_BELOW: usize = 100;

/// Whether `/metrics` shows per-key series for a pool of `keys`: `--metrics-per-key` if it was
/// set, else only below [`METRICS_PER_KEY_BELOW`] keys.
pub fn metrics_per_key(configured: Option<bool>, keys: usize) -> bool {
    configured.unwrap_or(keys < METRICS_PER_KEY_BELOW)
}

/// `/metrics` in the Prometheus text exposition format: the request, attempt and latency
/// families of `metrics`, the pool and worker gauges, keys per state and today's requests and
/// tokens per model (summed over the keys), then — when `per_key` — per key and model today's
/// requests and tokens, each key's state, limits and what remains, and per model the limits and
/// the build. Without `per_key` no series names a key, so the text's size follows the models,
/// not the pool.
pub fn metrics_text(
    status: &StatusView,
    counts: &KeyCounts,
    metrics: &Metrics,
    stats: &ServerStats,
    dropped_log_lines: u64,
    per_key: bool,
) -> String {
    let mut out = String::with_capacity(8192);
    metrics.render(&mut out);
    let disabled = counts.by_state.get(&KeyStateName::Disabled).copied().unwrap_or(0);
    let usable = counts.total.saturating_sub(disabled);
    let gauges: [(&str, &str, &str, u64); 7] = [
        ("gkm_keys_usable", "gauge", "Keys not disabled.", usable as u64),
        ("gkm_keys_total", "gauge", "Keys in the pool.", counts.total as u64),
        (
            "gkm_workers_busy",
            "gauge",
            "Workers serving a request now.",
            stats.busy_workers.load(Relaxed) as u64,
        ),
        ("gkm_queue_depth", "gauge", "Requests waiting for a worker.", stats.queued.load(Relaxed) as u64),
        (
            "gkm_requests_shed_total",
            "counter",
            "Requests answered 503 because every worker was busy.",
            stats.shed.load(Relaxed) as u64,
        ),
        (
            "gkm_handler_panics_total",
            "counter",
            "Handler panics turned into 500s.",
            stats.panics.load(Relaxed) as u64,
        ),
        (
            "gkm_log_lines_dropped_total",
            "counter",
            "Log lines dropped because the writer fell behind.",
            dropped_log_lines,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
    pool_aggregates(&mut out, counts);
    if per_key {
        per_key_series(&mut out, status);
    }
    model_series(&mut out, status);
    let _ = write!(
        out,
        "# HELP gkm_build_info Build information.\n# TYPE gkm_build_info gauge\ngkm_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// A model name as a label value.
fn label(model: &str) -> String {
    model.replace(['"', '\\', '\n'], "_")
}

/// The series that sum the keys: keys per state, today's requests and tokens per model.
fn pool_aggregates(out: &mut String, counts: &KeyCounts) {
    out.push_str("# HELP gkm_keys_by_state Keys in each state.\n# TYPE gkm_keys_by_state gauge\n");
    for state in KeyStateName::ALL {
        let n = counts.by_state.get(&state).copied().unwrap_or(0);
        let _ = writeln!(out, "gkm_keys_by_state{{state=\"{}\"}} {n}", state.as_str());
    }
    let models = &counts.per_model;
    out.push_str("# HELP gkm_model_requests_today Requests counted today per model, summed over the keys.\n# TYPE gkm_model_requests_today gauge\n");
    for (model, (requests, _)) in models {
        let _ = writeln!(out, "gkm_model_requests_today{{model=\"{}\"}} {requests}", label(model));
    }
    out.push_str("# HELP gkm_model_tokens_today Tokens counted today per model, summed over the keys.\n# TYPE gkm_model_tokens_today gauge\n");
    for (model, (_, tokens)) in models {
        let _ = writeln!(out, "gkm_model_tokens_today{{model=\"{}\"}} {tokens}", label(model));
    }
}

/// The series per key (`--metrics-per-key`): today's requests and tokens per model, the state,
/// the project's limits and what remains today.
fn per_key_series(out: &mut String, status: &StatusView) {
    let keys = &status.keys;
    out.push_str("# HELP gkm_key_requests_today Requests counted today per key and model.\n# TYPE gkm_key_requests_today gauge\n");
    let mut tokens = String::new();
    for k in keys {
        for (model, m) in &k.models {
            let model = label(model);
            let labels = format!("key=\"{}\",model=\"{model}\"", k.id);
            let _ = writeln!(out, "gkm_key_requests_today{{{labels}}} {}", m.requests);
            let _ = writeln!(tokens, "gkm_key_tokens_today{{{labels}}} {}", m.tokens);
        }
    }
    out.push_str("# HELP gkm_key_tokens_today Tokens counted today per key and model.\n# TYPE gkm_key_tokens_today gauge\n");
    out.push_str(&tokens);
    out.push_str(
        "# HELP gkm_key_state Each key's state (1 for the current one).\n# TYPE gkm_key_state gauge\n",
    );
    for k in keys {
        for state in KeyStateName::ALL {
            let v = u8::from(k.state == state);
            let _ = writeln!(out, "gkm_key_state{{key=\"{}\",state=\"{}\"}} {v}", k.id, state.as_str());
        }
    }
    out.push_str("# HELP gkm_key_limit A key's project's known limit per model (learned from Google's 429s or configured).\n# TYPE gkm_key_limit gauge\n");
    let mut remaining = String::new();
    for k in keys {
        for (model, m) in &k.models {
            let model = label(model);
            for (name, value) in [("rpm", m.limits.rpm), ("rpd", m.limits.rpd), ("tpm", m.limits.tpm)] {
                if let Some(v) = value {
                    let _ = writeln!(
                        out,
                        "gkm_key_limit{{key=\"{}\",model=\"{model}\",limit=\"{name}\"}} {v}",
                        k.id
                    );
                }
            }
            if let Some(r) = m.remaining_today {
                let _ =
                    writeln!(remaining, "gkm_key_remaining_today{{key=\"{}\",model=\"{model}\"}} {r}", k.id);
            }
        }
    }
    out.push_str("# HELP gkm_key_remaining_today Requests a key's project has left today per model (known daily limits only).\n# TYPE gkm_key_remaining_today gauge\n");
    out.push_str(&remaining);
}

/// Per model, over the projects that know its daily limit: what remains today and the limits.
fn model_series(out: &mut String, status: &StatusView) {
    out.push_str("# HELP gkm_model_remaining_today Requests left today per model, summed over the projects that know its daily limit.\n# TYPE gkm_model_remaining_today gauge\n");
    for (model, v) in &status.models {
        let model = label(model);
        let _ = writeln!(out, "gkm_model_remaining_today{{model=\"{model}\"}} {}", v.remaining_today);
    }
    out.push_str("# HELP gkm_model_limit_today Daily limits per model, summed over the projects that know them.\n# TYPE gkm_model_limit_today gauge\n");
    for (model, v) in &status.models {
        let model = label(model);
        let _ =
            writeln!(out, "gkm_model_limit_today{{model=\"{model}\",projects=\"{}\"}} {}", v.projects, v.rpd);
    }
}

/// How `GET /status` shows the keys (SPEC §4): all of them (no parameter: the document as it
/// has always been), one page of them (`?page=P&limit=L`, pages from 1, `limit` 100 unless given,
/// at most 1,000), or none (`?summary`: their count per state instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusForm {
    All,
    Page { page: usize, limit: usize },
    Summary,
}

/// Keys per page when `?page` comes without `?limit`.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// The most keys one page shows.
pub const MAX_PAGE_LIMIT: usize = 1000;

impl StatusForm {
    /// The form a `/status` query asks for; a malformed number is a 400 naming the parameter.
    pub fn of(target: &crate::router::Target) -> Result<StatusForm, ProxyError> {
        if target.query_param("summary").is_some_and(|v| v != "false" && v != "0") {
            return Ok(StatusForm::Summary);
        }
        let number = |name: &str| -> Result<Option<usize>, ProxyError> {
            match target.query_param(name) {
                None => Ok(None),
                Some(v) => match v.parse::<usize>() {
                    Ok(n) if n >= 1 => Ok(Some(n)),
                    _ => Err(ProxyError::bad_request(
                        format!("/status: `{name}` must be a whole number from 1"),
                        Some(name),
                    )),
                },
            }
        };
        let (page, limit) = (number("page")?, number("limit")?);
        if page.is_none() && limit.is_none() {
            return Ok(StatusForm::All);
        }
        let limit = limit.unwrap_or(DEFAULT_PAGE_LIMIT).min(MAX_PAGE_LIMIT);
        Ok(StatusForm::Page { page: page.unwrap_or(1), limit })
    }
}

/// The answer to `GET /status` in `form`.
pub fn status_reply(app: &App, form: StatusForm) -> Result<Reply, ProxyError> {
    let now = Utc::now();
    let mut pool = app.pool.lock();
    pool.rollover(now);
    let total = pool.len();
    let mut extra: Vec<(&str, serde_json::Value)> = Vec::new();
    // Only the keys shown get a view: a page or the summary of a large pool costs what it shows.
    let mut status = match form {
        StatusForm::All => pool.status(now),
        StatusForm::Page { page, limit } => {
            let start = page.saturating_sub(1).saturating_mul(limit).min(total);
            let end = start.saturating_add(limit).min(total);
            extra.push(("page", page.into()));
            extra.push(("limit", limit.into()));
            extra.push(("pages", total.div_ceil(limit).into()));
            extra.push(("keys_total", total.into()));
            pool.status_where(now, |i| (start..end).contains(&i))
        }
        StatusForm::Summary => {
            let counts = pool.state_counts(now);
            let states: serde_json::Map<String, serde_json::Value> = KeyStateName::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), counts.get(s).copied().unwrap_or(0).into()))
                .collect();
            extra.push(("keys_total", total.into()));
            extra.push(("key_states", states.into()));
            pool.status_where(now, |_| false)
        }
    };
    drop(pool);
    let live = app.live.view(app.config.max_live_sessions, |t| app.format_time(t));
    let fail =
        |e: serde_json::Error| ProxyError::Internal { message: format!("cannot serialize the status: {e}") };
    let egress = app.upstream.egress();
    for key in &mut status.keys {
        key.egress = Some(egress.label(&key.id));
    }
    // The keys are serialized straight from their views: as a tree of `Value`s they took tens of
    // megabytes at 3,000 keys, which the allocator then kept.
    let keys = std::mem::take(&mut status.keys);
    let mut doc = serde_json::to_value(&status).map_err(fail)?;
    if let Some(map) = doc.as_object_mut() {
        map.insert("live".into(), serde_json::to_value(&live).map_err(fail)?);
        map.insert("clients".into(), serde_json::to_value(app.clients.view(Utc::now())).map_err(fail)?);
        if form == StatusForm::Summary {
            map.remove("keys");
        }
        for (name, value) in extra {
            map.insert(name.into(), value);
        }
    }
    let body = serde_json::to_vec(&WithKeys { doc: &doc, keys: &keys }).map_err(fail)?;
    Ok(Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json; charset=UTF-8".into())],
        body,
    })
}

/// A `/status` document whose `keys` (where it has them) are the views themselves.
struct WithKeys<'a> {
    doc: &'a serde_json::Value,
    keys: &'a [crate::status::KeyView],
}

impl serde::Serialize for WithKeys<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(fields) = self.doc.as_object() else { return self.doc.serialize(s) };
        let mut map = s.serialize_map(Some(fields.len()))?;
        for (name, value) in fields {
            if name == "keys" {
                map.serialize_entry(name, self.keys)?;
            } else {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// The answer to `GET /metrics`.
pub fn metrics_reply(app: &App) -> Reply {
    let now = Utc::now();
    let (status, counts, per_key) = {
        let mut pool = app.pool.lock();
        pool.rollover(now);
        if metrics_per_key(app.config.metrics_per_key, pool.len()) {
            let status = pool.status(now);
            let counts = KeyCounts::of(&status);
            (status, counts, true)
        } else {
            // No series names a key: the keys are counted, not viewed one by one.
            (pool.status_where(now, |_| false), pool.key_counts(now), false)
        }
    };
    let dropped = crate::logging::dropped_lines();
    let mut text = metrics_text(&status, &counts, &app.metrics, &app.server_stats, dropped, per_key);
    app.responses.render_metrics(&mut text, std::time::Instant::now());
    app.live.render(&mut text);
    app.clients.render_metrics(&mut text, Utc::now());
    Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "text/plain; version=0.0.4; charset=utf-8".into())],
        body: text.into_bytes(),
    }
}

/// What a `/dashboard` query asks for: the overview, or `?page=N` (a whole number from 1; else a
/// 400 naming the parameter).
pub fn dashboard_view(target: &crate::router::Target) -> Result<crate::dashboard::View, ProxyError> {
    match target.query_param("page") {
        None => Ok(crate::dashboard::View::Overview),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(crate::dashboard::View::Page(n)),
            _ => {
                Err(ProxyError::bad_request("/dashboard: `page` must be a whole number from 1", Some("page")))
            }
        },
    }
}

/// The answer to `GET /dashboard` in `view`: the page of [`crate::dashboard::render`], never
/// cached, and a Content-Security-Policy that lets it load nothing. `tail` makes what goes at
/// the end of the page (the admin section) from the view and the keys the page shows.
///
/// One short lock takes the `/status` view and the history's sums per day (the history itself is
/// not copied); the rest works on the view.
pub fn dashboard_reply(
    app: &App,
    view: crate::dashboard::View,
    tail: impl FnOnce(&StatusView, &[usize]) -> String,
) -> Reply {
    let now = Utc::now();
    let (status, daily) = {
        let mut pool = app.pool.lock();
        pool.rollover(now);
        (pool.status(now), crate::dashboard::daily(pool.history()))
    };
    let shown = crate::dashboard::shown(&status, view);
    let tail = tail(&status, &shown);
    let html = crate::dashboard::render(&status, &daily, view, &shown, now, &tail);
    Reply {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/html; charset=utf-8".into()),
            ("Cache-Control".into(), "no-store".into()),
            (
                "Content-Security-Policy".into(),
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:".into(),
            ),
        ],
        body: html.into_bytes(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::status::*;
    use chrono::{Duration, TimeZone};
    use chrono::{FixedOffset, NaiveDate};
    use chrono_tz::Tz;
    use serde_json::json;
    use std::collections::BTreeMap;

    const LA: Tz = chrono_tz::America::Los_Angeles;

    fn t(rfc: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(rfc).unwrap()
    }

    fn example() -> StatusView {
        let flash = ModelView {
            requests: 12,
            tokens: 3400,
            limits: LimitsView { rpd: Some(250), rpm: Some(10), tpm: None },
            remaining_today: Some(238),
            ..ModelView::default()
        };
        StatusView {
            models: BTreeMap::from([(
                "gemini-2.5-flash".to_string(),
                ModelLimitsView { projects: 1, remaining_today: 238, rpd: 250 },
            )]),
            quota_day: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
            timezone: "America/Los_Angeles".into(),
            next_reset: t("2026-11-23T00:00:00-08:00"),
            totals: Totals { requests: 12, tokens: 3400 },
            keys: vec![
                KeyView {
                    egress: None,
                    id: "3f2a9c1b7e4d".into(),
                    masked: "AIza…XyZ1".into(),
                    project: Some("proj-a".into()),
                    state: KeyStateName::Usable,
                    disabled_reason: None,
                    last_used: Some(t("2026-11-22T10:01:02-08:00")),
                    requests: 12,
                    tokens: 3400,
                    models: BTreeMap::from([("gemini-2.5-flash".to_string(), flash)]),
                },
                KeyView {
                    egress: None,
                    id: "9b71e0c4a2f5".into(),
                    masked: "AIza…Qm8k".into(),
                    project: None,
                    state: KeyStateName::Parked,
                    disabled_reason: None,
                    last_used: None,
                    requests: 0,
                    tokens: 0,
                    models: BTreeMap::from([(
                        "we\"ird\\mo\ndel".to_string(),
                        ModelView {
                            parked_until: Some(t("2026-11-23T00:00:00-08:00")),
                            ..ModelView::default()
                        },
                    )]),
                },
            ],
        }
    }

    #[test]
    fn state_names_and_precedence() {
        let names: Vec<&str> = KeyStateName::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["usable", "cooling", "parked", "disabled"]);
        for s in KeyStateName::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
            assert_eq!(serde_json::from_value::<KeyStateName>(json!(s.as_str())).unwrap(), s);
        }
        // (disabled, parked, cooling) → state
        let cases = [
            ((false, false, false), KeyStateName::Usable),
            ((false, false, true), KeyStateName::Cooling),
            ((false, true, false), KeyStateName::Parked),
            ((false, true, true), KeyStateName::Parked),
            ((true, false, false), KeyStateName::Disabled),
            ((true, true, true), KeyStateName::Disabled),
        ];
        for ((d, p, c), state) in cases {
            assert_eq!(KeyStateName::of(d, p, c), state, "{d} {p} {c}");
        }
    }

    #[test]
    fn status_serializes_to_the_spec_shape_and_back() {
        let v = serde_json::to_value(example()).unwrap();
        assert_eq!(v["quota_day"], "2026-11-22");
        assert_eq!(v["next_reset"], "2026-11-23T00:00:00-08:00");
        assert_eq!(v["totals"], json!({"requests": 12, "tokens": 3400}));
        assert_eq!(
            v["keys"][0],
            json!({"id": "3f2a9c1b7e4d", "masked": "AIza…XyZ1", "project": "proj-a",
                   "state": "usable", "disabled_reason": null, "last_used": "2026-11-22T10:01:02-08:00",
                   "requests": 12, "tokens": 3400,
                   "models": {"gemini-2.5-flash": {"requests": 12, "tokens": 3400,
                                                   "parked_until": null, "cooling_until": null,
                                                   "limits": {"rpm": 10, "rpd": 250, "tpm": null},
                                                   "remaining_today": 238}}})
        );
        assert_eq!(v["keys"][1]["project"], json!(null));
        assert_eq!(v["keys"][1]["last_used"], json!(null));
        // Field order: alphabetical, as the JSON maps always gave it.
        let text = serde_json::to_string(&example()).unwrap();
        assert!(
            text.starts_with(r#"{"keys":[{"disabled_reason":null,"id":"3f2a9c1b7e4d","last_used":"#),
            "{text}"
        );
        assert!(text.ends_with(r#""quota_day":"2026-11-22","timezone":"America/Los_Angeles","totals":{"requests":12,"tokens":3400}}"#));
        let back: StatusView = serde_json::from_str(&text).unwrap();
        assert_eq!(back, example());
        assert!(serde_json::from_str::<StatusView>(&text.replace("usable", "asleep")).is_err());
        assert!(serde_json::from_str::<StatusView>(&text.replace("2026-11-22\"", "22.11.2026\"")).is_err());
    }

    #[test]
    fn times_are_whole_seconds_in_the_zone() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 18, 1, 2).unwrap() + Duration::milliseconds(999);
        let local = in_zone(at, LA);
        assert_eq!(local, t("2026-11-22T10:01:02-08:00"));
        assert_eq!(local.to_rfc3339(), "2026-11-22T10:01:02-08:00", "no fraction left");
        let summer = Utc.with_ymd_and_hms(2026, 7, 4, 7, 0, 0).unwrap();
        assert_eq!(in_zone(summer, LA).to_rfc3339(), "2026-07-04T00:00:00-07:00");
        assert_eq!(in_zone(summer, chrono_tz::UTC).to_rfc3339(), "2026-07-04T07:00:00+00:00");
    }

    #[test]
    fn metrics_text_lists_keys_models_and_states() {
        let stats = ServerStats::default();
        stats.busy_workers.store(2, Relaxed);
        let text = metrics_text(&example(), &KeyCounts::of(&example()), &Metrics::default(), &stats, 5, true);
        for line in [
            "gkm_keys_usable 2\n",
            "gkm_keys_total 2\n",
            "gkm_workers_busy 2\n",
            "gkm_log_lines_dropped_total 5\n",
            "gkm_key_requests_today{key=\"3f2a9c1b7e4d\",model=\"gemini-2.5-flash\"} 12\n",
            "gkm_key_tokens_today{key=\"3f2a9c1b7e4d\",model=\"gemini-2.5-flash\"} 3400\n",
            "gkm_key_requests_today{key=\"9b71e0c4a2f5\",model=\"we_ird_mo_del\"} 0\n",
            "gkm_key_state{key=\"3f2a9c1b7e4d\",state=\"usable\"} 1\n",
            "gkm_key_state{key=\"3f2a9c1b7e4d\",state=\"parked\"} 0\n",
            "gkm_key_state{key=\"9b71e0c4a2f5\",state=\"parked\"} 1\n",
            "gkm_key_limit{key=\"3f2a9c1b7e4d\",model=\"gemini-2.5-flash\",limit=\"rpm\"} 10\n",
            "gkm_key_limit{key=\"3f2a9c1b7e4d\",model=\"gemini-2.5-flash\",limit=\"rpd\"} 250\n",
            "gkm_key_remaining_today{key=\"3f2a9c1b7e4d\",model=\"gemini-2.5-flash\"} 238\n",
            "gkm_model_remaining_today{model=\"gemini-2.5-flash\"} 238\n",
            "gkm_model_limit_today{model=\"gemini-2.5-flash\",projects=\"1\"} 250\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        let requests = text.find("# HELP gkm_key_requests_today").unwrap();
        let tokens = text.find("# HELP gkm_key_tokens_today").unwrap();
        let states = text.find("# HELP gkm_key_state").unwrap();
        assert!(requests < tokens && tokens < states);
        let build = format!("gkm_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"));
        assert!(text.ends_with(&build));
    }

    /// Issue 19: without the per-key series no line names a key; the sums over the keys (per
    /// state, per model) and the per-model limits stay, with the same values either way.
    #[test]
    fn metrics_without_per_key_series_keep_the_sums() {
        let stats = ServerStats::default();
        let with = metrics_text(&example(), &KeyCounts::of(&example()), &Metrics::default(), &stats, 0, true);
        let without =
            metrics_text(&example(), &KeyCounts::of(&example()), &Metrics::default(), &stats, 0, false);
        assert!(!without.contains("key=\""), "{without}");
        assert!(!without.contains("gkm_key_"), "no per-key family, not even its HELP line");
        let aggregates = [
            "gkm_keys_total 2\n",
            "gkm_keys_by_state{state=\"usable\"} 1\n",
            "gkm_keys_by_state{state=\"parked\"} 1\n",
            "gkm_keys_by_state{state=\"cooling\"} 0\n",
            "gkm_keys_by_state{state=\"disabled\"} 0\n",
            "gkm_model_requests_today{model=\"gemini-2.5-flash\"} 12\n",
            "gkm_model_tokens_today{model=\"gemini-2.5-flash\"} 3400\n",
            "gkm_model_requests_today{model=\"we_ird_mo_del\"} 0\n",
            "gkm_model_remaining_today{model=\"gemini-2.5-flash\"} 238\n",
            "gkm_model_limit_today{model=\"gemini-2.5-flash\",projects=\"1\"} 250\n",
        ];
        for line in aggregates {
            assert!(without.contains(line), "{line:?} missing from\n{without}");
            assert!(with.contains(line), "{line:?} missing with the per-key series");
        }
        let per_key_lines = with.lines().filter(|l| l.contains("key=\"")).count();
        assert_eq!(with.lines().count() - without.lines().count(), per_key_lines + 2 * 5, "5 families less");
    }

    #[test]
    fn per_key_series_by_default_below_100_keys_only() {
        assert!(metrics_per_key(None, 0));
        assert!(metrics_per_key(None, 99));
        assert!(!metrics_per_key(None, 100));
        assert!(!metrics_per_key(None, 3000));
        assert!(metrics_per_key(Some(true), 3000));
        assert!(!metrics_per_key(Some(false), 3));
    }

    #[test]
    fn dashboard_pages_are_whole_numbers_from_one() {
        use crate::dashboard::View;
        let view = |target: &str| dashboard_view(&crate::router::Target::parse(target));
        assert_eq!(view("/dashboard").unwrap(), View::Overview);
        assert_eq!(view("/dashboard?key=t").unwrap(), View::Overview);
        assert_eq!(view("/dashboard?page=3").unwrap(), View::Page(3));
        assert_eq!(view("/dashboard?key=t&page=1").unwrap(), View::Page(1));
        for bad in ["0", "-1", "x", "", "1.5", "99999999999999999999999"] {
            assert!(view(&format!("/dashboard?page={bad}")).is_err(), "{bad}");
        }
    }
}
