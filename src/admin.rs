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
use crate::status::{KeyStateName, StatusView};

/// The pool's `/status` view at `now`, the quota day rolled over first (so that an idle pool's
/// counts are today's). The lock is held only while the view is built.
pub fn status_view(app: &App, now: DateTime<Utc>) -> StatusView {
    let mut pool = app.pool.lock();
    pool.rollover(now);
    pool.status(now)
}

/// `/metrics` in the Prometheus text exposition format: the request, attempt and latency
/// families of `metrics`, the pool and worker gauges, then per key and model today's requests
/// and tokens, each key's state, and the build.
pub fn metrics_text(
    status: &StatusView,
    metrics: &Metrics,
    stats: &ServerStats,
    dropped_log_lines: u64,
) -> String {
    let mut out = String::with_capacity(8192);
    metrics.render(&mut out);
    let keys = &status.keys;
    let usable = keys.iter().filter(|k| k.state != KeyStateName::Disabled).count();
    let gauges: [(&str, &str, &str, u64); 7] = [
        ("gkm_keys_usable", "gauge", "Keys not disabled.", usable as u64),
        ("gkm_keys_total", "gauge", "Keys in the pool.", keys.len() as u64),
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
    out.push_str("# HELP gkm_key_requests_today Requests counted today per key and model.\n# TYPE gkm_key_requests_today gauge\n");
    let mut tokens = String::new();
    for k in keys {
        for (model, m) in &k.models {
            let model = model.replace(['"', '\\', '\n'], "_");
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
            let model = model.replace(['"', '\\', '\n'], "_");
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
    out.push_str("# HELP gkm_model_remaining_today Requests left today per model, summed over the projects that know its daily limit.\n# TYPE gkm_model_remaining_today gauge\n");
    for (model, v) in &status.models {
        let model = model.replace(['"', '\\', '\n'], "_");
        let _ = writeln!(out, "gkm_model_remaining_today{{model=\"{model}\"}} {}", v.remaining_today);
    }
    out.push_str("# HELP gkm_model_limit_today Daily limits per model, summed over the projects that know them.\n# TYPE gkm_model_limit_today gauge\n");
    for (model, v) in &status.models {
        let model = model.replace(['"', '\\', '\n'], "_");
        let _ =
            writeln!(out, "gkm_model_limit_today{{model=\"{model}\",projects=\"{}\"}} {}", v.projects, v.rpd);
    }
    let _ = write!(
        out,
        "# HELP gkm_build_info Build information.\n# TYPE gkm_build_info gauge\ngkm_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    out
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
    let mut status = status_view(app, Utc::now());
    let total = status.keys.len();
    let mut extra: Vec<(&str, serde_json::Value)> = Vec::new();
    match form {
        StatusForm::All => {}
        StatusForm::Page { page, limit } => {
            let start = page.saturating_sub(1).saturating_mul(limit).min(total);
            let end = start.saturating_add(limit).min(total);
            status.keys = status.keys.drain(start..end).collect();
            extra.push(("page", page.into()));
            extra.push(("limit", limit.into()));
            extra.push(("pages", total.div_ceil(limit).into()));
            extra.push(("keys_total", total.into()));
        }
        StatusForm::Summary => {
            let mut states = serde_json::Map::new();
            for state in KeyStateName::ALL {
                let n = status.keys.iter().filter(|k| k.state == state).count();
                states.insert(state.as_str().into(), n.into());
            }
            status.keys.clear();
            extra.push(("keys_total", total.into()));
            extra.push(("key_states", states.into()));
        }
    }
    let live = app.live.view(app.config.max_live_sessions, |t| app.format_time(t));
    let fail =
        |e: serde_json::Error| ProxyError::Internal { message: format!("cannot serialize the status: {e}") };
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
    crate::egress::add_to_status(&mut doc, app.upstream.egress());
    let body = serde_json::to_vec(&doc).map_err(fail)?;
    Ok(Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json; charset=UTF-8".into())],
        body,
    })
}

/// The answer to `GET /metrics`.
pub fn metrics_reply(app: &App) -> Reply {
    let status = status_view(app, Utc::now());
    let mut text = metrics_text(&status, &app.metrics, &app.server_stats, crate::logging::dropped_lines());
    app.responses.render_metrics(&mut text, std::time::Instant::now());
    app.live.render(&mut text);
    app.clients.render_metrics(&mut text, Utc::now());
    Reply {
        status: 200,
        headers: vec![("Content-Type".into(), "text/plain; version=0.0.4; charset=utf-8".into())],
        body: text.into_bytes(),
    }
}

/// The answer to `GET /dashboard`: the page of [`crate::dashboard::render`], never cached, and a
/// Content-Security-Policy that lets it load nothing.
pub fn dashboard_reply(app: &App) -> Reply {
    let now = Utc::now();
    let (status, history) = {
        let mut pool = app.pool.lock();
        pool.rollover(now);
        (pool.status(now), pool.history().clone())
    };
    let html = crate::dashboard::render(&status, &history, now);
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
        let text = metrics_text(&example(), &Metrics::default(), &stats, 5);
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
}
