//! The subcommands other than `serve`: `healthcheck`, `usage` and `check-keys`.
//!
//! They print to stdout and return the process exit status; they never start the server.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::status::{self, KeyStateName, ModelView, Totals, UsageKeyView, UsageReport};

/// `GET http://127.0.0.1:PORT/healthz`: 0 on 200, 1 otherwise (for Docker's HEALTHCHECK in a
/// scratch image, where there is no curl).
pub fn healthcheck(port: u16) -> i32 {
    match probe_healthz(port) {
        Ok(200) => {
            println!("ok");
            0
        }
        Ok(status) => {
            println!("unhealthy: /healthz answered {status}");
            1
        }
        Err(e) => {
            println!("unhealthy: {e}");
            1
        }
    }
}

fn probe_healthz(port: u16) -> Result<u16, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut head = Vec::new();
    s.take(4096).read_to_end(&mut head).map_err(|e| format!("receive: {e}"))?;
    let text = String::from_utf8_lossy(&head);
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok());
    status.ok_or_else(|| "not an HTTP answer".to_string())
}

/// `usage [--json]`: today's usage per key and model from the usage file. Read-only: a corrupt
/// file is reported, never moved. Exit 0, or 1 when the file cannot be read.
pub fn usage(cfg: &crate::config::Config, json: bool) -> i32 {
    let now = chrono::Utc::now();
    let tz = cfg.reset_timezone;
    let file = match crate::store::read(&cfg.usage_file, tz) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gemini-key-manager: {e}");
            return 1;
        }
    };
    let report = usage_report(&file, tz, now);
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", usage_table(&report));
    }
    0
}

/// The facts `usage` prints (its `--json` output is this, serialized): today's counts per key
/// and model (zero when the file is from another day), and the limits still running at `now`.
pub fn usage_report(
    file: &crate::store_format::UsageFile,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> UsageReport {
    let today = crate::calendar::quota_day_at(tz, now);
    let current = file.quota_day == today;
    let time =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.filter(|t| *t > now).map(|t| status::in_zone(t, tz));
    let mut totals = Totals::default();
    let keys: Vec<UsageKeyView> = file
        .keys
        .iter()
        .map(|(id, k)| {
            let mut models = BTreeMap::new();
            let (mut req, mut tok) = (0u64, 0u64);
            let (mut parked, mut cooling) = (false, false);
            let project = match &k.project {
                Some(label) => crate::keyfile::ProjectId::Label(label.clone()),
                None => crate::keyfile::ProjectId::Solo(id.clone()),
            };
            for (name, m) in &k.models {
                // What the file learned for the key's project (the usage command has no --limits).
                let learned =
                    file.limits.iter().find(|l| l.project == project && l.model == *name).map(|l| {
                        let sent = if current { l.sent_today } else { 0 };
                        (
                            status::LimitsView { rpd: l.rpd, rpm: l.rpm, tpm: l.tpm },
                            l.rpd.map(|rpd| rpd.saturating_sub(sent)),
                        )
                    });
                let (r, t) = if current { (m.requests, m.tokens) } else { (0, 0) };
                req += r;
                tok += t;
                let parked_until = if current { time(m.parked_until) } else { None };
                let cooling_until = time(m.cooling_until);
                parked |= parked_until.is_some();
                cooling |= cooling_until.is_some();
                if r > 0 || parked_until.is_some() || cooling_until.is_some() {
                    models.insert(
                        name.clone(),
                        ModelView {
                            requests: r,
                            tokens: t,
                            parked_until,
                            cooling_until,
                            limits: learned.map(|l| l.0).unwrap_or_default(),
                            remaining_today: learned.and_then(|l| l.1),
                        },
                    );
                }
            }
            totals.requests += req;
            totals.tokens += tok;
            UsageKeyView {
                id: id.clone(),
                masked: k.masked.clone(),
                project: k.project.clone(),
                state: KeyStateName::of(k.disabled.is_some(), parked, cooling),
                disabled_reason: k.disabled.clone(),
                requests: req,
                tokens: tok,
                models,
            }
        })
        .collect();
    UsageReport {
        quota_day: today,
        timezone: tz.name().to_string(),
        next_reset: crate::calendar::next_reset_at(tz, now).fixed_offset(),
        file_quota_day: file.quota_day,
        keys,
        totals,
    }
}

/// The human-readable table of a `usage_report`.
pub fn usage_table(r: &UsageReport) -> String {
    let time =
        |t: &chrono::DateTime<chrono::FixedOffset>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let day = |d: &chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    let mut out =
        format!("quota day {} ({}), next reset {}\n", day(&r.quota_day), r.timezone, time(&r.next_reset));
    if r.file_quota_day != r.quota_day {
        out.push_str(&format!("no requests yet today (the file's last day is {})\n", day(&r.file_quota_day)));
    }
    out.push_str(&format!(
        "{:<13} {:<14} {:<14} {:<9} {:<24} {:>9} {:>12}\n",
        "KEY", "MASKED", "PROJECT", "STATE", "MODEL", "REQUESTS", "TOKENS"
    ));
    for k in &r.keys {
        let head = format!(
            "{:<13} {:<14} {:<14} {:<9}",
            k.id,
            k.masked,
            k.project.as_deref().unwrap_or("-"),
            k.state.as_str()
        );
        if k.models.is_empty() {
            out.push_str(&format!("{head} {:<24} {:>9} {:>12}\n", "-", 0, 0));
        }
        for (name, m) in &k.models {
            let note = match (&m.parked_until, &m.cooling_until) {
                (Some(t), _) => format!("  parked until {}", time(t)),
                (None, Some(t)) => format!("  cooling until {}", time(t)),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "{head} {:<24} {:>9} {:>12}{note}\n",
                name,
                crate::dashboard::thousands(m.requests),
                crate::dashboard::thousands(m.tokens)
            ));
        }
        if let Some(reason) = &k.disabled_reason {
            out.push_str(&format!("{:<13} disabled: {reason}\n", ""));
        }
    }
    out.push_str(&format!(
        "{:<13} {:<14} {:<14} {:<9} {:<24} {:>9} {:>12}\n",
        "TOTAL",
        "",
        "",
        "",
        "",
        crate::dashboard::thousands(r.totals.requests),
        crate::dashboard::thousands(r.totals.tokens)
    ));
    out
}

/// `check-keys`: probe every key of the key file with models.list and print valid / invalid /
/// quota-exhausted / unreachable per key. Exit 1 if any key is invalid, 2 if the key file is bad.
pub fn check_keys(cfg: &crate::config::Config) -> i32 {
    let parsed = match crate::keyfile::load(&cfg.key_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("gemini-key-manager: {e}");
            return 2;
        }
    };
    if let Err(e) = crate::egress::check(cfg) {
        eprintln!("gemini-key-manager: {e}");
        return 2;
    }
    let (save, _rx) = crate::store::SaveSignal::new();
    let app = crate::App::new(cfg.clone(), parsed.keys.clone(), save);
    let mut invalid = 0;
    println!("{:<13} {:<14} {:<14} RESULT", "KEY", "MASKED", "PROJECT");
    for spec in &parsed.keys {
        let verdict = match crate::background::probe_key(&app, &spec.key) {
            Ok((_, crate::quota::Outcome::Success)) => "valid".to_string(),
            Ok((_, crate::quota::Outcome::KeyInvalid { reason })) => {
                invalid += 1;
                format!("invalid ({reason})")
            }
            Ok((_, crate::quota::Outcome::QuotaPerDay)) => "quota-exhausted (per day)".to_string(),
            Ok((_, crate::quota::Outcome::QuotaPerMinute { .. } | crate::quota::Outcome::RateLimited)) => {
                "quota-exhausted (rate limited)".to_string()
            }
            Ok((status, _)) => format!("unknown (HTTP {status})"),
            Err(e) => format!("unreachable ({})", crate::logging::redact(&e)),
        };
        println!(
            "{:<13} {:<14} {:<14} {verdict}",
            crate::keyfile::fingerprint(&spec.key),
            crate::keyfile::mask(&spec.key),
            spec.project.as_deref().unwrap_or("-")
        );
    }
    if invalid > 0 { 1 } else { 0 }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store_format::{KeyRecord, ModelRecord, UsageFile};
    use chrono::{DateTime, NaiveDate, TimeZone, Utc};

    const LA: chrono_tz::Tz = chrono_tz::America::Los_Angeles;

    /// 2026-11-22 10:00 in Los Angeles.
    fn now() -> DateTime<Utc> {
        LA.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).single().unwrap().with_timezone(&Utc)
    }

    fn file(day: NaiveDate) -> UsageFile {
        let mut file = UsageFile::new(day, "America/Los_Angeles");
        let flash = ModelRecord { requests: 1234, tokens: 56_789, ..ModelRecord::default() };
        let parked = ModelRecord {
            parked_until: Some(now() + chrono::Duration::hours(14)),
            cooling_until: Some(now() - chrono::Duration::seconds(1)),
            ..ModelRecord::default()
        };
        let key = KeyRecord {
            masked: "AIza…XyZ1".into(),
            project: Some("proj-a".into()),
            models: BTreeMap::from([
                ("gemini-2.5-flash".to_string(), flash),
                ("gemini-2.5-pro".to_string(), parked),
                ("old".to_string(), ModelRecord::default()),
            ]),
            ..KeyRecord::default()
        };
        let off = KeyRecord {
            masked: "…78".into(),
            disabled: Some("API_KEY_INVALID".into()),
            ..KeyRecord::default()
        };
        file.keys = BTreeMap::from([("3f2a9c1b7e4d".to_string(), key), ("9b71e0c4a2f5".to_string(), off)]);
        file
    }

    #[test]
    fn report_of_todays_file() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let r = usage_report(&file(today), LA, now());
        assert_eq!((r.quota_day, r.file_quota_day), (today, today));
        assert_eq!(r.totals, Totals { requests: 1234, tokens: 56_789 });
        let k = &r.keys[0];
        assert_eq!(k.state, KeyStateName::Parked);
        assert_eq!(
            k.models.keys().collect::<Vec<_>>(),
            ["gemini-2.5-flash", "gemini-2.5-pro"],
            "idle models left out"
        );
        assert_eq!(k.models["gemini-2.5-pro"].cooling_until, None, "an expired cooldown is not shown");
        assert_eq!(r.keys[1].state, KeyStateName::Disabled);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["next_reset"], "2026-11-23T00:00:00-08:00");
        assert_eq!(v["keys"][0]["models"]["gemini-2.5-pro"]["parked_until"], "2026-11-23T00:00:00-08:00");
        assert_eq!(v["keys"][1]["project"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<UsageReport>(v).unwrap(), r);
        let table = usage_table(&r);
        assert!(table.starts_with(
            "quota day 2026-11-22 (America/Los_Angeles), next reset 2026-11-23T00:00:00-08:00\n"
        ));
        assert!(!table.contains("no requests yet today"));
        assert!(table.contains("gemini-2.5-flash             1,234       56,789\n"), "{table}");
        assert!(table.contains("  parked until 2026-11-23T00:00:00-08:00\n"), "{table}");
        assert!(table.contains("9b71e0c4a2f5  …78            -              disabled  -                                0            0\n"), "{table}");
        assert!(table.contains("              disabled: API_KEY_INVALID\n"), "{table}");
        assert!(table.ends_with("    1,234       56,789\n"), "{table}");
    }

    #[test]
    fn report_of_a_past_days_file_counts_nothing_and_drops_its_parks() {
        let yesterday = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        let r = usage_report(&file(yesterday), LA, now());
        assert_eq!(r.file_quota_day, yesterday);
        assert_eq!(r.totals, Totals::default());
        assert_eq!(r.keys[0].state, KeyStateName::Usable);
        assert!(r.keys[0].models.is_empty());
        let table = usage_table(&r);
        assert!(table.contains("no requests yet today (the file's last day is 2026-11-21)\n"), "{table}");
    }
}
