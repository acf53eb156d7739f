//! Files, caches and resumable uploads follow the key that made them (SPEC §5).
//!
//! Google scopes `files/…` and `cachedContents/…` to the project of the key that created them,
//! so a later request naming one must go out with that key. This module finds the names a
//! request refers to and the names an answer creates, and remembers name → key fingerprint with
//! an expiry. Pure: no I/O, no clock (every call takes `now`), no locks of its own.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};

use crate::store_format::AffinityRecord;

/// Gemini deletes uploaded files after 48 hours.
pub const FILE_TTL_HOURS: i64 = 48;
/// Cached contents live as long as their TTL says; a week is a generous bound for the mapping.
pub const CACHE_TTL_HOURS: i64 = 7 * 24;
/// Deepest JSON nesting searched for references.
const MAX_DEPTH: usize = 64;

/// The affinity name of a resumable upload session.
pub fn upload_name(upload_id: &str) -> String {
    format!("upload:{upload_id}")
}

#[derive(Debug, Default)]
pub struct Affinity {
    map: HashMap<String, AffinityRecord>,
}

impl Affinity {
    pub fn from_records(records: &BTreeMap<String, AffinityRecord>, now: DateTime<Utc>) -> Affinity {
        let map =
            records.iter().filter(|(_, r)| r.expires_at > now).map(|(k, v)| (k.clone(), v.clone())).collect();
        Affinity { map }
    }

    pub fn records(&self) -> BTreeMap<String, AffinityRecord> {
        self.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn remember(&mut self, name: &str, fingerprint: &str, now: DateTime<Utc>) {
        let hours = if name.starts_with("cachedContents/") { CACHE_TTL_HOURS } else { FILE_TTL_HOURS };
        self.map.retain(|_, r| r.expires_at > now);
        self.map.insert(
            name.to_string(),
            AffinityRecord { fingerprint: fingerprint.to_string(), expires_at: now + Duration::hours(hours) },
        );
    }

    /// The fingerprint of the key that made `name`, if known and not expired.
    pub fn lookup(&self, name: &str, now: DateTime<Utc>) -> Option<&str> {
        self.map.get(name).filter(|r| r.expires_at > now).map(|r| r.fingerprint.as_str())
    }

    /// The first of `names` with a known key.
    pub fn pinned(&self, names: &[String], now: DateTime<Utc>) -> Option<String> {
        names.iter().find_map(|n| self.lookup(n, now)).map(str::to_string)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// `files/{id}` or `cachedContents/{id}` at the start of `s` (ids: letters, digits, `-`, `_`).
fn resource_at(s: &str) -> Option<String> {
    for prefix in ["files/", "cachedContents/"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let id: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
            if !id.is_empty() {
                return Some(format!("{prefix}{id}"));
            }
        }
    }
    None
}

/// Most references collected from one request (a request names a handful at most).
const MAX_REFERENCES: usize = 256;

/// Every resource named inside `s` (a path, a URI or a bare name). Linear in `s`: each prefix
/// is searched once over the string (a search restarted at every position was quadratic).
fn resources_in(s: &str, out: &mut Vec<String>, seen: &mut std::collections::HashSet<String>) {
    for prefix in ["files/", "cachedContents/"] {
        for (at, _) in s.match_indices(prefix) {
            if out.len() >= MAX_REFERENCES {
                return;
            }
            let boundary = at == 0 || matches!(s.as_bytes()[at - 1], b'/' | b'"');
            if boundary
                && let Some(r) = resource_at(&s[at..])
                && seen.insert(r.clone())
            {
                out.push(r);
            }
        }
    }
}

fn walk(
    v: &serde_json::Value,
    depth: usize,
    out: &mut Vec<String>,
    seen: &mut std::collections::HashSet<String>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        serde_json::Value::String(s) => resources_in(s, out, seen),
        serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, depth + 1, out, seen)),
        serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, depth + 1, out, seen)),
        _ => {}
    }
}

/// Does `bytes` contain `files/` or `cachedContents/`? (Every request and answer is checked: one
/// pass looking at the few slashes, instead of comparing both names at every position.)
pub fn mentions_resource(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'/' && (bytes[..i].ends_with(b"files") || bytes[..i].ends_with(b"cachedContents"))
    })
}

/// Names a request refers to: in its path, its `upload_id`, and its JSON body.
pub fn referenced(path: &str, upload_id: Option<&str>, body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    if let Some(id) = upload_id {
        out.push(upload_name(id));
    }
    if mentions_resource(path.as_bytes()) {
        resources_in(path, &mut out, &mut seen);
    }
    if mentions_resource(body)
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
    {
        walk(&v, 0, &mut out, &mut seen);
    }
    out
}

/// Names an answer creates: `{"file":{"name":"files/…"}}` or `{"name":"cachedContents/…"}`.
pub fn created(body: &[u8]) -> Vec<String> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let mut out = Vec::new();
    for name in [v.pointer("/file/name"), v.get("name")].into_iter().flatten() {
        if let Some(r) = name.as_str().and_then(resource_at) {
            out.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    #[test]
    fn mentions_are_found_anywhere_and_only_with_the_slash() {
        for yes in [&b"files/a"[..], b"x/cachedContents/", b"\"files/\"", b"/v1beta/files/abc:download"] {
            assert!(mentions_resource(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in
            [&b""[..], b"/", b"files", b"file/", b"cachedContent/x", b"/v1beta/models/m:generateContent"]
        {
            assert!(!mentions_resource(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn references_in_paths_uris_and_bodies() {
        let body = br#"{"contents":[{"parts":[{"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/abc-1","mimeType":"image/png"}}]}],"cachedContent":"cachedContents/xyz_9"}"#;
        let mut found = referenced("/v1beta/models/m:generateContent", None, body);
        found.sort();
        assert_eq!(found, vec!["cachedContents/xyz_9".to_string(), "files/abc-1".to_string()]);
        assert_eq!(referenced("/v1beta/files/abc:download", None, b""), vec!["files/abc".to_string()]);
        assert_eq!(referenced("/upload/v1beta/files", Some("U1"), b""), vec!["upload:U1".to_string()]);
        assert!(referenced("/v1beta/models/m:generateContent", None, br#"{"x":"profiles/a"}"#).is_empty());
        assert!(referenced("/v1beta/files", None, b"not json files/").is_empty());
    }

    #[test]
    fn created_names() {
        assert_eq!(created(br#"{"file":{"name":"files/abc","uri":"u"}}"#), vec!["files/abc".to_string()]);
        assert_eq!(
            created(br#"{"name":"cachedContents/c1","model":"m"}"#),
            vec!["cachedContents/c1".to_string()]
        );
        assert!(created(br#"{"name":"models/x"}"#).is_empty());
        assert!(created(b"garbage").is_empty());
    }

    #[test]
    fn mappings_expire() {
        let mut a = Affinity::default();
        a.remember("files/abc", "fp1", t(0));
        a.remember("cachedContents/c", "fp2", t(0));
        assert_eq!(a.lookup("files/abc", t(47)), Some("fp1"));
        assert_eq!(a.lookup("files/abc", t(49)), None);
        assert_eq!(a.lookup("cachedContents/c", t(100)), Some("fp2"));
        let restored = Affinity::from_records(&a.records(), t(49));
        assert_eq!(restored.len(), 1);
        assert_eq!(
            restored.pinned(&["files/abc".into(), "cachedContents/c".into()], t(49)).as_deref(),
            Some("fp2")
        );
    }

    #[test]
    fn deep_bodies_do_not_recurse_without_bound() {
        let mut body = String::new();
        for _ in 0..100 {
            body.push_str("{\"a\":");
        }
        body.push_str("\"files/deep\"");
        for _ in 0..100 {
            body.push('}');
        }
        // serde_json itself refuses nesting past 128; either way nothing panics.
        let _ = referenced("/v1beta/x", None, body.as_bytes());
    }
}
