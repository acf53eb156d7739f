//! Key selection (placeholder: plain round-robin until the quota-aware pool lands).

use chrono::{DateTime, Utc};

use crate::keyfile::KeySpec;
use crate::quota::Outcome;

pub fn fingerprint(key: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

pub enum Pick {
    Key { idx: usize, key: String, fingerprint: String },
    Exhausted { retry_after_secs: u64, until: Option<DateTime<Utc>>, model: Option<String> },
}

pub struct KeyState {
    keys: Vec<(KeySpec, String)>,
    next: usize,
}

impl KeyState {
    pub fn new(keys: Vec<KeySpec>, _tz: chrono_tz::Tz, _now: DateTime<Utc>) -> Self {
        let keys = keys.into_iter().map(|k| {
            let fp = fingerprint(&k.key);
            (k, fp)
        });
        KeyState { keys: keys.collect(), next: 0 }
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn usable_count(&self, _now: DateTime<Utc>) -> usize {
        self.keys.len()
    }
    pub fn pick(&mut self, model: Option<&str>, tried: &[usize], _now: DateTime<Utc>) -> Pick {
        for _ in 0..self.keys.len() {
            let idx = self.next % self.keys.len();
            self.next = self.next.wrapping_add(1);
            if !tried.contains(&idx) {
                let (spec, fp) = &self.keys[idx];
                return Pick::Key { idx, key: spec.key.clone(), fingerprint: fp.clone() };
            }
        }
        Pick::Exhausted { retry_after_secs: 1, until: None, model: model.map(str::to_string) }
    }
    pub fn record(
        &mut self,
        _idx: usize,
        _fp: &str,
        _model: Option<&str>,
        _o: &Outcome,
        _tokens: u64,
        _now: DateTime<Utc>,
    ) {
    }
}
