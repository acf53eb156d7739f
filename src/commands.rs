//! The subcommands other than `serve`: `healthcheck` (and, later, `usage` and `check-keys`).
//!
//! They print to stdout and return the process exit status; they never start the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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
    let path = &cfg.usage_file;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("gemini-key-manager: cannot read usage file {}: {e}", path.display());
            return 1;
        }
    };
    let file = match crate::store_format::parse_usage(&bytes, tz) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gemini-key-manager: usage file {}: {e}", path.display());
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

/// The facts `usage` prints, as JSON (also its `--json` output).
pub fn usage_report(
    file: &crate::store_format::UsageFile,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    use serde_json::json;
    let today = crate::calendar::quota_day_at(tz, now);
    let current = file.quota_day == today;
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.filter(|t| *t > now)
            .map(|t| json!(t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, false)))
            .unwrap_or(serde_json::Value::Null)
    };
    let (mut total_req, mut total_tok) = (0u64, 0u64);
    let keys: Vec<serde_json::Value> = file
        .keys
        .iter()
        .map(|(id, k)| {
            let mut models = serde_json::Map::new();
            let (mut req, mut tok) = (0u64, 0u64);
            let (mut parked, mut cooling) = (false, false);
            for (name, m) in &k.models {
                let (r, t) = if current { (m.requests, m.tokens) } else { (0, 0) };
                req += r;
                tok += t;
                let parked_until = if current { time(m.parked_until) } else { serde_json::Value::Null };
                let cooling_until = time(m.cooling_until);
                parked |= !parked_until.is_null();
                cooling |= !cooling_until.is_null();
                if r > 0 || !parked_until.is_null() || !cooling_until.is_null() {
                    models.insert(
                        name.clone(),
                        json!({"requests": r, "tokens": t, "parked_until": parked_until, "cooling_until": cooling_until}),
                    );
                }
            }
            total_req += req;
            total_tok += tok;
            let state = crate::pool::state_name(k.disabled.is_some(), parked, cooling);
            json!({"id": id, "masked": k.masked, "project": k.project, "state": state,
                   "disabled_reason": k.disabled, "requests": req, "tokens": tok, "models": models})
        })
        .collect();
    json!({
        "quota_day": today.to_string(),
        "timezone": tz.name(),
        "next_reset": crate::calendar::next_reset_at(tz, now).to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        "file_quota_day": file.quota_day.to_string(),
        "keys": keys,
        "totals": {"requests": total_req, "tokens": total_tok},
    })
}

/// The human-readable table of a `usage_report`.
pub fn usage_table(r: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "quota day {} ({}), next reset {}\n",
        s(&r["quota_day"]),
        s(&r["timezone"]),
        s(&r["next_reset"])
    );
    if r["file_quota_day"] != r["quota_day"] {
        out.push_str(&format!(
            "no requests yet today (the file's last day is {})\n",
            s(&r["file_quota_day"])
        ));
    }
    out.push_str(&format!(
        "{:<13} {:<14} {:<14} {:<9} {:<24} {:>9} {:>12}\n",
        "KEY", "MASKED", "PROJECT", "STATE", "MODEL", "REQUESTS", "TOKENS"
    ));
    for k in r["keys"].as_array().into_iter().flatten() {
        let head = format!(
            "{:<13} {:<14} {:<14} {:<9}",
            s(&k["id"]),
            s(&k["masked"]),
            k["project"].as_str().unwrap_or("-"),
            s(&k["state"])
        );
        let models = k["models"].as_object().filter(|m| !m.is_empty());
        match models {
            None => out.push_str(&format!("{head} {:<24} {:>9} {:>12}\n", "-", 0, 0)),
            Some(models) => {
                for (name, m) in models {
                    let mut note = String::new();
                    if let Some(t) = m["parked_until"].as_str() {
                        note = format!("  parked until {t}");
                    } else if let Some(t) = m["cooling_until"].as_str() {
                        note = format!("  cooling until {t}");
                    }
                    out.push_str(&format!(
                        "{head} {:<24} {:>9} {:>12}{note}\n",
                        name,
                        crate::dashboard::thousands(m["requests"].as_u64().unwrap_or(0)),
                        crate::dashboard::thousands(m["tokens"].as_u64().unwrap_or(0))
                    ));
                }
            }
        }
        if let Some(reason) = k["disabled_reason"].as_str() {
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
        crate::dashboard::thousands(r["totals"]["requests"].as_u64().unwrap_or(0)),
        crate::dashboard::thousands(r["totals"]["tokens"].as_u64().unwrap_or(0))
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
