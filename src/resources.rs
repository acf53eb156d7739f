//! Server-side resources follow their project (SPEC §5): the names a request refers to, the names
//! an answer creates, and the one table name → project of the key that made it, with expiry.
//!
//! Google keeps what a key creates (files, caches, batches, file search stores, tuned models,
//! interactions, agents, triggers, environments, credentials, webhooks, voices, ephemeral tokens,
//! upload sessions) in that key's Cloud project, so a later request naming one must go out with a
//! key of that project. Names are canonical: `{collection}/{id}` (a store's documents and
//! operations are the store's; opaque interaction ids become `interactions/{id}`), `upload:{id}`
//! and `continuation:{token}`.
//!
//! Pure: no I/O, no clock (every call takes `now`), no locks of its own; it never picks a key
//! (the pool does, given the project).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use crate::keyfile::ProjectId;
use crate::store_format::ResourceRecord;

/// Collections whose names carry their collection (`files/abc`), with how long a name is worth
/// remembering when the answer gives no expiry: Gemini deletes files after 48 hours; the rest
/// live until deleted or their own expiry, bounded generously.
const NAMED: [(&str, i64); 6] = [
    ("files", 48),
    ("cachedContents", 7 * 24),
    ("batches", 30 * 24),
    ("fileSearchStores", 400 * 24),
    ("tunedModels", 400 * 24),
    ("auth_tokens", 24),
];
/// The Interactions family: opaque ids (`v1_…`, `voice_…`) named by the field that holds them.
/// Interactions are kept by Google for at most 55 days.
const OPAQUE: [(&str, i64); 7] = [
    ("interactions", 55 * 24),
    ("agents", 400 * 24),
    ("triggers", 400 * 24),
    ("environments", 400 * 24),
    ("credentials", 400 * 24),
    ("webhooks", 400 * 24),
    ("voices", 400 * 24),
];
/// A resumable upload session stays open for a week.
const UPLOAD_TTL_HOURS: i64 = 7 * 24;
/// A continuation token is used within the minutes of one automatic continuation.
const CONTINUATION_TTL_HOURS: i64 = 24;
/// Deepest JSON nesting searched for references.
const MAX_DEPTH: usize = 64;
/// Most references collected from one request (a request names a handful at most).
const MAX_REFERENCES: usize = 256;
/// The longest opaque id looked up (longer strings are text, not ids).
const MAX_OPAQUE_ID: usize = 512;
/// Entries kept at most; past it the ones expiring soonest go (and a warning says so).
pub const MAX_ENTRIES: usize = 500_000;

/// The name of a resumable upload session.
pub fn upload_name(upload_id: &str) -> String {
    format!("upload:{upload_id}")
}

/// Who holds a resource the request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub name: String,
    pub project: ProjectId,
    /// The key that made it.
    pub fingerprint: String,
    /// The model it was made with (interactions), for booking later reads.
    pub model: Option<String>,
}

/// The project a request must be served from, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub project: ProjectId,
    /// The resource that decides it (named in errors).
    pub resource: String,
    /// The key that made it (its fingerprint, named in the 409).
    pub fingerprint: String,
}

impl Pin {
    /// The one project of `owners`; `Err((a, b))` when they name two.
    pub fn of(owners: &[Owner]) -> Result<Option<Pin>, (&Owner, &Owner)> {
        let Some(first) = owners.first() else { return Ok(None) };
        if let Some(other) = owners.iter().find(|o| o.project != first.project) {
            return Err((first, other));
        }
        Ok(Some(Pin {
            project: first.project.clone(),
            resource: first.name.clone(),
            fingerprint: first.fingerprint.clone(),
        }))
    }
}

#[derive(Debug)]
pub struct Resources {
    map: HashMap<String, ResourceRecord>,
    /// Inserts since the last prune (a prune is due after as many as half the table: amortised
    /// constant time per insert).
    inserts: usize,
    cap: usize,
    /// Names written or forgotten since the last [`Resources::take_changes`].
    changed: HashSet<String>,
}

impl Default for Resources {
    fn default() -> Resources {
        Resources { map: HashMap::new(), inserts: 0, cap: MAX_ENTRIES, changed: HashSet::new() }
    }
}

impl Resources {
    /// The table as saved, keeping what has not expired. `project_of` gives the project of a
    /// key by fingerprint, for records of older files that have none.
    pub fn from_records(
        records: &BTreeMap<String, ResourceRecord>,
        now: DateTime<Utc>,
        project_of: impl Fn(&str) -> Option<ProjectId>,
    ) -> Resources {
        let map = records
            .iter()
            .filter(|(_, r)| r.expires_at > now)
            .map(|(k, r)| {
                let mut r = r.clone();
                if r.project.is_none() {
                    r.project =
                        Some(project_of(&r.fingerprint).unwrap_or(ProjectId::Solo(r.fingerprint.clone())));
                }
                (k.clone(), r)
            })
            .collect();
        Resources { map, ..Resources::default() }
    }

    /// What gets persisted: the entries that have not expired at `now`. The table counts itself
    /// saved up to here.
    pub fn records(&mut self, now: DateTime<Utc>) -> BTreeMap<String, ResourceRecord> {
        self.changed.clear();
        self.map.iter().filter(|(_, r)| r.expires_at > now).map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The entries written since the last call (or [`records`](Self::records)), `None` for
    /// those forgotten: what a journal line records.
    pub fn take_changes(&mut self) -> BTreeMap<String, Option<ResourceRecord>> {
        let changed = std::mem::take(&mut self.changed);
        changed
            .into_iter()
            .map(|name| {
                let record = self.map.get(&name).cloned();
                (name, record)
            })
            .collect()
    }

    /// Remember that `name` lives in `project`, made (or first seen) with key `fingerprint`;
    /// `expires` from the answer when it said, else the collection's default.
    pub fn remember(
        &mut self,
        name: &str,
        project: &ProjectId,
        fingerprint: &str,
        model: Option<&str>,
        expires: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) {
        let ttl = Duration::hours(default_ttl_hours(name));
        let expires_at = expires.filter(|t| *t > now).unwrap_or(now + ttl);
        let booked = self.map.get(name).is_some_and(|r| r.booked && r.project.as_ref() == Some(project));
        let model = model.map(str::to_string).or_else(|| self.map.get(name).and_then(|r| r.model.clone()));
        self.changed.insert(name.to_string());
        self.map.insert(
            name.to_string(),
            ResourceRecord {
                fingerprint: fingerprint.to_string(),
                expires_at,
                project: Some(project.clone()),
                model,
                booked,
            },
        );
        self.inserts += 1;
        if self.inserts >= (self.map.len() / 2).max(4096) || self.map.len() > self.cap {
            self.prune(now);
        }
    }

    /// Drop expired entries; past the cap, the tenth expiring soonest as well.
    fn prune(&mut self, now: DateTime<Utc>) {
        self.inserts = 0;
        self.map.retain(|_, r| r.expires_at > now);
        if self.map.len() > self.cap {
            let mut by_expiry: Vec<(DateTime<Utc>, String)> =
                self.map.iter().map(|(k, r)| (r.expires_at, k.clone())).collect();
            by_expiry.sort();
            let excess = self.map.len() - self.cap * 9 / 10;
            for (_, k) in by_expiry.into_iter().take(excess) {
                self.map.remove(&k);
                self.changed.insert(k);
            }
            log::warn!("resource table over {} entries: the {excess} expiring soonest forgotten", self.cap);
        }
    }

    pub fn forget(&mut self, name: &str) {
        if self.map.remove(name).is_some() {
            self.changed.insert(name.to_string());
        }
    }

    /// Who holds `name`, if known and not expired.
    pub fn owner(&self, name: &str, now: DateTime<Utc>) -> Option<Owner> {
        let r = self.map.get(name).filter(|r| r.expires_at > now)?;
        Some(Owner {
            name: name.to_string(),
            project: r.project.clone().unwrap_or_else(|| ProjectId::Solo(r.fingerprint.clone())),
            fingerprint: r.fingerprint.clone(),
            model: r.model.clone(),
        })
    }

    /// The known owners of `names`, in order.
    pub fn owners(&self, names: &[String], now: DateTime<Utc>) -> Vec<Owner> {
        names.iter().filter_map(|n| self.owner(n, now)).collect()
    }

    /// Mark the usage of `name` booked; true if it was not before (an interaction's tokens are
    /// counted once, however often it is read).
    pub fn book_once(&mut self, name: &str) -> bool {
        match self.map.get_mut(name) {
            Some(r) if r.booked => false,
            Some(r) => {
                r.booked = true;
                self.changed.insert(name.to_string());
                true
            }
            None => true,
        }
    }

    pub fn is_booked(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|r| r.booked)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn default_ttl_hours(name: &str) -> i64 {
    if name.starts_with("upload:") {
        return UPLOAD_TTL_HOURS;
    }
    if name.starts_with("continuation:") {
        return CONTINUATION_TTL_HOURS;
    }
    let collection = name.split('/').next().unwrap_or("");
    NAMED.iter().chain(OPAQUE.iter()).find(|(c, _)| *c == collection).map_or(48, |(_, h)| *h)
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `collection/id` at the start of `s` for a collection of [`NAMED`] (or `interactions/`).
fn named_at(s: &str) -> Option<String> {
    for collection in NAMED.iter().map(|(c, _)| *c).chain(["interactions"]) {
        if let Some(rest) = s.strip_prefix(collection).and_then(|r| r.strip_prefix('/')) {
            let id: String = rest.chars().take_while(|c| is_id_char(*c)).collect();
            if !id.is_empty() {
                return Some(format!("{collection}/{id}"));
            }
        }
    }
    None
}

/// Does `bytes` hold a `collection/` of [`NAMED`]? (Checked on every generate request and
/// answer: one pass looking at the few slashes.)
pub fn mentions_resource(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'/' && NAMED.iter().any(|(c, _)| bytes[..i].ends_with(c.as_bytes())))
}

/// Collects names, each once, up to [`MAX_REFERENCES`].
#[derive(Default)]
struct Found {
    names: Vec<String>,
    seen: HashSet<String>,
}

impl Found {
    fn push(&mut self, name: String) {
        if self.names.len() < MAX_REFERENCES && self.seen.insert(name.clone()) {
            self.names.push(name);
        }
    }

    /// Every named resource inside `s` (a path, a URI or a bare name), at a boundary. Linear in
    /// `s`: each slash is looked at once (a search restarted at every position was quadratic).
    fn named_in(&mut self, s: &str) {
        let bytes = s.as_bytes();
        for (i, _) in s.match_indices('/') {
            if self.names.len() >= MAX_REFERENCES {
                return;
            }
            for (collection, _) in NAMED.iter().chain(&[("interactions", 0)]) {
                let Some(start) = i.checked_sub(collection.len()) else { continue };
                let boundary = start == 0 || matches!(bytes[start - 1], b'/' | b'"' | b' ');
                if boundary
                    && &bytes[start..i] == collection.as_bytes()
                    && let Some(name) = named_at(&s[start..])
                {
                    self.push(name);
                }
            }
        }
    }
}

/// The collection an opaque id in field `field` belongs to (`previous_interaction_id`,
/// `environment`, `agent`, …, either spelling).
fn opaque_field(field: &str) -> Option<&'static str> {
    let norm: String = field.chars().filter(|c| *c != '_').map(|c| c.to_ascii_lowercase()).collect();
    Some(match norm.as_str() {
        "previousinteractionid" | "interactionid" => "interactions",
        "environment" | "environmentid" | "baseenvironment" | "fromenvironment" => "environments",
        "agent" | "baseagent" => "agents",
        "triggerid" => "triggers",
        "credential" | "credentialid" => "credentials",
        "webhookid" => "webhooks",
        "voice" | "voiceid" => "voices",
        "continuationtoken" => "continuation",
        _ => return None,
    })
}

fn opaque_name(collection: &str, id: &str) -> Option<String> {
    if id.is_empty() || id.len() > MAX_OPAQUE_ID || id.contains(char::is_whitespace) {
        return None;
    }
    Some(match collection {
        "continuation" => format!("continuation:{id}"),
        _ if id.starts_with(&format!("{collection}/")) => id.to_string(),
        _ => format!("{collection}/{id}"),
    })
}

fn walk(v: &Value, field: Option<&str>, opaque: bool, depth: usize, found: &mut Found) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::String(s) => {
            if opaque && let Some(name) = field.and_then(opaque_field).and_then(|c| opaque_name(c, s)) {
                found.push(name);
            }
            found.named_in(s);
        }
        Value::Array(a) => a.iter().for_each(|x| walk(x, field, opaque, depth + 1, found)),
        Value::Object(o) => o.iter().for_each(|(k, x)| walk(x, Some(k), opaque, depth + 1, found)),
        _ => {}
    }
}

/// The API path after `/upload`, `/download` and the version: `["files", "abc:download"]`.
fn api_segments(path: &str) -> Vec<&str> {
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if matches!(segs.first(), Some(&"upload") | Some(&"download")) {
        segs.remove(0);
    }
    let versioned =
        segs.first().is_some_and(|v| v.len() > 1 && v.starts_with('v') && v.as_bytes()[1].is_ascii_digit());
    if !versioned {
        return Vec::new();
    }
    segs.remove(0);
    segs
}

/// The collection a path addresses (`interactions` for `/v1beta/interactions/{id}/cancel`).
pub fn collection(path: &str) -> Option<&str> {
    api_segments(path).first().copied()
}

/// A list route (`GET /{v}/files`): its collection, when the path is exactly a collection that
/// Google lists per project (SPEC §5: files, caches, batches, file search stores; tuned models).
pub fn list_collection(path: &str) -> Option<&'static str> {
    let segs = api_segments(path);
    let [only] = segs.as_slice() else { return None };
    ["files", "cachedContents", "batches", "fileSearchStores", "tunedModels"].into_iter().find(|c| c == only)
}

/// The resource the path itself names: `/v1beta/files/abc:download` → `files/abc`,
/// `/v1beta/interactions/v1_x/cancel` → `interactions/v1_x`.
pub fn path_resource(path: &str) -> Option<String> {
    let segs = api_segments(path);
    let (collection, id) = (segs.first()?, segs.get(1)?);
    let id = id.split(':').next().unwrap_or("");
    if id.is_empty() || !id.chars().all(is_id_char) {
        return None;
    }
    let known = NAMED.iter().chain(OPAQUE.iter()).any(|(c, _)| c == collection);
    known.then(|| format!("{collection}/{id}"))
}

/// Is this a call on a model (`models/{m}:generateContent`, …)? Its body is searched only for
/// named resources, and only when it mentions one: the hot path stays a byte scan.
fn model_call(path: &str) -> bool {
    api_segments(path).first() == Some(&"models")
}

/// Names a request refers to: in its path, its `upload_id`, and its JSON body.
pub fn referenced(path: &str, upload_id: Option<&str>, body: &[u8]) -> Vec<String> {
    let mut found = Found::default();
    if let Some(id) = upload_id {
        found.push(upload_name(id));
    }
    if let Some(name) = path_resource(path) {
        found.push(name);
    }
    if upload_id.is_some() || path.starts_with("/upload/") {
        // An upload's bytes are the file itself (and its start, the file's metadata): never a
        // request about resources, whatever a JSON file may name.
        return found.names;
    }
    let opaque = !model_call(path) && !path.is_empty();
    let worth = if opaque { body.iter().any(|b| !b.is_ascii_whitespace()) } else { mentions_resource(body) };
    if worth && let Ok(v) = serde_json::from_slice::<Value>(body) {
        walk(&v, None, opaque, 0, &mut found);
    }
    found.names
}

/// Names a translated body (OpenAI, Anthropic → generateContent) refers to.
pub fn referenced_in_generate(body: &[u8]) -> Vec<String> {
    referenced("/v1beta/models/m:generateContent", None, body)
}

/// A name an answer created or showed, with the expiry it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub name: String,
    pub expires: Option<DateTime<Utc>>,
}

fn expiry_of(obj: &Value) -> Option<DateTime<Utc>> {
    ["expireTime", "expirationTime", "expire_time"]
        .iter()
        .find_map(|f| obj.get(*f).and_then(Value::as_str))
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The names one object of an answer holds: its `name`, or its `id` in an opaque `collection`,
/// and the fields that name other resources (`responsesFile`, `environment_id`, …).
fn names_of_object(obj: &Value, collection: Option<&str>, out: &mut Vec<Created>) {
    let expires = expiry_of(obj);
    let mut push = |name: Option<String>, expires: Option<DateTime<Utc>>| {
        if let Some(name) = name
            && !out.iter().any(|c| c.name == name)
        {
            out.push(Created { name, expires });
        }
    };
    if let Some(name) = obj.get("name").and_then(Value::as_str) {
        push(named_at(name), expires);
    }
    if let Some(c) = collection.filter(|c| OPAQUE.iter().any(|(o, _)| o == c))
        && let Some(id) = obj.get("id").and_then(Value::as_str)
    {
        push(opaque_name(c, id), None);
    }
    for pointer in
        ["/file/name", "/metadata/output/responsesFile", "/output/responsesFile", "/response/responsesFile"]
            .into_iter()
            .chain(["/metadata/tunedModel", "/response/name", "/dest/fileName"])
    {
        push(obj.pointer(pointer).and_then(Value::as_str).and_then(named_at), None);
    }
    for (field, c) in [
        ("environment_id", "environments"),
        ("environmentId", "environments"),
        ("interaction_id", "interactions"),
        ("continuation_token", "continuation"),
        ("continuationToken", "continuation"),
    ] {
        push(obj.get(field).and_then(Value::as_str).and_then(|id| opaque_name(c, id)), None);
    }
}

/// Names a 2xx answer to `path` created or showed (a created resource, a list's items, a batch's
/// results file, an interaction's id and continuation token). Calls on models create nothing
/// worth a look (the generate path is not parsed twice); their answers are skipped.
pub fn created(path: &str, body: &[u8]) -> Vec<Created> {
    if model_call(path) && !path.contains(":batch") && !path.contains(":asyncBatch") {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return Vec::new() };
    created_in(collection(path), &v)
}

/// [`created`] on a parsed answer (also one event of an Interactions stream).
pub fn created_in(collection: Option<&str>, v: &Value) -> Vec<Created> {
    let mut out = Vec::new();
    let Some(obj) = v.as_object() else { return out };
    names_of_object(v, collection, &mut out);
    if let Some(inner) = obj.get("interaction") {
        names_of_object(inner, Some("interactions"), &mut out);
    }
    // A list: every item of every array at the top.
    for items in obj.values().filter_map(Value::as_array) {
        for item in items.iter().take(10_000) {
            names_of_object(item, collection, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(h: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + h * 3600, 0).unwrap()
    }

    fn p(l: &str) -> ProjectId {
        ProjectId::Label(l.into())
    }

    fn names(c: Vec<Created>) -> Vec<String> {
        c.into_iter().map(|c| c.name).collect()
    }

    #[test]
    fn mentions_are_found_anywhere_and_only_with_the_slash() {
        for yes in [&b"files/a"[..], b"x/cachedContents/", b"\"batches/\"", b"/v1beta/fileSearchStores/s"] {
            assert!(mentions_resource(yes), "{}", String::from_utf8_lossy(yes));
        }
        for no in
            [&b""[..], b"/", b"files", b"file/", b"cachedContent/x", b"/v1beta/models/m:generateContent"]
        {
            assert!(!mentions_resource(no), "{}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn references_in_paths() {
        let table = [
            ("/v1beta/files/abc:download", Some("files/abc")),
            ("/download/v1/files/abc:download", Some("files/abc")),
            ("/v1/batches/b1", Some("batches/b1")),
            ("/v1beta/batches/b1:cancel", Some("batches/b1")),
            ("/v1beta/fileSearchStores/s1/documents/d", Some("fileSearchStores/s1")),
            ("/v1beta/fileSearchStores/s1/operations/op", Some("fileSearchStores/s1")),
            ("/upload/v1beta/fileSearchStores/s1:uploadToFileSearchStore", Some("fileSearchStores/s1")),
            ("/v1beta/tunedModels/t1:generateContent", Some("tunedModels/t1")),
            ("/v1alpha/interactions/v1_abc/cancel", Some("interactions/v1_abc")),
            ("/v1beta/triggers/tr_1/executions", Some("triggers/tr_1")),
            ("/v1beta/environments/e1/files/a/b.txt", Some("environments/e1")),
            ("/upload/v1beta/environments/e1/files/x", Some("environments/e1")),
            ("/v1beta/voices/voice_1", Some("voices/voice_1")),
            ("/v1beta/models/gemini-2.5-flash:generateContent", None),
            ("/v1beta/files", None),
            ("/v1beta/interactions", None),
            ("/healthz", None),
            ("/files/abc", None),
        ];
        for (path, want) in table {
            assert_eq!(path_resource(path).as_deref(), want, "{path}");
        }
        assert_eq!(list_collection("/v1/files"), Some("files"));
        assert_eq!(list_collection("/v1beta/batches"), Some("batches"));
        assert_eq!(list_collection("/v1beta/files/x"), None);
        assert_eq!(list_collection("/v1beta/models"), None);
    }

    #[test]
    fn references_in_bodies_in_both_spellings() {
        let body = json!({"contents":[{"parts":[{"fileData":{"fileUri":"https://generativelanguage.googleapis.com/v1beta/files/abc-1"}},
            {"file_data":{"file_uri":"files/def"}}]}],
            "cachedContent":"cachedContents/xyz_9",
            "tools":[{"fileSearch":{"fileSearchStoreNames":["fileSearchStores/s1"]}},
                     {"file_search":{"file_search_store_names":["fileSearchStores/s2"]}}]});
        let mut found = referenced("/v1beta/models/m:generateContent", None, body.to_string().as_bytes());
        found.sort();
        assert_eq!(
            found,
            [
                "cachedContents/xyz_9",
                "fileSearchStores/s1",
                "fileSearchStores/s2",
                "files/abc-1",
                "files/def"
            ]
        );
        // Opaque ids only count outside model calls, by the field that holds them.
        let body = json!({"model":"gemini-3-flash","input":"hi","previous_interaction_id":"v1_abc",
            "environment":{"environment_id":"env_1"},"agent":"my-agent","text":"files are great"});
        let found = referenced("/v1beta/interactions", None, body.to_string().as_bytes());
        assert_eq!(found, ["agents/my-agent", "environments/env_1", "interactions/v1_abc"]);
        let cont = json!({"continuation_token":"tok123","previousInteractionId":"v1_x"});
        assert_eq!(
            referenced("/v1/interactions", None, cont.to_string().as_bytes()),
            ["continuation:tok123", "interactions/v1_x"]
        );
        assert!(
            referenced("/v1beta/models/m:generateContent", None, br#"{"previous_interaction_id":"v1_abc"}"#)
                .is_empty()
        );
        assert_eq!(referenced("/upload/v1beta/files", Some("U1"), b""), ["upload:U1"]);
        // An upload's bytes are never read as a request (a JSON file may name anything).
        assert_eq!(
            referenced("/upload/v1beta/files", Some("U1"), br#"{"cachedContent":"cachedContents/x"}"#),
            ["upload:U1"]
        );
        assert!(referenced("/v1beta/files", None, b"not json files/").is_empty());
        // A batch's input file, either spelling.
        let batch = json!({"batch":{"input_config":{"file_name":"files/in1"}}});
        assert_eq!(
            referenced("/v1beta/models/m:batchGenerateContent", None, batch.to_string().as_bytes()),
            ["files/in1"]
        );
        let import = json!({"fileName":"files/f9"});
        assert_eq!(
            referenced("/v1beta/fileSearchStores/s1:importFile", None, import.to_string().as_bytes()),
            ["fileSearchStores/s1", "files/f9"]
        );
    }

    #[test]
    fn names_an_answer_creates() {
        let c = |path: &str, v: Value| names(created(path, v.to_string().as_bytes()));
        assert_eq!(c("/upload/v1beta/files", json!({"file":{"name":"files/abc"}})), ["files/abc"]);
        assert_eq!(
            c("/v1beta/cachedContents", json!({"name":"cachedContents/c1","model":"m"})),
            ["cachedContents/c1"]
        );
        assert_eq!(
            c(
                "/v1beta/models/m:batchGenerateContent",
                json!({"name":"batches/b1","metadata":{"state":"PENDING"}})
            ),
            ["batches/b1"]
        );
        assert_eq!(
            c(
                "/v1beta/batches/b1",
                json!({"name":"batches/b1","metadata":{"output":{"responsesFile":"files/out1"}}})
            ),
            ["batches/b1", "files/out1"]
        );
        assert_eq!(
            c(
                "/v1beta/interactions",
                json!({"id":"v1_a","status":"requires_continuation","continuation_token":"ct","environment_id":"e1"})
            ),
            ["interactions/v1_a", "environments/e1", "continuation:ct"]
        );
        assert_eq!(c("/v1beta/voices", json!({"id":"voice_1"})), ["voices/voice_1"]);
        assert_eq!(
            c("/v1beta/triggers/t/executions", json!({"interaction_id":"v1_t"})),
            ["interactions/v1_t"]
        );
        assert_eq!(
            c("/v1beta/files", json!({"files":[{"name":"files/a"},{"name":"files/b"}],"nextPageToken":"x"})),
            ["files/a", "files/b"]
        );
        assert_eq!(
            c("/v1beta/fileSearchStores/s:importFile", json!({"name":"fileSearchStores/s/operations/op1"})),
            ["fileSearchStores/s"]
        );
        assert_eq!(c("/v1alpha/auth_tokens", json!({"name":"auth_tokens/tk"})), ["auth_tokens/tk"]);
        assert!(c("/v1beta/models/m:generateContent", json!({"name":"files/x"})).is_empty());
        assert!(c("/v1beta/cachedContents", json!({"name":"models/x"})).is_empty());
        assert!(created("/v1beta/files", b"garbage").is_empty());
        // An answer's expiry is the entry's.
        let v = json!({"name":"cachedContents/c2","expireTime":"2027-01-01T00:00:00Z"});
        assert_eq!(
            created("/v1beta/cachedContents", v.to_string().as_bytes())[0]
                .expires
                .map(|t| t.to_rfc3339())
                .as_deref(),
            Some("2027-01-01T00:00:00+00:00")
        );
    }

    #[test]
    fn entries_expire_and_pin_by_project() {
        let mut r = Resources::default();
        r.remember("files/abc", &p("a"), "fp1", None, None, t(0));
        r.remember("cachedContents/c", &p("b"), "fp2", None, None, t(0));
        r.remember("interactions/v1_x", &p("a"), "fp3", Some("gemini-3-flash"), None, t(0));
        assert_eq!(r.owner("files/abc", t(47)).map(|o| o.project), Some(p("a")));
        assert_eq!(r.owner("files/abc", t(49)), None);
        assert_eq!(r.owner("cachedContents/c", t(100)).map(|o| o.fingerprint).as_deref(), Some("fp2"));
        let owners = r.owners(&["interactions/v1_x".into(), "files/abc".into()], t(1));
        let pin = Pin::of(&owners).unwrap().unwrap();
        assert_eq!(
            (pin.project, pin.resource.as_str(), pin.fingerprint.as_str()),
            (p("a"), "interactions/v1_x", "fp3")
        );
        assert_eq!(owners[0].model.as_deref(), Some("gemini-3-flash"));
        let two = r.owners(&["files/abc".into(), "cachedContents/c".into()], t(1));
        assert!(Pin::of(&two).is_err());
        assert_eq!(Pin::of(&[]).unwrap(), None);
        // Restored from the file: expired entries dropped; old records without a project get
        // the project of their key.
        let mut records = r.records(t(49));
        assert_eq!(records.len(), 2);
        records.get_mut("cachedContents/c").unwrap().project = None;
        let back = Resources::from_records(&records, t(49), |fp| (fp == "fp2").then(|| p("z")));
        assert_eq!(back.owner("cachedContents/c", t(49)).map(|o| o.project), Some(p("z")));
    }

    #[test]
    fn usage_is_booked_once() {
        let mut r = Resources::default();
        r.remember("interactions/v1", &p("a"), "fp", None, None, t(0));
        assert!(!r.is_booked("interactions/v1"));
        assert!(r.book_once("interactions/v1"));
        assert!(!r.book_once("interactions/v1"));
        // Seen again in a later answer of the same project: still booked.
        r.remember("interactions/v1", &p("a"), "fp", None, None, t(1));
        assert!(r.is_booked("interactions/v1"));
    }

    #[test]
    fn the_table_is_bounded() {
        let mut r = Resources { cap: 1000, ..Resources::default() };
        for i in 0..5000 {
            r.remember(&format!("files/f{i}"), &p("a"), "fp", None, None, t(i / 100));
        }
        assert!(r.len() <= 1000, "{}", r.len());
        assert!(r.owner("files/f4999", t(49)).is_some(), "the latest entries stay");
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
        let _ = referenced("/v1beta/x", None, body.as_bytes());
    }
}
