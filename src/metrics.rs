//! Counters and histograms of what the proxy did, and their Prometheus text rendering.
//!
//! Recording is a short lock on a small map or an atomic add; rendering takes a snapshot. Labels
//! are route names, surfaces, statuses, outcomes and key fingerprints: never a key or a token.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::quota::Outcome;
use crate::server::RequestRecord;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Debug, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}\n"));
        }
        out.push_str(&format!("{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}\n", self.count));
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        out.push_str(&format!("{name}_sum{braces} {}\n{name}_count{braces} {}\n", self.sum, self.count));
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    attempts: Mutex<BTreeMap<&'static str, u64>>,
    duration: Mutex<BTreeMap<String, Histogram>>,
    first_byte: Mutex<Histogram>,
    pub client_disconnects: AtomicU64,
}

/// The metric label of an attempt outcome.
pub fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Success => "ok",
        Outcome::QuotaPerMinute { .. } | Outcome::RateLimited => "rate_limited_minute",
        Outcome::QuotaPerDay => "rate_limited_day",
        Outcome::KeyInvalid { .. } => "invalid_key",
        Outcome::Transient => "upstream_5xx",
        Outcome::ClientError => "client_error",
    }
}

impl Metrics {
    pub fn attempt(&self, o: &Outcome) {
        *self.attempts.lock().entry(outcome_label(o)).or_default() += 1;
    }

    pub fn attempt_network(&self) {
        *self.attempts.lock().entry("network").or_default() += 1;
    }

    pub fn request(&self, r: &RequestRecord) {
        let surface = r.surface.map(|s| s.as_str()).unwrap_or("native");
        *self.requests.lock().entry((r.route.to_string(), surface.to_string(), r.status)).or_default() += 1;
        self.duration.lock().entry(r.route.to_string()).or_default().observe(r.latency);
        if let (true, Some(fb)) = (r.streamed, r.first_byte) {
            self.first_byte.lock().observe(fb);
        }
        if r.client_gone {
            self.client_disconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The request, attempt and latency families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP gkm_requests_total Requests answered, by route, client surface and status.\n");
        out.push_str("# TYPE gkm_requests_total counter\n");
        for ((route, surface, status), n) in self.requests.lock().iter() {
            out.push_str(&format!(
                "gkm_requests_total{{route=\"{route}\",surface=\"{surface}\",status=\"{status}\"}} {n}\n"
            ));
        }
        out.push_str("# HELP gkm_upstream_attempts_total Upstream attempts, by outcome.\n");
        out.push_str("# TYPE gkm_upstream_attempts_total counter\n");
        let attempts = self.attempts.lock();
        for label in [
            "ok",
            "rate_limited_minute",
            "rate_limited_day",
            "invalid_key",
            "upstream_5xx",
            "network",
            "client_error",
        ] {
            let n = attempts.get(label).copied().unwrap_or(0);
            out.push_str(&format!("gkm_upstream_attempts_total{{outcome=\"{label}\"}} {n}\n"));
        }
        drop(attempts);
        out.push_str("# HELP gkm_request_duration_seconds Time from request to the end of the answer.\n");
        out.push_str("# TYPE gkm_request_duration_seconds histogram\n");
        for (route, h) in self.duration.lock().iter() {
            h.render(out, "gkm_request_duration_seconds", &format!("route=\"{route}\""));
        }
        out.push_str("# HELP gkm_stream_first_byte_seconds Time to the first streamed byte.\n");
        out.push_str("# TYPE gkm_stream_first_byte_seconds histogram\n");
        self.first_byte.lock().render(out, "gkm_stream_first_byte_seconds", "");
        out.push_str("# HELP gkm_client_disconnects_total Answers cut short because the client went away.\n");
        out.push_str("# TYPE gkm_client_disconnects_total counter\n");
        out.push_str(&format!(
            "gkm_client_disconnects_total {}\n",
            self.client_disconnects.load(Ordering::Relaxed)
        ));
    }
}
