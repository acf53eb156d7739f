//! History: the daily totals per key fingerprint of past quota days (the pool keeps 30), in a
//! compact form. 30 days × 3,000 keys are 90,000 totals: as maps of strings they took about 9 MB
//! of heap (and as much again while a file was read); here each is 24 bytes, the fingerprints
//! are held once, and a file's history is read straight into this form.
//!
//! It serializes as it always did: `{ "YYYY-MM-DD": { fingerprint: {requests, tokens} } }`,
//! days and fingerprints in order. Pure: no I/O, no clock.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::NaiveDate;
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::store_format::DayTotals;

/// Daily totals per fingerprint and day.
#[derive(Clone, Default)]
pub struct History {
    /// Each fingerprint once; entries name them by index.
    names: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32>,
    /// Per day: (fingerprint index, totals), sorted by index.
    days: BTreeMap<NaiveDate, Vec<(u32, DayTotals)>>,
}

impl History {
    fn intern(&mut self, fingerprint: &str) -> u32 {
        if let Some(&id) = self.ids.get(fingerprint) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(fingerprint.into());
        self.ids.insert(fingerprint.into(), id);
        id
    }

    /// The totals of `fingerprint` on `day`, for changing them (zero when new).
    fn slot(&mut self, day: NaiveDate, fingerprint: &str) -> &mut DayTotals {
        let id = self.intern(fingerprint);
        let entries = self.days.entry(day).or_default();
        let at = match entries.binary_search_by_key(&id, |(i, _)| *i) {
            Ok(at) => at,
            Err(at) => {
                entries.insert(at, (id, DayTotals::default()));
                at
            }
        };
        &mut entries[at].1
    }

    /// Add `totals` to what `fingerprint` has on `day`.
    pub fn add(&mut self, day: NaiveDate, fingerprint: &str, totals: DayTotals) {
        self.slot(day, fingerprint).add(totals);
    }

    /// Set what `fingerprint` has on `day`.
    pub fn set(&mut self, day: NaiveDate, fingerprint: &str, totals: DayTotals) {
        *self.slot(day, fingerprint) = totals;
    }

    pub fn get(&self, day: NaiveDate, fingerprint: &str) -> Option<DayTotals> {
        let id = *self.ids.get(fingerprint)?;
        let entries = self.days.get(&day)?;
        entries.binary_search_by_key(&id, |(i, _)| *i).ok().map(|at| entries[at].1)
    }

    /// Keep the days from `first` on; fingerprints no day names any more are let go.
    pub fn keep_from(&mut self, first: NaiveDate) {
        let before = self.days.len();
        self.days.retain(|day, _| *day >= first);
        if self.days.len() != before {
            self.reindex();
        }
    }

    /// Number the fingerprints still in use afresh.
    fn reindex(&mut self) {
        let mut kept = History::default();
        for (day, entries) in &self.days {
            for (id, totals) in entries {
                kept.set(*day, &self.names[*id as usize], *totals);
            }
        }
        *self = kept;
    }

    /// The days held, oldest first.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.days.keys().copied()
    }

    /// Each fingerprint's totals on `day` (in no particular order).
    pub fn on(&self, day: NaiveDate) -> impl Iterator<Item = (&str, DayTotals)> + '_ {
        self.days.get(&day).into_iter().flatten().map(|(id, t)| (&*self.names[*id as usize], *t))
    }

    /// The pool's totals per day, oldest first.
    pub fn per_day(&self) -> impl Iterator<Item = (NaiveDate, DayTotals)> + '_ {
        self.days.iter().map(|(day, entries)| {
            let mut sum = DayTotals::default();
            entries.iter().for_each(|(_, t)| sum.add(*t));
            (*day, sum)
        })
    }

    /// Every fingerprint named on some day.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> + '_ {
        let used: std::collections::BTreeSet<u32> = self.days.values().flatten().map(|(id, _)| *id).collect();
        used.into_iter().map(|id| &*self.names[id as usize])
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    /// The whole history as maps (tests, comparisons).
    pub fn to_map(&self) -> BTreeMap<NaiveDate, BTreeMap<String, DayTotals>> {
        self.days().map(|day| (day, self.on(day).map(|(fp, t)| (fp.to_string(), t)).collect())).collect()
    }
}

impl From<BTreeMap<NaiveDate, BTreeMap<String, DayTotals>>> for History {
    fn from(map: BTreeMap<NaiveDate, BTreeMap<String, DayTotals>>) -> History {
        let mut history = History::default();
        for (day, per_key) in map {
            for (fp, totals) in per_key {
                history.set(day, &fp, totals);
            }
        }
        history
    }
}

impl PartialEq for History {
    fn eq(&self, other: &History) -> bool {
        self.to_map() == other.to_map()
    }
}

impl Eq for History {}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("days", &self.days.len())
            .field("entries", &self.days.values().map(Vec::len).sum::<usize>())
            .finish()
    }
}

/// One day, serialized with its fingerprints in order.
struct DayOut<'a>(&'a History, &'a [(u32, DayTotals)]);

impl Serialize for DayOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<(&str, DayTotals)> =
            self.1.iter().map(|(id, t)| (&*self.0.names[*id as usize], *t)).collect();
        sorted.sort_unstable_by_key(|(fp, _)| *fp);
        let mut map = s.serialize_map(Some(sorted.len()))?;
        for (fp, t) in sorted {
            map.serialize_entry(fp, &t)?;
        }
        map.end()
    }
}

impl Serialize for History {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.days.len()))?;
        for (day, entries) in &self.days {
            map.serialize_entry(day, &DayOut(self, entries))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for History {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<History, D::Error> {
        d.deserialize_map(HistoryVisitor)
    }
}

struct HistoryVisitor;

impl<'de> Visitor<'de> for HistoryVisitor {
    type Value = History;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of days to maps of fingerprints to totals")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut days: A) -> Result<History, A::Error> {
        let mut history = History::default();
        while let Some(day) = days.next_key::<NaiveDate>()? {
            days.next_value_seed(DaySeed(&mut history, day))?;
        }
        Ok(history)
    }
}

/// Reads one day's map straight into the history (no map of strings in between).
struct DaySeed<'h>(&'h mut History, NaiveDate);

impl<'de> serde::de::DeserializeSeed<'de> for DaySeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DaySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of fingerprints to totals")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let DaySeed(history, day) = self;
        let mut entries = std::mem::take(history.days.entry(day).or_default());
        while let Some(fp) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let totals: DayTotals = map.next_value()?;
            entries.push((history.intern(&fp), totals));
        }
        // A later duplicate wins, as in a map.
        entries.reverse();
        entries.sort_by_key(|(id, _)| *id);
        entries.dedup_by_key(|(id, _)| *id);
        history.days.insert(day, entries);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn date(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn t(requests: u64, tokens: u64) -> DayTotals {
        DayTotals { requests, tokens }
    }

    #[test]
    fn adds_sets_gets_and_sums_per_day() {
        let mut h = History::default();
        h.add(date(2), "bbbbbbbbbbbb", t(1, 10));
        h.add(date(2), "aaaaaaaaaaaa", t(2, 20));
        h.add(date(2), "bbbbbbbbbbbb", t(3, 30));
        h.set(date(1), "aaaaaaaaaaaa", t(5, 50));
        assert_eq!(h.get(date(2), "bbbbbbbbbbbb"), Some(t(4, 40)));
        assert_eq!(h.get(date(1), "aaaaaaaaaaaa"), Some(t(5, 50)));
        assert_eq!(h.get(date(1), "bbbbbbbbbbbb"), None);
        assert_eq!(h.per_day().collect::<Vec<_>>(), vec![(date(1), t(5, 50)), (date(2), t(6, 60))]);
        h.keep_from(date(2));
        assert_eq!(h.days().collect::<Vec<_>>(), vec![date(2)]);
        assert_eq!(h.get(date(2), "aaaaaaaaaaaa"), Some(t(2, 20)));
        assert_eq!(h.fingerprints().count(), 2);
    }

    #[test]
    fn serializes_as_maps_in_order_and_reads_back() {
        let mut h = History::default();
        h.add(date(3), "cccccccccccc", t(1, 2));
        h.add(date(3), "aaaaaaaaaaaa", t(3, 4));
        h.add(date(1), "bbbbbbbbbbbb", t(5, 6));
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(
            text,
            "{\"2026-11-01\":{\"bbbbbbbbbbbb\":{\"requests\":5,\"tokens\":6}},\"2026-11-03\":{\"aaaaaaaaaaaa\":\
             {\"requests\":3,\"tokens\":4},\"cccccccccccc\":{\"requests\":1,\"tokens\":2}}}"
        );
        let back: History = serde_json::from_str(&text).unwrap();
        assert_eq!(back, h);
        let dup: History =
            serde_json::from_str("{\"2026-11-01\":{\"aa\":{\"requests\":1},\"aa\":{\"requests\":2}}}")
                .unwrap();
        assert_eq!(dup.get(date(1), "aa"), Some(t(2, 0)));
        assert!(serde_json::from_str::<History>("{\"nope\":{}}").is_err());
        assert!(serde_json::from_str::<History>("{\"2026-11-01\":{\"aa\":7}}").is_err());
    }
}
