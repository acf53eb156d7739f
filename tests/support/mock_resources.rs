//! The mock's server-side resources, each owned by a Cloud project as at Google: files (uploaded
//! and generated), cached contents, batches, file search stores with their documents and
//! operations, and the store the Interactions family (`mock_interactions.rs`) keeps its own in.
//!
//! Any key of the owning project may use a resource. A key of another project gets what Google
//! answers: 403 `PERMISSION_DENIED` for files and cached contents, 404 `NOT_FOUND` ("`{name}` not
//! found.") for everything else. Lists (`GET /{v}/files`, `cachedContents`, `batches`,
//! `fileSearchStores`, `…/documents`) show only the caller's project, in creation order, `pageSize`
//! (default `set_list_page_size`, 10) per page; `nextPageToken` only when more remain; an
//! unknown `pageToken` is a 400. An empty page omits its field, as proto3 JSON does.

use super::{
    CREATE_TIME, Call, EXPIRE_TIME, Reply, State, Upload, answer_generate, cache_denied, count_words,
    embedding, file_denied, google_error_reply, invalid_argument, not_found_404, route_not_found,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

const END_TIME: &str = "2025-01-01T00:05:00.000000Z";
const TYPE_PREFIX: &str = "type.googleapis.com/google.ai.generativelanguage.v1main.";

// ---- The store -----------------------------------------------------------------------------------

pub(super) struct Entry {
    /// Creation order; page tokens point at it.
    pub(super) serial: u64,
    /// The resource name: `files/abc`, `fileSearchStores/s/documents/d`, `interactions/v1_…`.
    pub(super) name: String,
    pub(super) project: String,
    /// What a GET answers.
    pub(super) value: Value,
    /// The mock's own bookkeeping (file bytes, batch requests, interaction turn, …).
    pub(super) meta: Value,
}

/// Every resource of every project, in creation order.
#[derive(Default)]
pub(super) struct Resources {
    entries: BTreeMap<u64, Entry>,
    names: HashMap<String, u64>,
    serial: u64,
}

impl Resources {
    pub(super) fn insert(&mut self, name: &str, project: &str, value: Value, meta: Value) {
        self.remove(name);
        self.serial += 1;
        self.names.insert(name.to_string(), self.serial);
        let entry =
            Entry { serial: self.serial, name: name.to_string(), project: project.to_string(), value, meta };
        self.entries.insert(self.serial, entry);
    }

    pub(super) fn get(&self, name: &str) -> Option<&Entry> {
        self.names.get(name).and_then(|serial| self.entries.get(serial))
    }

    pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        let serial = self.names.get(name)?;
        self.entries.get_mut(serial)
    }

    /// The resource if `project` owns it.
    pub(super) fn owned(&self, name: &str, project: &str) -> Option<&Entry> {
        self.get(name).filter(|e| e.project == project)
    }

    pub(super) fn owned_mut(&mut self, name: &str, project: &str) -> Option<&mut Entry> {
        let serial = self.names.get(name)?;
        self.entries.get_mut(serial).filter(|e| e.project == project)
    }

    pub(super) fn remove(&mut self, name: &str) -> Option<Entry> {
        self.names.remove(name).and_then(|serial| self.entries.remove(&serial))
    }

    /// `project`'s resources directly under `parent` (`files`, `fileSearchStores/s/documents`)
    /// created after `after`, in creation order.
    fn children<'a>(
        &'a self,
        parent: &'a str,
        project: &'a str,
        after: u64,
    ) -> impl Iterator<Item = &'a Entry> {
        self.entries.range(after + 1..).map(|(_, e)| e).filter(move |e| {
            e.project == project
                && e.name
                    .strip_prefix(parent)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|id| !id.contains('/'))
        })
    }

    fn remove_under(&mut self, prefix: &str) {
        let names: Vec<String> = self.names.keys().filter(|n| n.starts_with(prefix)).cloned().collect();
        for name in names {
            self.remove(&name);
        }
    }
}

pub(super) fn not_found(name: &str) -> Reply {
    not_found_404(&format!("{name} not found."))
}

/// `a` or, in the other spelling, `b` (`fileName` / `file_name`).
pub(super) fn field<'a>(value: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    value.get(a).or_else(|| value.get(b))
}

/// A GET of a resource of the caller's project, else 404.
pub(super) fn get_named(c: &Call, name: &str) -> Reply {
    match c.shared.lock().res.owned(name, &c.project) {
        Some(entry) => Reply::json(200, entry.value.clone()),
        None => not_found(name),
    }
}

/// A DELETE of a resource of the caller's project (and of everything under it): `{}`, else 404.
pub(super) fn delete_named(c: &Call, name: &str) -> Reply {
    let mut state = c.shared.lock();
    if state.res.owned(name, &c.project).is_none() {
        return not_found(name);
    }
    state.res.remove(name);
    state.res.remove_under(&format!("{name}/"));
    Reply::json(200, json!({}))
}

fn page_token(serial: u64) -> String {
    format!("mock-page-{serial}")
}

/// One page of `project`'s resources under `parent`, in field `field`; `snake` names the next
/// token `next_page_token` (the Interactions family) instead of `nextPageToken`.
pub(super) fn list(c: &Call, parent: &str, field: &str, snake: bool) -> Reply {
    let param = |names: [&str; 2]| names.iter().find_map(|n| c.rec.query_param(n)).filter(|v| !v.is_empty());
    let state = c.shared.lock();
    let size = match param(["pageSize", "page_size"]) {
        None => state.list_page_size,
        Some(s) => match s.parse::<u64>() {
            Ok(0) => state.list_page_size,
            Ok(n) => n.min(1000) as usize,
            Err(_) => return invalid_argument(&format!("Invalid page size: {s}.")),
        },
    };
    let after = match param(["pageToken", "page_token"]) {
        None => 0,
        Some(token) => match token.strip_prefix("mock-page-").and_then(|n| n.parse::<u64>().ok()) {
            Some(serial) => serial,
            None => return invalid_argument("Invalid page token."),
        },
    };
    let mut entries = state.res.children(parent, &c.project, after);
    let page: Vec<&Entry> = entries.by_ref().take(size).collect();
    let mut body = json!({});
    if !page.is_empty() {
        body[field] = page.iter().map(|e| e.value.clone()).collect();
    }
    if entries.next().is_some()
        && let Some(last) = page.last()
    {
        body[if snake { "next_page_token" } else { "nextPageToken" }] = json!(page_token(last.serial));
    }
    Reply::json(200, body)
}

// ---- References inside requests ------------------------------------------------------------------

/// The resources a request body names.
#[derive(Default)]
struct Refs {
    caches: Vec<String>,
    files: Vec<String>,
    stores: Vec<String>,
}

/// The id of a file named by a URI of the API (`…/v1beta/files/abc`) or by name (`files/abc`).
fn file_id(uri: &str, any_host: bool) -> Option<String> {
    let api = ["/v1/files/", "/v1beta/files/", "/v1alpha/files/", "/v1main/files/"];
    let rest = uri
        .strip_prefix("files/")
        .or_else(|| api.iter().find_map(|p| uri.split_once(p).map(|(_, r)| r)))
        .or_else(|| any_host.then(|| uri.rsplit_once("/files/").map(|(_, r)| r)).flatten())?;
    let id = rest.split(['?', '#', ':']).next().unwrap_or_default();
    (!id.is_empty()).then(|| id.to_string())
}

fn collect_refs(value: &Value, refs: &mut Refs) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("fileUri" | "file_uri", Value::String(s)) => refs.files.extend(file_id(s, true)),
                    ("uri", Value::String(s)) => refs.files.extend(file_id(s, false)),
                    ("fileSearchStoreNames" | "file_search_store_names", Value::Array(names)) => {
                        refs.stores.extend(names.iter().filter_map(Value::as_str).map(str::to_string))
                    }
                    _ => collect_refs(v, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// A request may only name the caller's project's cached content (`cachedContent` /
/// `cached_content`: else 403), files (`fileUri` / `file_uri`, content `uri`: else 403) and file
/// search stores (`fileSearchStoreNames` / `file_search_store_names`: else 404). Returns the stores.
pub(super) fn check_references(state: &State, project: &str, body: &Value) -> Result<Vec<String>, Reply> {
    let mut refs = Refs::default();
    if let Some(cache) = field(body, "cachedContent", "cached_content").and_then(Value::as_str) {
        refs.caches.push(cache.trim_start_matches("cachedContents/").to_string());
    }
    collect_refs(body, &mut refs);
    if refs.caches.iter().any(|id| state.res.owned(&format!("cachedContents/{id}"), project).is_none()) {
        return Err(cache_denied());
    }
    if let Some(id) = refs.files.iter().find(|id| state.res.owned(&format!("files/{id}"), project).is_none())
    {
        return Err(file_denied(id));
    }
    let stores: Vec<String> = refs
        .stores
        .iter()
        .map(|s| format!("fileSearchStores/{}", s.trim_start_matches("fileSearchStores/")))
        .collect();
    match stores.iter().find(|s| state.res.owned(s, project).is_none()) {
        Some(missing) => Err(not_found(missing)),
        None => Ok(stores),
    }
}

/// How an answer grounded in file search stores says so: ` (grounded in fileSearchStores/a)`.
pub(super) fn grounding_note(stores: &[String]) -> String {
    if stores.is_empty() { String::new() } else { format!(" (grounded in {})", stores.join(", ")) }
}

// ---- Routes ----------------------------------------------------------------------------------------

/// The resource routes (after `/{v}/`); `None` for a path that is none of them.
pub(super) fn route(c: &Call, segments: &[&str]) -> Option<Reply> {
    let method = c.rec.method.as_str();
    Some(match (method, segments) {
        ("GET", ["files"]) => list(c, "files", "files", false),
        ("GET", ["files", file]) if file.ends_with(":download") => download(c, file),
        ("GET" | "DELETE", ["files", id]) if !id.contains(':') => file_op(c, id),
        ("POST", ["cachedContents"]) => create_cache(c),
        ("GET", ["cachedContents"]) => list(c, "cachedContents", "cachedContents", false),
        ("GET" | "PATCH" | "DELETE", ["cachedContents", id]) => cache_op(c, id),
        ("GET", ["batches"]) => list(c, "batches", "operations", false),
        ("GET", ["batches", id]) if !id.contains(':') => get_batch(c, id),
        ("DELETE", ["batches", id]) if !id.contains(':') => delete_named(c, &format!("batches/{id}")),
        ("POST", ["batches", call]) => cancel_batch(c, call.strip_suffix(":cancel")?),
        ("POST", ["fileSearchStores"]) => create_store(c),
        ("GET", ["fileSearchStores"]) => list(c, "fileSearchStores", "fileSearchStores", false),
        ("GET", ["fileSearchStores", s]) if !s.contains(':') => {
            get_named(c, &format!("fileSearchStores/{s}"))
        }
        ("DELETE", ["fileSearchStores", s]) if !s.contains(':') => delete_store(c, s),
        ("POST", ["fileSearchStores", call]) => import_file(c, call.strip_suffix(":importFile")?),
        ("GET", ["fileSearchStores", s, "documents"]) => {
            let store = format!("fileSearchStores/{s}");
            if c.shared.lock().res.owned(&store, &c.project).is_none() {
                return Some(not_found(&store));
            }
            list(c, &format!("{store}/documents"), "documents", false)
        }
        ("GET", ["fileSearchStores", _, "documents", _])
        | ("GET", ["fileSearchStores", _, "operations", _])
        | ("GET", ["fileSearchStores", _, "upload", "operations", _]) => get_named(c, &segments.join("/")),
        ("DELETE", ["fileSearchStores", s, "documents", _]) => delete_document(c, s, &segments.join("/")),
        _ => return None,
    })
}

// ---- Files -----------------------------------------------------------------------------------------

fn file_json(url: &str, id: &str, mime: &str, size: usize, generated: bool) -> Value {
    let mut file = json!({"name": format!("files/{id}"), "mimeType": mime,
        "sizeBytes": size.to_string(), "createTime": CREATE_TIME,
        "updateTime": CREATE_TIME, "expirationTime": EXPIRE_TIME,
        "uri": format!("{url}/v1beta/files/{id}"), "state": "ACTIVE",
        "source": if generated { "GENERATED" } else { "UPLOADED" }});
    if generated {
        file["downloadUri"] = json!(format!("{url}/v1beta/files/{id}:download?alt=media"));
    }
    file
}

pub(super) fn seed_file(shared: &super::Shared, project: &str, id: &str) -> String {
    let file = file_json(&shared.url(), id, "text/plain", 0, false);
    let name = format!("files/{id}");
    shared.lock().res.insert(&name, project, file, json!({"text": ""}));
    name
}

/// The answer to the last chunk of an upload: `{"file": File}`, or for a file search store the
/// operation that made its document.
pub(super) fn finish_upload(state: &mut State, url: &str, upload: Upload) -> Value {
    let text = String::from_utf8_lossy(&upload.received).into_owned();
    let size = upload.received.len();
    let Some(store) = upload.store else {
        let id = state.fresh("mockfile");
        let mut file = file_json(url, &id, &upload.mime_type, size, false);
        if let Some(name) = upload.display_name {
            file["displayName"] = json!(name);
        }
        state.res.insert(&format!("files/{id}"), &upload.project, file.clone(), json!({"text": text}));
        return json!({"file": file});
    };
    let display = upload.display_name.unwrap_or_else(|| "upload".to_string());
    let document = add_document(state, &store, &upload.project, &display, &upload.mime_type, size);
    let name = format!("{store}/upload/operations/{}", state.fresh("mockop"));
    let op = json!({"name": name, "done": true, "response": {
        "@type": format!("{TYPE_PREFIX}UploadToFileSearchStoreResponse"),
        "parent": store, "documentName": document}});
    state.res.insert(&name, &upload.project, op.clone(), json!({}));
    op
}

fn file_op(c: &Call, id: &str) -> Reply {
    let name = format!("files/{id}");
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned(&name, &c.project) else {
        return file_denied(id);
    };
    if c.rec.method == "GET" {
        return Reply::json(200, entry.value.clone());
    }
    state.res.remove(&name);
    Reply::json(200, json!({}))
}

/// `files/{id}:download?alt=media` (also under `/download/{v}/`): the bytes of a generated file
/// of the caller's project. Uploaded files can't be downloaded (400), as at Google.
pub(super) fn download(c: &Call, file: &str) -> Reply {
    let Some(id) = file.strip_suffix(":download") else {
        return route_not_found();
    };
    if c.rec.query_param("alt").as_deref() != Some("media") {
        return invalid_argument("Downloading a file needs alt=media.");
    }
    let state = c.shared.lock();
    let Some(entry) = state.res.owned(&format!("files/{id}"), &c.project) else {
        return file_denied(id);
    };
    if entry.value["source"] != "GENERATED" {
        return invalid_argument(&format!(
            "Only generated files can be downloaded; files/{id} was uploaded."
        ));
    }
    let mime = entry.value["mimeType"].as_str().unwrap_or("application/octet-stream").to_string();
    let body = entry.meta["text"].as_str().unwrap_or_default().as_bytes().to_vec();
    Reply::Http { status: 200, headers: vec![("Content-Type".into(), mime)], body }
}

// ---- Cached contents -------------------------------------------------------------------------------

fn cache_json(id: &str, model: &str, tokens: u64) -> Value {
    json!({"name": format!("cachedContents/{id}"),
        "model": format!("models/{}", model.trim_start_matches("models/")),
        "createTime": CREATE_TIME, "updateTime": CREATE_TIME, "expireTime": EXPIRE_TIME,
        "usageMetadata": {"totalTokenCount": tokens}})
}

pub(super) fn seed_cache(shared: &super::Shared, project: &str, id: &str) -> String {
    let name = format!("cachedContents/{id}");
    shared.lock().res.insert(&name, project, cache_json(id, "gemini-2.5-flash", 1), json!({}));
    name
}

fn create_cache(c: &Call) -> Reply {
    let Some(model) = c.body.get("model").and_then(Value::as_str) else {
        return invalid_argument("* CachedContent.model: model is required");
    };
    let mut state = c.shared.lock();
    if let Err(denied) = check_references(&state, &c.project, &c.body) {
        return denied;
    }
    let id = state.fresh("mockcache");
    let mut cache = cache_json(&id, model, count_words(&c.body).max(1));
    if let Some(name) = c.body.get("displayName") {
        cache["displayName"] = name.clone();
    }
    state.res.insert(&format!("cachedContents/{id}"), &c.project, cache.clone(), json!({}));
    Reply::json(200, cache)
}

/// GET, PATCH (`expireTime`, or a `ttl` that the mock only acknowledges) or DELETE of a cache.
fn cache_op(c: &Call, id: &str) -> Reply {
    let name = format!("cachedContents/{id}");
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned_mut(&name, &c.project) else {
        return cache_denied();
    };
    match c.rec.method.as_str() {
        "GET" => Reply::json(200, entry.value.clone()),
        "PATCH" => {
            if let Some(expire) = c.body.get("expireTime") {
                entry.value["expireTime"] = expire.clone();
            }
            entry.value["updateTime"] = json!(END_TIME);
            Reply::json(200, entry.value.clone())
        }
        _ => {
            state.res.remove(&name);
            Reply::json(200, json!({}))
        }
    }
}

// ---- Batches ---------------------------------------------------------------------------------------

/// The requests of a batch input file: JSONL lines `{"key", "request"}`; a file without
/// content (seeded) counts as one request.
fn file_requests(entry: &Entry) -> Vec<Value> {
    let text = entry.meta["text"].as_str().unwrap_or_default();
    let mut requests: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let line: Value = serde_json::from_str(line).unwrap_or(json!({}));
            let key = line.get("key").cloned().unwrap_or(json!(format!("request-{}", i + 1)));
            json!({"key": key, "request": line.get("request").cloned().unwrap_or(line)})
        })
        .collect();
    if requests.is_empty() {
        requests.push(json!({"key": "request-1", "request": {"contents": [{"parts": [{"text": "Hello"}]}]}}));
    }
    requests
}

/// `POST /{v}/models/{m}:batchGenerateContent` (or `:asyncBatchEmbedContent` when `embed`):
/// `{"batch": {displayName, inputConfig: {fileName} | {requests: {requests: [{request, metadata}]}}}}`
/// in either spelling. The input file and whatever the inline requests name must be the caller's.
pub(super) fn create_batch(c: &Call, model: &str, embed: bool) -> Reply {
    let Some(batch) = c.body.get("batch") else {
        return invalid_argument("* BatchGenerateContentRequest.batch: batch is required");
    };
    let Some(input) = field(batch, "inputConfig", "input_config") else {
        return invalid_argument("* GenerateContentBatch.input_config: input_config is required");
    };
    let mut state = c.shared.lock();
    let file = field(input, "fileName", "file_name").and_then(Value::as_str);
    let requests = if let Some(file) = file {
        let id = file.trim_start_matches("files/");
        match state.res.owned(&format!("files/{id}"), &c.project) {
            Some(entry) => file_requests(entry),
            None => return file_denied(id),
        }
    } else if let Some(items) = input.pointer("/requests/requests").and_then(Value::as_array) {
        for item in items {
            if let Err(denied) = check_references(&state, &c.project, &item["request"]) {
                return denied;
            }
        }
        items.clone()
    } else {
        return invalid_argument(
            "* GenerateContentBatch.input_config: one of file_name or requests is required",
        );
    };
    let id = state.fresh("mockbatch");
    let name = format!("batches/{id}");
    let count = requests.len().to_string();
    let kind = if embed { "EmbedContentBatch" } else { "GenerateContentBatch" };
    let mut metadata = json!({"@type": format!("{TYPE_PREFIX}{kind}"), "name": name,
        "model": format!("models/{model}"), "inputConfig": input,
        "createTime": CREATE_TIME, "updateTime": CREATE_TIME, "state": "BATCH_STATE_PENDING",
        "batchStats": {"requestCount": count, "pendingRequestCount": count}});
    if let Some(display) = field(batch, "displayName", "display_name") {
        metadata["displayName"] = display.clone();
    }
    let op = json!({"name": name, "metadata": metadata});
    let meta = json!({"model": model, "embed": embed, "file": file.is_some(), "requests": requests});
    state.res.insert(&name, &c.project, op.clone(), meta);
    Reply::json(200, op)
}

/// A batch is done by the time anyone asks: the first GET runs it.
fn get_batch(c: &Call, id: &str) -> Reply {
    let name = format!("batches/{id}");
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned(&name, &c.project) else {
        return not_found(&name);
    };
    if entry.value.pointer("/metadata/state").and_then(Value::as_str) == Some("BATCH_STATE_PENDING") {
        run_batch(&mut state, &c.shared.url(), &name);
    }
    Reply::json(200, state.res.get(&name).map_or(Value::Null, |e| e.value.clone()))
}

/// One result: `{"response": …}` (with `usageMetadata`) or `{"error": …}`.
fn batch_result(state: &mut State, model: &str, embed: bool, request: &Value) -> Value {
    if embed {
        return json!({"response": {"embedding": embedding(request)}});
    }
    let id = state.fresh("mock-response-");
    match answer_generate(model, &id, request, count_words(request).max(1), "") {
        Reply::Json { status: 200, body } => json!({"response": body}),
        Reply::Json { body, .. } => json!({"error": body["error"]}),
        _ => json!({"error": {"code": 500, "message": "internal"}}),
    }
}

fn run_batch(state: &mut State, url: &str, name: &str) {
    let Some(entry) = state.res.get(name) else { return };
    let (project, meta) = (entry.project.clone(), entry.meta.clone());
    let model = meta["model"].as_str().unwrap_or_default();
    let embed = meta["embed"] == true;
    let requests = meta["requests"].as_array().cloned().unwrap_or_default();
    let results: Vec<Value> =
        requests.iter().map(|r| batch_result(state, model, embed, &r["request"])).collect();
    let ok = results.iter().filter(|r| r.get("response").is_some()).count();
    let output = if meta["file"] == true {
        let lines: String = requests
            .iter()
            .zip(&results)
            .map(|(r, result)| {
                let mut line = json!({"key": r["key"]});
                line.as_object_mut()
                    .into_iter()
                    .for_each(|l| l.extend(result.as_object().cloned().unwrap_or_default()));
                format!("{line}\n")
            })
            .collect();
        let id = state.fresh("mockfile");
        let mut file = file_json(url, &id, "application/jsonl", lines.len(), true);
        file["displayName"] = json!(format!("{name} results"));
        state.res.insert(&format!("files/{id}"), &project, file, json!({"text": lines}));
        json!({"responsesFile": format!("files/{id}")})
    } else {
        let inlined: Vec<Value> = requests
            .iter()
            .zip(results)
            .map(|(r, mut result)| {
                if let Some(m) = r.get("metadata") {
                    result["metadata"] = m.clone();
                }
                result
            })
            .collect();
        json!({"inlinedResponses": {"inlinedResponses": inlined}})
    };
    let Some(entry) = state.res.get_mut(name) else { return };
    let kind = if embed { "EmbedContentBatchOutput" } else { "GenerateContentBatchOutput" };
    let metadata = &mut entry.value["metadata"];
    metadata["state"] = json!("BATCH_STATE_SUCCEEDED");
    metadata["updateTime"] = json!(END_TIME);
    metadata["endTime"] = json!(END_TIME);
    metadata["output"] = output.clone();
    metadata["batchStats"] = json!({"requestCount": requests.len().to_string(),
        "successfulRequestCount": ok.to_string(), "failedRequestCount": (requests.len() - ok).to_string()});
    let mut response = output;
    response["@type"] = json!(format!("{TYPE_PREFIX}{kind}"));
    entry.value["done"] = json!(true);
    entry.value["response"] = response;
}

/// `batches/{id}:cancel`: a pending batch becomes `BATCH_STATE_CANCELLED`; answers `{}`.
fn cancel_batch(c: &Call, id: &str) -> Reply {
    let name = format!("batches/{id}");
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned_mut(&name, &c.project) else {
        return not_found(&name);
    };
    if entry.value["metadata"]["state"] == "BATCH_STATE_PENDING" {
        entry.value["metadata"]["state"] = json!("BATCH_STATE_CANCELLED");
        entry.value["metadata"]["endTime"] = json!(END_TIME);
        entry.value["done"] = json!(true);
    }
    Reply::json(200, json!({}))
}

// ---- File search stores ----------------------------------------------------------------------------

fn store_json(id: &str, display: Option<&Value>) -> Value {
    let mut store = json!({"name": format!("fileSearchStores/{id}"),
        "createTime": CREATE_TIME, "updateTime": CREATE_TIME});
    if let Some(display) = display {
        store["displayName"] = display.clone();
    }
    store
}

pub(super) fn seed_store(shared: &super::Shared, project: &str, id: &str) -> String {
    let name = format!("fileSearchStores/{id}");
    shared.lock().res.insert(&name, project, store_json(id, None), json!({}));
    name
}

/// `fileSearchStores/{s}` if the caller's project owns it, else the 404 to answer.
pub(super) fn owned_store(shared: &super::Shared, project: &str, store: &str) -> Result<String, Reply> {
    let name = format!("fileSearchStores/{}", store.trim_start_matches("fileSearchStores/"));
    match shared.lock().res.owned(&name, project) {
        Some(_) => Ok(name),
        None => Err(not_found(&name)),
    }
}

/// `{displayName}` → a store named after it, like Google: `fileSearchStores/{slug}-{suffix}`.
fn create_store(c: &Call) -> Reply {
    let display = field(&c.body, "displayName", "display_name");
    let slug: String = display
        .and_then(Value::as_str)
        .unwrap_or("store")
        .to_ascii_lowercase()
        .chars()
        .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
        .take(27)
        .collect();
    let mut state = c.shared.lock();
    let id = format!("{}-{}", slug.trim_matches('-'), state.fresh("mock"));
    let store = store_json(&id, display);
    state.res.insert(&format!("fileSearchStores/{id}"), &c.project, store.clone(), json!({}));
    Reply::json(200, store)
}

/// A non-empty store is deleted only with `?force=true` (else 400 `FAILED_PRECONDITION`).
fn delete_store(c: &Call, s: &str) -> Reply {
    let name = format!("fileSearchStores/{s}");
    let documents = {
        let state = c.shared.lock();
        state.res.children(&format!("{name}/documents"), &c.project, 0).count()
    };
    // The SDK sends Python's `force=True`.
    let force = c.rec.query_param("force").is_some_and(|f| f.eq_ignore_ascii_case("true") || f == "1");
    if documents > 0 && !force {
        let message = format!("{name} has {documents} documents; delete it with force=true.");
        return google_error_reply(400, "FAILED_PRECONDITION", &message);
    }
    delete_named(c, &name)
}

fn bump(value: &mut Value, field: &str, by: i64) {
    let now = value[field].as_str().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    value[field] = json!((now + by).max(0).to_string());
}

/// A document of `store` (active at once); returns its name.
fn add_document(
    state: &mut State,
    store: &str,
    project: &str,
    display: &str,
    mime: &str,
    size: usize,
) -> String {
    let name = format!("{store}/documents/{}", state.fresh("mockdoc"));
    let document = json!({"name": name, "displayName": display, "state": "STATE_ACTIVE",
        "sizeBytes": size.to_string(), "mimeType": mime, "createTime": CREATE_TIME, "updateTime": CREATE_TIME});
    state.res.insert(&name, project, document, json!({}));
    if let Some(entry) = state.res.owned_mut(store, project) {
        bump(&mut entry.value, "activeDocumentsCount", 1);
        bump(&mut entry.value, "sizeBytes", size as i64);
    }
    name
}

/// `fileSearchStores/{s}:importFile` with `{fileName}` (either spelling): the store and the file
/// must both be the caller's. Answers a finished operation naming the new document.
fn import_file(c: &Call, s: &str) -> Reply {
    let store = format!("fileSearchStores/{s}");
    let Some(file) = field(&c.body, "fileName", "file_name").and_then(Value::as_str) else {
        return invalid_argument("* ImportFileRequest.file_name: file_name is required");
    };
    let id = file.trim_start_matches("files/");
    let mut state = c.shared.lock();
    if state.res.owned(&store, &c.project).is_none() {
        return not_found(&store);
    }
    let Some(file) = state.res.owned(&format!("files/{id}"), &c.project) else {
        return file_denied(id);
    };
    let display = file.value.get("displayName").and_then(Value::as_str).unwrap_or(id).to_string();
    let mime = file.value["mimeType"].as_str().unwrap_or("text/plain").to_string();
    let size = file.value["sizeBytes"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let document = add_document(&mut state, &store, &c.project, &display, &mime, size);
    let name = format!("{store}/operations/{}", state.fresh("mockop"));
    let op = json!({"name": name, "done": true, "response": {
        "@type": format!("{TYPE_PREFIX}ImportFileResponse"), "parent": store, "documentName": document}});
    state.res.insert(&name, &c.project, op.clone(), json!({}));
    Reply::json(200, op)
}

fn delete_document(c: &Call, s: &str, name: &str) -> Reply {
    let answer = delete_named(c, name);
    if matches!(answer, Reply::Json { status: 200, .. })
        && let Some(store) = c.shared.lock().res.owned_mut(&format!("fileSearchStores/{s}"), &c.project)
    {
        bump(&mut store.value, "activeDocumentsCount", -1);
    }
    answer
}
