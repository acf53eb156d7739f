//! The operator's views as types: the `/status` document (SPEC §4) with its key-state vocabulary,
//! and the `usage` command's report. `Serialize`/`Deserialize` structs, no logic beyond their
//! wire format; the pool builds them (`KeyState::status`), `admin` and `commands` show them.
//!
//! Pure: no I/O, no locks, no clock; shows fingerprints and masks only, never a raw key.
//!
//! # Wire format
//!
//! Times are RFC 3339 in the reset zone, whole seconds (`2026-11-23T00:00:00-08:00`); a day is
//! `YYYY-MM-DD`; an absent value is `null`. Struct fields are declared in **alphabetical order**
//! on purpose: that is the order `/status` and `usage --json` have always had (they were built as
//! `serde_json` maps, which sort their keys), so the bytes stay the same.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, SecondsFormat, SubsecRound, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A key's state as `/status` names it (serialized lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStateName {
    Usable,
    Cooling,
    Parked,
    Disabled,
}

impl KeyStateName {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [KeyStateName; 4] =
        [KeyStateName::Usable, KeyStateName::Cooling, KeyStateName::Parked, KeyStateName::Disabled];

    /// Disabled wins over parked (for some model), parked over cooling, and a key with none of
    /// these is usable.
    pub fn of(disabled: bool, parked: bool, cooling: bool) -> KeyStateName {
        if disabled {
            KeyStateName::Disabled
        } else if parked {
            KeyStateName::Parked
        } else if cooling {
            KeyStateName::Cooling
        } else {
            KeyStateName::Usable
        }
    }

    /// `usable`, `cooling`, `parked` or `disabled`: the serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStateName::Usable => "usable",
            KeyStateName::Cooling => "cooling",
            KeyStateName::Parked => "parked",
            KeyStateName::Disabled => "disabled",
        }
    }
}

/// The `/status` document (SPEC §4). Built by [`crate::pool::KeyState::status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub keys: Vec<KeyView>,
    /// Version 2 (SPEC §14): per model, what remains today summed over the projects that know
    /// its daily limit.
    #[serde(default)]
    pub models: BTreeMap<String, ModelLimitsView>,
    /// The next reset: local midnight after now in the reset zone.
    #[serde(with = "rfc3339")]
    pub next_reset: DateTime<FixedOffset>,
    /// The quota day the counts belong to.
    #[serde(with = "day")]
    pub quota_day: NaiveDate,
    /// IANA name of the reset zone.
    pub timezone: String,
    pub totals: Totals,
}

/// Requests and tokens counted today (or on the quota day of a report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub requests: u64,
    pub tokens: u64,
}

/// One key in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// Why the key is disabled (a fixed reason code), if it is.
    #[serde(default)]
    pub disabled_reason: Option<String>,
    /// Where its upstream traffic goes (SPEC §15): `host:port` of its proxy, or `direct`; set
    /// by the `/status` handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
    /// The fingerprint (first 12 hex digits of the key's SHA-256).
    pub id: String,
    #[serde(default, with = "rfc3339_opt")]
    pub last_used: Option<DateTime<FixedOffset>>,
    /// `AIza…XyZ1`.
    pub masked: String,
    /// Per model: today's usage and the running limits of the key's project (`*`: every model).
    pub models: BTreeMap<String, ModelView>,
    #[serde(default)]
    pub project: Option<String>,
    pub requests: u64,
    pub state: KeyStateName,
    pub tokens: u64,
}

/// One key and model: usage and the limits running now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelView {
    #[serde(default, with = "rfc3339_opt")]
    pub cooling_until: Option<DateTime<FixedOffset>>,
    /// Version 2 (SPEC §14): the learned or configured limits of the key's project.
    #[serde(default)]
    pub limits: LimitsView,
    #[serde(default, with = "rfc3339_opt")]
    pub parked_until: Option<DateTime<FixedOffset>>,
    /// Version 2: the daily limit less what the project sent today; `null` when it is unknown.
    #[serde(default)]
    pub remaining_today: Option<u64>,
    pub requests: u64,
    pub tokens: u64,
}

/// A project's known limits for a model (`null` where unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsView {
    pub rpd: Option<u64>,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
}

/// The pool counted without a view of each key (`/metrics` of a large pool): keys in all and per
/// state, today's requests and tokens per model summed over the keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub total: usize,
    pub by_state: BTreeMap<KeyStateName, usize>,
    pub per_model: BTreeMap<String, (u64, u64)>,
}

impl KeyCounts {
    /// The same counts from a view of every key.
    pub fn of(view: &StatusView) -> KeyCounts {
        let mut counts = KeyCounts { total: view.keys.len(), ..KeyCounts::default() };
        for k in &view.keys {
            *counts.by_state.entry(k.state).or_default() += 1;
            for (model, m) in &k.models {
                let sum = counts.per_model.entry(model.clone()).or_default();
                *sum = (sum.0.saturating_add(m.requests), sum.1.saturating_add(m.tokens));
            }
        }
        counts
    }
}

/// One model over the pool: "67 of 750 left today across 3 projects".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelLimitsView {
    /// Projects whose daily limit for the model is known.
    pub projects: u64,
    /// What they have left today, summed.
    pub remaining_today: u64,
    /// Their daily limits, summed.
    pub rpd: u64,
}

/// What the `usage` command prints (its `--json` output; the table is made from it): today's
/// usage per key and model as read from the usage file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The quota day the file's counts belong to (counts of another day than today show as 0).
    #[serde(with = "day")]
    pub file_quota_day: NaiveDate,
    pub keys: Vec<UsageKeyView>,
    #[serde(with = "rfc3339")]
    pub next_reset: DateTime<FixedOffset>,
    /// Today, in the reset zone.
    #[serde(with = "day")]
    pub quota_day: NaiveDate,
    pub timezone: String,
    pub totals: Totals,
}

/// One key of a [`UsageReport`]: a [`KeyView`] without `last_used`; only models with requests
/// or a running limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageKeyView {
    #[serde(default)]
    pub disabled_reason: Option<String>,
    pub id: String,
    pub masked: String,
    pub models: BTreeMap<String, ModelView>,
    #[serde(default)]
    pub project: Option<String>,
    pub requests: u64,
    pub state: KeyStateName,
    pub tokens: u64,
}

/// `t` as the views show it: in the reset zone, to the whole second.
pub fn in_zone(t: DateTime<Utc>, tz: Tz) -> DateTime<FixedOffset> {
    t.trunc_subsecs(0).with_timezone(&tz).fixed_offset()
}

/// RFC 3339, whole seconds, numeric offset (`2026-11-23T00:00:00-08:00`).
mod rfc3339 {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(super::SecondsFormat::Secs, false))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// [`rfc3339`] or `null`.
mod rfc3339_opt {
    use chrono::{DateTime, FixedOffset};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<FixedOffset>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| DateTime::parse_from_rfc3339(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// `YYYY-MM-DD`.
mod day {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &NaiveDate, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.format("%Y-%m-%d"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let text = String::deserialize(d)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(serde::de::Error::custom)
    }
}
