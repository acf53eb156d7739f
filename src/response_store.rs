//! The bounded memory store of Responses (SPEC §12): answers kept with `store` not false, so that
//! `previous_response_id` and `GET /v1/responses/{id}` work. At most `MAX_RESPONSES` responses or
//! `MAX_BYTES` of them, each for `TTL`; the oldest go first when either bound is reached, expired
//! ones when they are next looked at or a new one is kept.
//!
//! Takes `now` as a parameter (a fake clock in tests); its lock is held only to insert, look up or
//! remove, never across I/O or serialization (sizes are measured before it is taken). Nothing is
//! written to disk: a restart forgets every stored response.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

pub const MAX_RESPONSES: usize = 1000;
pub const MAX_BYTES: usize = 64 << 20;
pub const TTL: Duration = Duration::from_secs(3600);

/// One stored response: the `Response` object and the conversation items up to and including its
/// output (what a later `previous_response_id` continues).
#[derive(Debug)]
pub struct Stored {
    pub response: Value,
    pub items: Vec<Value>,
    /// How many of `items` were its input (the rest is its output): `GET …/input_items`.
    pub inputs: usize,
    bytes: usize,
    at: Instant,
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Arc<Stored>>,
    /// (stored at, seq) -> id: oldest first.
    order: BTreeMap<(Instant, u64), String>,
    bytes: usize,
    seq: u64,
    evicted: u64,
    expired: u64,
}

/// What `/metrics` shows of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub responses: usize,
    pub bytes: usize,
    /// Removed to make room (count or bytes bound).
    pub evicted: u64,
    /// Removed after `TTL`.
    pub expired: u64,
}

#[derive(Debug)]
pub struct ResponseStore {
    inner: Mutex<Inner>,
    max_responses: usize,
    max_bytes: usize,
    ttl: Duration,
}

impl Default for ResponseStore {
    fn default() -> Self {
        ResponseStore::new(MAX_RESPONSES, MAX_BYTES, TTL)
    }
}

/// Approximate memory of a JSON value: its serialized length (counted, not built).
fn size_of(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

impl Inner {
    fn remove(&mut self, id: &str) -> bool {
        match self.map.remove(id) {
            Some(s) => {
                self.order.remove(&(s.at, s.seq));
                self.bytes -= s.bytes;
                true
            }
            None => false,
        }
    }

    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((&(at, _), id)) = self.order.first_key_value() {
            if now.saturating_duration_since(at) < ttl {
                break;
            }
            let id = id.clone();
            self.remove(&id);
            self.expired += 1;
        }
    }
}

impl ResponseStore {
    pub fn new(max_responses: usize, max_bytes: usize, ttl: Duration) -> ResponseStore {
        ResponseStore { inner: Mutex::new(Inner::default()), max_responses, max_bytes, ttl }
    }

    /// Keep `response` and its conversation `items` (the first `inputs` of them its input) under
    /// `id`; false when it alone is over the byte bound (then nothing is kept).
    pub fn put(&self, id: &str, response: Value, items: Vec<Value>, inputs: usize, now: Instant) -> bool {
        let bytes = size_of(&response) + items.iter().map(size_of).sum::<usize>() + id.len();
        if bytes > self.max_bytes {
            return false;
        }
        let mut inner = self.inner.lock();
        inner.expire(now, self.ttl);
        inner.remove(id);
        while !inner.map.is_empty()
            && (inner.map.len() >= self.max_responses || inner.bytes + bytes > self.max_bytes)
        {
            let Some((_, oldest)) = inner.order.first_key_value() else { break };
            let oldest = oldest.clone();
            inner.remove(&oldest);
            inner.evicted += 1;
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.order.insert((now, seq), id.to_owned());
        inner.bytes += bytes;
        inner.map.insert(id.to_owned(), Arc::new(Stored { response, items, inputs, bytes, at: now, seq }));
        true
    }

    /// The response stored under `id`, unless it is unknown or expired.
    pub fn get(&self, id: &str, now: Instant) -> Option<Arc<Stored>> {
        let mut inner = self.inner.lock();
        inner.expire(now, self.ttl);
        inner.map.get(id).cloned()
    }

    /// Forget `id`; false when it was unknown or expired.
    pub fn delete(&self, id: &str, now: Instant) -> bool {
        let mut inner = self.inner.lock();
        inner.expire(now, self.ttl);
        inner.remove(id)
    }

    pub fn stats(&self, now: Instant) -> StoreStats {
        let mut inner = self.inner.lock();
        inner.expire(now, self.ttl);
        StoreStats {
            responses: inner.map.len(),
            bytes: inner.bytes,
            evicted: inner.evicted,
            expired: inner.expired,
        }
    }

    /// The `/metrics` families of the store.
    pub fn render_metrics(&self, out: &mut String, now: Instant) {
        let s = self.stats(now);
        let families: [(&str, &str, &str, u64); 6] = [
            (
                "gkm_responses_stored",
                "gauge",
                "Responses kept for previous_response_id and GET.",
                s.responses as u64,
            ),
            (
                "gkm_responses_stored_bytes",
                "gauge",
                "Approximate bytes of the stored responses.",
                s.bytes as u64,
            ),
            ("gkm_responses_store_max", "gauge", "Most responses kept at once.", self.max_responses as u64),
            (
                "gkm_responses_store_max_bytes",
                "gauge",
                "Most bytes of responses kept at once.",
                self.max_bytes as u64,
            ),
            ("gkm_responses_evicted_total", "counter", "Stored responses dropped to make room.", s.evicted),
            ("gkm_responses_expired_total", "counter", "Stored responses dropped after an hour.", s.expired),
        ];
        for (name, kind, help, value) in families {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn kept_found_deleted_and_expired_after_the_ttl() {
        let store = ResponseStore::default();
        let t0 = Instant::now();
        assert!(store.put(
            "resp_1",
            json!({"id": "resp_1"}),
            vec![json!({"role": "user", "content": "x"})],
            1,
            t0
        ));
        let got = store.get("resp_1", t0 + Duration::from_secs(3599)).unwrap();
        assert_eq!((got.response["id"].as_str(), got.items.len()), (Some("resp_1"), 1));
        assert!(store.get("resp_1", t0 + TTL).is_none(), "expired after an hour");
        assert_eq!(store.stats(t0 + TTL), StoreStats { responses: 0, bytes: 0, evicted: 0, expired: 1 });
        assert!(store.put("resp_2", json!({}), vec![], 0, t0));
        assert!(store.delete("resp_2", t0) && !store.delete("resp_2", t0));
        assert!(store.get("nope", t0).is_none());
    }

    #[test]
    fn the_count_and_byte_bounds_drop_the_oldest_first() {
        let store = ResponseStore::new(3, 1000, TTL);
        let t0 = Instant::now();
        for i in 0..5 {
            store.put(&format!("r{i}"), json!({"i": i}), vec![], 0, t0 + Duration::from_secs(i));
        }
        let now = t0 + Duration::from_secs(5);
        assert!(store.get("r0", now).is_none() && store.get("r1", now).is_none());
        assert!(store.get("r2", now).is_some() && store.get("r4", now).is_some());
        assert_eq!(store.stats(now).evicted, 2);
        // 400 bytes each: two fit in 1000.
        let big = json!("x".repeat(400));
        for i in 0..3 {
            assert!(store.put(&format!("b{i}"), big.clone(), vec![], 0, now));
        }
        let s = store.stats(now);
        assert!(s.bytes <= 1000 && s.responses == 2, "{s:?}");
        assert!(store.get("b0", now).is_none() && store.get("b2", now).is_some());
        // One over the whole bound is not kept at all.
        assert!(!store.put("huge", json!("y".repeat(2000)), vec![], 0, now));
        let mut text = String::new();
        store.render_metrics(&mut text, now);
        assert!(
            text.contains("gkm_responses_stored 2\n") && text.contains("gkm_responses_evicted_total 6\n"),
            "{text}"
        );
    }
}
