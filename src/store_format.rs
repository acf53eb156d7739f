//! Store format: the usage file's JSON shape (SPEC §6) as serde types, and the parsing of both our
//! own format and the seed Python proxy's format into it.
//!
//! It must never do I/O or read the clock (the persistence thread owns the file; `now` is not
//! needed here), and a raw API key must never survive into a value it returns: the seed format is
//! keyed by raw keys, and conversion replaces each by its fingerprint and mask. Error messages name
//! what is wrong without echoing the file's content.
//!
//! # Seed conversion rules
//!
//! * `date` (the seed's server-local day) becomes `quota_day`.
//! * `counts: {KEY: N}` become N requests (0 tokens) under model [`NO_MODEL`];
//!   `model_counts: {KEY: {MODEL: N}}` become N requests under MODEL. A key present in both is
//!   taken from `model_counts` only (the flat count would be its total: no double counting).
//! * `exhausted_keys: [KEY]` (flat) parks the key for **every model** ([`ALL_MODELS`]):
//!   the seed stopped using an exhausted key for the rest of the day whatever the model, so that is
//!   what the operator expects after the upgrade. `exhausted_keys: {KEY: [MODEL]}` parks per model.
//!   Parks end at the first reset after the seed's date (midnight starting `date + 1` in the reset
//!   zone); if that day is already over, the pool's restore treats the file as a past day anyway.

use crate::{calendar, keyfile};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The only version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Model name of a limit that applies to every model (model-less 429s, the seed's flat parks).
pub const ALL_MODELS: &str = "*";
/// Model name under which requests without a model are counted.
pub const NO_MODEL: &str = "unknown";

/// The whole usage file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageFile {
    /// Always [`FORMAT_VERSION`].
    pub version: u32,
    /// The quota day the `keys` counts belong to (calendar date in `timezone`).
    pub quota_day: NaiveDate,
    /// IANA name of the reset zone the file was written with.
    pub timezone: String,
    /// When the snapshot was taken (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_at: Option<DateTime<Utc>>,
    /// Per key fingerprint: today's usage and the key's parks, cooldowns and disabled state.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyRecord>,
    /// Daily totals per key fingerprint for past quota days (the pool keeps 30).
    #[serde(default)]
    pub history: crate::history::History,
    /// Server-side resources made or seen through the proxy → the project and key that made
    /// them (SPEC §5). Version 1 called it `affinity`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", alias = "affinity")]
    pub resources: BTreeMap<String, ResourceRecord>,
    /// Per project and model: the limits learned from Google's 429s and the requests sent on
    /// the quota day (SPEC §14).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitRecord>,
    /// Named clients (SPEC §13): today's requests and tokens per client name and model. Files
    /// written before named clients have none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub clients: BTreeMap<String, BTreeMap<String, DayTotals>>,
    /// Daily totals per client name for past quota days (30 are kept).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_history: BTreeMap<NaiveDate, BTreeMap<String, DayTotals>>,
    /// In journal mode (large pools, SPEC §6): the id of this base, which the lines of the
    /// journal beside it (`<file>.journal`) name; lines naming another base are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// True when this value was converted from the seed format (never serialized): the caller
    /// logs it, and the next save writes our format in its place.
    #[serde(skip)]
    pub converted_from_seed: bool,
}

/// Where a server-side resource lives: the project and key that made it, until when that
/// matters (SPEC §5). Files of version 1 had only `fingerprint` and `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRecord {
    pub fingerprint: String,
    pub expires_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<crate::keyfile::ProjectId>,
    /// The model it was made with (an interaction's), to book later reads under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its usage is booked (an interaction's tokens count once, however often it is read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub booked: bool,
}

/// One project and model's learned limits (`null` where unknown) and its requests sent on the
/// file's quota day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitRecord {
    pub project: crate::keyfile::ProjectId,
    pub model: String,
    #[serde(default)]
    pub rpm: Option<u64>,
    #[serde(default)]
    pub rpd: Option<u64>,
    #[serde(default)]
    pub tpm: Option<u64>,
    #[serde(default)]
    pub sent_today: u64,
}

/// One key, by fingerprint. No raw key anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRecord {
    /// `AIza…XyZ1`.
    #[serde(default)]
    pub masked: String,
    /// The project label from the key file, if any.
    #[serde(default)]
    pub project: Option<String>,
    /// Why the key is disabled (a fixed reason code), or `null`.
    #[serde(default)]
    pub disabled: Option<String>,
    #[serde(default)]
    pub disabled_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_used: Option<DateTime<Utc>>,
    /// Per model: today's usage and the limits of the key's project for that model.
    #[serde(default)]
    pub models: BTreeMap<String, ModelRecord>,
}

/// One key and model on the file's quota day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ModelRecord {
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub parked_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub cooling_until: Option<DateTime<Utc>>,
    /// How many detail-less 429s in a row that day (drives the doubling backoff).
    #[serde(default)]
    pub cooldown_streak: u32,
}

/// A key's totals for one past day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DayTotals {
    #[serde(default)]
    pub requests: u64,
    #[serde(default)]
    pub tokens: u64,
}

impl DayTotals {
    pub fn add(&mut self, other: DayTotals) {
        self.requests = self.requests.saturating_add(other.requests);
        self.tokens = self.tokens.saturating_add(other.tokens);
    }

    pub fn is_zero(&self) -> bool {
        self.requests == 0 && self.tokens == 0
    }
}

impl UsageFile {
    /// An empty file for `quota_day` in `timezone`.
    pub fn new(quota_day: NaiveDate, timezone: &str) -> UsageFile {
        UsageFile {
            version: FORMAT_VERSION,
            quota_day,
            timezone: timezone.to_string(),
            saved_at: None,
            keys: BTreeMap::new(),
            history: crate::history::History::default(),
            resources: BTreeMap::new(),
            limits: Vec::new(),
            clients: BTreeMap::new(),
            client_history: BTreeMap::new(),
            journal: None,
            converted_from_seed: false,
        }
    }

    /// Take over one journal line: the records it holds replace those of the same key, project
    /// and model, resource or client table.
    pub fn apply(&mut self, entry: JournalEntry) {
        self.saved_at = Some(entry.saved_at);
        self.keys.extend(entry.keys);
        for record in entry.limits {
            match self.limits.iter_mut().find(|r| r.project == record.project && r.model == record.model) {
                Some(r) => *r = record,
                None => self.limits.push(record),
            }
        }
        for (name, record) in entry.resources {
            match record {
                Some(r) => self.resources.insert(name, r),
                None => self.resources.remove(&name),
            };
        }
        if let Some(clients) = entry.clients {
            self.clients = clients;
        }
        if let Some(history) = entry.client_history {
            self.client_history = history;
        }
    }
}

/// One line of the journal (SPEC §6, large pools): what changed since the line before, on the
/// base's quota day (a new day is written as a whole new base).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The [`UsageFile::journal`] id of the base this line continues.
    pub base: String,
    pub quota_day: NaiveDate,
    pub saved_at: DateTime<Utc>,
    /// Whole records of the keys that changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, KeyRecord>,
    /// Whole books of the projects of those keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitRecord>,
    /// Resources written (`null`: forgotten).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, Option<ResourceRecord>>,
    /// The named clients' books, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<BTreeMap<String, BTreeMap<String, DayTotals>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_history: Option<BTreeMap<NaiveDate, BTreeMap<String, DayTotals>>>,
}

impl JournalEntry {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.limits.is_empty()
            && self.resources.is_empty()
            && self.clients.is_none()
            && self.client_history.is_none()
    }
}

/// Parse a usage file: our format (it has `"version"`) or the seed format (it has `"date"`).
/// `tz` is the reset zone, needed to end the seed's parks at the right instant.
/// Malformed input is an `Err` with a one-line message; this never panics (serde_json bounds the
/// nesting depth, so deep input cannot recurse without limit).
pub fn parse_usage(bytes: &[u8], tz: Tz) -> Result<UsageFile, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "usage file is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("usage file is empty".to_string());
    }
    let not_json = |e: serde_json::Error| {
        format!("usage file is not valid JSON (line {}, column {})", e.line(), e.column())
    };
    if !text.trim_start().starts_with('{') {
        serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(not_json)?;
        return Err("usage file does not hold a JSON object".to_string());
    }
    // A first pass that keeps only the two fields telling the formats apart: our own files are
    // then read straight into their types, never as a tree of `Value`s (for thousands of keys
    // and 30 days of history that tree is tens of megabytes, and the heap would keep them).
    let probe: Probe = serde_json::from_str(text).map_err(not_json)?;
    if let Some(version) = probe.version {
        parse_own(text, &version)
    } else if probe.date.is_some() {
        let value: Value = serde_json::from_str(text).map_err(not_json)?;
        let Some(obj) = value.as_object() else {
            return Err("usage file does not hold a JSON object".to_string());
        };
        parse_seed(obj, tz)
    } else {
        Err("usage file is in no known format: no \"version\" (this proxy) and no \"date\" (seed proxy)"
            .to_string())
    }
}

/// The fields of a usage file that tell our format from the seed's; the rest is skipped.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    version: Option<Value>,
    #[serde(default)]
    date: Option<serde::de::IgnoredAny>,
}

fn parse_own(text: &str, version: &Value) -> Result<UsageFile, String> {
    let version = version.as_u64();
    if version != Some(u64::from(FORMAT_VERSION)) {
        return Err(match version {
            Some(v) => {
                format!("usage file has format version {v}; this build reads version {FORMAT_VERSION}")
            }
            None => "usage file's \"version\" is not a number".to_string(),
        });
    }
    let file: UsageFile = serde_json::from_str(text).map_err(|e| {
        // serde's message may quote a value from the file; keep only its classification.
        let what = match e.classify() {
            serde_json::error::Category::Data => "a field has the wrong type or value",
            _ => "it is malformed",
        };
        format!("usage file does not match format version {FORMAT_VERSION}: {what}")
    })?;
    let is_fingerprint =
        |fp: &str| (8..=64).contains(&fp.len()) && fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !file.keys.keys().map(String::as_str).chain(file.history.fingerprints()).all(is_fingerprint) {
        return Err("usage file names a key by something other than a lowercase hex fingerprint".to_string());
    }
    Ok(file)
}

fn parse_seed(obj: &Map<String, Value>, tz: Tz) -> Result<UsageFile, String> {
    let date = obj
        .get("date")
        .and_then(Value::as_str)
        .and_then(|s| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok())
        .ok_or_else(|| "seed usage file: \"date\" is not a YYYY-MM-DD date".to_string())?;
    let mut file = UsageFile::new(date, tz.name());
    file.converted_from_seed = true;

    if let Some(model_counts) = field_object(obj, "model_counts")? {
        for (raw, per_model) in model_counts {
            let Some(per_model) = per_model.as_object() else {
                return Err(format!(
                    "seed usage file: \"model_counts\" of key {} is not an object",
                    keyfile::mask(raw)
                ));
            };
            for (model, n) in per_model {
                let n = count(n, "model_counts", raw)?;
                add_requests(&mut file, raw, model, n);
            }
        }
    }
    if let Some(counts) = field_object(obj, "counts")? {
        for (raw, n) in counts {
            let n = count(n, "counts", raw)?;
            let covered = obj.get("model_counts").and_then(|m| m.get(raw.as_str())).is_some();
            if !covered {
                add_requests(&mut file, raw, NO_MODEL, n);
            }
        }
    }

    let park_until = calendar::start_of_day(tz, date.succ_opt().unwrap_or(date)).with_timezone(&Utc);
    match obj.get("exhausted_keys") {
        None | Some(Value::Null) => {}
        Some(Value::Array(keys)) => {
            for raw in keys {
                let raw = raw.as_str().ok_or_else(|| {
                    "seed usage file: \"exhausted_keys\" holds something other than a key string".to_string()
                })?;
                park(&mut file, raw, ALL_MODELS, park_until);
            }
        }
        Some(Value::Object(per_key)) => {
            for (raw, models) in per_key {
                let models = models.as_array().ok_or_else(|| {
                    format!(
                        "seed usage file: \"exhausted_keys\" of key {} is not a list of models",
                        keyfile::mask(raw)
                    )
                })?;
                for model in models {
                    let model = model.as_str().ok_or_else(|| {
                        format!(
                            "seed usage file: \"exhausted_keys\" of key {} holds a non-string model",
                            keyfile::mask(raw)
                        )
                    })?;
                    park(&mut file, raw, model, park_until);
                }
            }
        }
        Some(_) => {
            return Err("seed usage file: \"exhausted_keys\" is neither a list nor an object".to_string());
        }
    }
    Ok(file)
}

fn field_object<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, String> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("seed usage file: \"{name}\" is not an object")),
    }
}

fn count(n: &Value, field: &str, raw: &str) -> Result<u64, String> {
    n.as_u64()
        .or_else(|| {
            // Python may write 3.0; accept whole non-negative floats.
            n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1e18).map(|f| f as u64)
        })
        .ok_or_else(|| {
            format!(
                "seed usage file: \"{field}\" of key {} is not a non-negative whole number",
                keyfile::mask(raw)
            )
        })
}

/// The record of a raw key, created on first use. Blank keys are skipped (`None`).
fn record_for<'a>(file: &'a mut UsageFile, raw: &str) -> Option<&'a mut KeyRecord> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let record = file
        .keys
        .entry(keyfile::fingerprint(raw))
        .or_insert_with(|| KeyRecord { masked: keyfile::mask(raw), ..KeyRecord::default() });
    Some(record)
}

fn add_requests(file: &mut UsageFile, raw: &str, model: &str, n: u64) {
    if let Some(record) = record_for(file, raw) {
        let m = record.models.entry(model.to_string()).or_default();
        m.requests = m.requests.saturating_add(n);
    }
}

fn park(file: &mut UsageFile, raw: &str, model: &str, until: DateTime<Utc>) {
    if let Some(record) = record_for(file, raw) {
        record.models.entry(model.to_string()).or_default().parked_until = Some(until);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::keyfile::{fingerprint, mask};
    use chrono::TimeZone;

    const LA: Tz = chrono_tz::America::Los_Angeles;
    const RAW1: &str = "AIzaSyRAWKEYONE00000000000000000000001";
    const RAW2: &str = "AIzaSyRAWKEYTWO00000000000000000000002";

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn parse(text: &str) -> Result<UsageFile, String> {
        parse_usage(text.as_bytes(), LA)
    }

    #[test]
    fn seed_flat_format_converts() {
        let text = format!(
            r#"{{"date":"2026-11-22","counts":{{"{RAW1}":12,"{RAW2}":3}},"exhausted_keys":["{RAW1}"]}}"#
        );
        let file = parse(&text).unwrap();
        assert!(file.converted_from_seed);
        assert_eq!(file.version, FORMAT_VERSION);
        assert_eq!(file.quota_day, day("2026-11-22"));
        assert_eq!(file.timezone, "America/Los_Angeles");
        let one = &file.keys[&fingerprint(RAW1)];
        assert_eq!(one.masked, mask(RAW1));
        assert_eq!(one.models[NO_MODEL].requests, 12);
        // Midnight starting 2026-11-23 in Los Angeles (PST) is 08:00 UTC.
        assert_eq!(one.models[ALL_MODELS].parked_until, Some(utc(2026, 11, 23, 8, 0)));
        let two = &file.keys[&fingerprint(RAW2)];
        assert_eq!(two.models[NO_MODEL].requests, 3);
        assert_eq!(two.models.get(ALL_MODELS), None);
    }

    #[test]
    fn seed_per_model_format_converts() {
        let text = format!(
            r#"{{"date":"2026-07-04","model_counts":{{"{RAW1}":{{"gemini-2.5-flash":3,"gemini-2.5-pro":1}}}},
               "counts":{{"{RAW1}":4,"{RAW2}":2}},
               "exhausted_keys":{{"{RAW1}":["gemini-2.5-pro"]}}}}"#
        );
        let file = parse(&text).unwrap();
        let one = &file.keys[&fingerprint(RAW1)];
        assert_eq!(one.models["gemini-2.5-flash"].requests, 3);
        assert_eq!(one.models["gemini-2.5-pro"].requests, 1);
        assert_eq!(one.models.get(NO_MODEL), None, "flat count not double counted");
        // July: PDT, midnight is 07:00 UTC.
        assert_eq!(one.models["gemini-2.5-pro"].parked_until, Some(utc(2026, 7, 5, 7, 0)));
        assert_eq!(one.models["gemini-2.5-flash"].parked_until, None);
        assert_eq!(file.keys[&fingerprint(RAW2)].models[NO_MODEL].requests, 2);
    }

    #[test]
    fn converted_seed_never_serializes_a_raw_key() {
        let text = format!(
            r#"{{"date":"2026-11-22","counts":{{"{RAW1}":12}},"model_counts":{{"{RAW2}":{{"m":1}}}},
               "exhausted_keys":["{RAW1}", "{RAW2}"]}}"#
        );
        let file = parse(&text).unwrap();
        let out = serde_json::to_string_pretty(&file).unwrap();
        assert!(!out.contains(RAW1), "raw key leaked: {out}");
        assert!(!out.contains(RAW2), "raw key leaked: {out}");
        assert!(!out.contains("RAWKEY"), "part of a raw key leaked: {out}");
        assert!(!out.contains("converted_from_seed"));
    }

    #[test]
    fn own_format_round_trips() {
        let mut file = UsageFile::new(day("2026-11-22"), "America/Los_Angeles");
        file.saved_at = Some(utc(2026, 11, 22, 18, 0));
        let mut record = KeyRecord {
            masked: "AIza…0001".into(),
            project: Some("proj-a".into()),
            disabled: Some("API_KEY_INVALID".into()),
            disabled_at: Some(utc(2026, 11, 22, 17, 0)),
            last_used: Some(utc(2026, 11, 22, 16, 0)),
            models: BTreeMap::new(),
        };
        record.models.insert(
            "gemini-2.5-flash".into(),
            ModelRecord {
                requests: 12,
                tokens: 3400,
                parked_until: Some(utc(2026, 11, 23, 8, 0)),
                cooling_until: None,
                cooldown_streak: 2,
            },
        );
        file.keys.insert("3f2a9c1b7e4d".into(), record);
        file.history.set(day("2026-11-21"), "3f2a9c1b7e4d", DayTotals { requests: 5, tokens: 50 });
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(parse(&text).unwrap(), file);
        assert!(text.contains("\"2026-11-21\""), "history keyed by date: {text}");
    }

    #[test]
    fn own_format_tolerates_missing_optional_fields() {
        let text = r#"{"version":1,"quota_day":"2026-11-22","timezone":"UTC",
                       "keys":{"0123456789ab":{"masked":"AIza…x","models":{"m":{"requests":2}}}}}"#;
        let file = parse(text).unwrap();
        assert!(!file.converted_from_seed);
        let m = file.keys["0123456789ab"].models["m"];
        assert_eq!((m.requests, m.tokens, m.cooldown_streak), (2, 0, 0));
        assert!(file.history.is_empty());
    }

    #[test]
    fn malformed_input_is_a_clear_error() {
        let deep = format!("{{\"version\":1,\"x\":{}}}", "[".repeat(50_000));
        let cases: Vec<(&str, String, &str)> = vec![
            ("empty", String::new(), "empty"),
            ("whitespace", "  \n".into(), "empty"),
            ("not JSON", "date=2026-11-22".into(), "not valid JSON"),
            ("truncated", "{\"version\":1,".into(), "not valid JSON"),
            ("array", "[1,2]".into(), "JSON object"),
            ("deep nesting", deep, "not valid JSON"),
            ("unknown shape", "{\"foo\":1}".into(), "no known format"),
            ("future version", "{\"version\":2,\"quota_day\":\"2026-11-22\"}".into(), "version 2"),
            ("version text", "{\"version\":\"1\"}".into(), "not a number"),
            (
                "bad quota_day",
                "{\"version\":1,\"quota_day\":\"yesterday\",\"timezone\":\"UTC\"}".into(),
                "does not match",
            ),
            (
                "raw key as fingerprint",
                format!(
                    "{{\"version\":1,\"quota_day\":\"2026-11-22\",\"timezone\":\"UTC\",\"keys\":{{\"{RAW1}\":{{}}}}}}"
                ),
                "fingerprint",
            ),
            (
                "raw key in history",
                format!(
                    "{{\"version\":1,\"quota_day\":\"2026-11-22\",\"timezone\":\"UTC\",\"history\":{{\"2026-11-21\":{{\"{RAW1}\":{{}}}}}}}}"
                ),
                "fingerprint",
            ),
            ("seed bad date", "{\"date\":\"22/11/2026\"}".into(), "YYYY-MM-DD"),
            ("seed date number", "{\"date\":20261122}".into(), "YYYY-MM-DD"),
            (
                "seed counts list",
                "{\"date\":\"2026-11-22\",\"counts\":[1]}".into(),
                "\"counts\" is not an object",
            ),
            (
                "seed negative count",
                format!("{{\"date\":\"2026-11-22\",\"counts\":{{\"{RAW1}\":-1}}}}"),
                "non-negative whole number",
            ),
            (
                "seed fractional count",
                format!("{{\"date\":\"2026-11-22\",\"counts\":{{\"{RAW1}\":1.5}}}}"),
                "non-negative whole number",
            ),
            (
                "seed model_counts not nested",
                format!("{{\"date\":\"2026-11-22\",\"model_counts\":{{\"{RAW1}\":3}}}}"),
                "is not an object",
            ),
            (
                "seed exhausted string",
                "{\"date\":\"2026-11-22\",\"exhausted_keys\":\"all\"}".into(),
                "neither a list nor an object",
            ),
            (
                "seed exhausted non-string",
                "{\"date\":\"2026-11-22\",\"exhausted_keys\":[1]}".into(),
                "other than a key string",
            ),
            (
                "seed exhausted models not a list",
                format!("{{\"date\":\"2026-11-22\",\"exhausted_keys\":{{\"{RAW1}\":\"m\"}}}}"),
                "not a list of models",
            ),
        ];
        for (name, text, needle) in cases {
            let err = parse(&text).expect_err(name);
            assert!(err.contains(needle), "case {name}: {err:?} lacks {needle:?}");
            assert!(!err.contains("RAWKEY"), "case {name}: error echoes a raw key: {err}");
        }
        assert!(parse_usage(&[0xff, 0xfe], LA).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn seed_edge_cases() {
        // Python's 3.0, null fields, blank keys, and unknown extra fields are all accepted.
        let text = format!(
            r#"{{"date":" 2026-11-22 ","counts":{{"{RAW1}":3.0,"  ":5}},"model_counts":null,
               "exhausted_keys":null,"extra":{{"anything":[1,2]}}}}"#
        );
        let file = parse(&text).unwrap();
        assert_eq!(file.keys.len(), 1);
        assert_eq!(file.keys[&fingerprint(RAW1)].models[NO_MODEL].requests, 3);
        // A date-only seed file is an empty day.
        let file = parse(r#"{"date":"2026-11-22"}"#).unwrap();
        assert!(file.keys.is_empty());
    }

    #[test]
    fn day_totals_helpers() {
        let mut t = DayTotals::default();
        assert!(t.is_zero());
        t.add(DayTotals { requests: u64::MAX, tokens: 1 });
        t.add(DayTotals { requests: 1, tokens: 1 });
        assert_eq!((t.requests, t.tokens), (u64::MAX, 2));
    }
}
