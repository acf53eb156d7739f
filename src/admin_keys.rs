//! `/admin/keys` (SPEC §13): list, add (validated with one models.list each), disable, enable and
//! remove keys at run time; each change is written to the key file atomically (temporary file,
//! fsync, rename; comments and order kept) and applied as a reload is. Also the dashboard's
//! admin section (the clients table, plain HTML forms for disable/enable) and the cross-site
//! guard of every admin change.
//!
//! A key disabled here is kept in the key file as a comment, `#disabled KEY [PROJECT]`, so that
//! the change survives a restart and a hand edit sees it; the pool does not hold it, and this
//! module lists it. The rewrite is a pure function of the file's text (`edit`); the write never
//! holds the pool lock, and no network call happens while the key-edit lock is held. A hand edit
//! that lands while a change is being written is never lost: the file is read again just before
//! the rename, and a changed file starts the edit over from its new text.

use std::path::Path;

use chrono::Utc;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ProxyError, Reply};
use crate::keyfile::{self, KeySpec};
use crate::quota::Outcome;
use crate::router::{AdminKeys, Presented};
use crate::server::Exchange;
use crate::status::StatusView;

/// How a key disabled through `/admin/keys` is written in the key file.
pub const DISABLED_MARK: &str = "#disabled ";

/// Largest `POST /admin/keys` body.
const MAX_ADD_BODY: u64 = 1 << 20;

/// Serializes the changes to the key file; holds the per-process token of the dashboard's forms.
pub struct KeyEdits {
    lock: Mutex<()>,
    csrf: String,
}

impl Default for KeyEdits {
    fn default() -> KeyEdits {
        use sha2::Digest;
        use std::hash::{BuildHasher, Hasher};
        // Two independently seeded SipHash states: 128 random bits from the OS, per process.
        let mut seed = Vec::new();
        for i in 0..2u64 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos(),
            );
            seed.extend_from_slice(&h.finish().to_le_bytes());
        }
        let digest = sha2::Sha256::digest(&seed);
        KeyEdits { lock: Mutex::new(()), csrf: digest.iter().take(16).map(|b| format!("{b:02x}")).collect() }
    }
}

/// One change to the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Add(Vec<KeySpec>),
    Disable(String),
    Enable(String),
    Remove(String),
}

/// The key of a key-file line and whether it is disabled by `/admin/keys`; `None` for blanks and
/// other comments.
fn line_key(line: &str) -> Option<(bool, &str)> {
    let t = line.trim_start_matches('\u{feff}').trim();
    if let Some(rest) = t.strip_prefix(DISABLED_MARK) {
        return rest.split_whitespace().next().map(|k| (true, k));
    }
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    t.split_whitespace().next().map(|k| (false, k))
}

/// The keys disabled through `/admin/keys` in key-file text, in file order.
pub fn disabled_keys(text: &str) -> Vec<KeySpec> {
    text.lines()
        .filter_map(|l| {
            let (true, key) = line_key(l)? else { return None };
            let rest = l.trim().strip_prefix(DISABLED_MARK).unwrap_or("");
            let project = rest.split_whitespace().nth(1).filter(|p| !p.starts_with('#'));
            Some(KeySpec::new(key, project))
        })
        .collect()
}

/// The keys disabled through `/admin/keys` in the key file (none when it cannot be read).
pub fn disabled_in_file(path: &Path) -> Vec<KeySpec> {
    std::fs::read_to_string(path).map(|t| disabled_keys(&t)).unwrap_or_default()
}

/// Apply `edit` to key-file text: every other line, comment and blank stays as it is, in order.
/// `Err` with a 404 when the key to change is not in the file.
pub fn edit(text: &str, edit: &Edit) -> Result<String, ProxyError> {
    let not_found = |id: &str| ProxyError::NotFound { message: format!("no key {id} in the key file") };
    let is = |id: &str, key: &str| keyfile::fingerprint(key) == id;
    let mut out = String::with_capacity(text.len() + 128);
    let mut found = false;
    match edit {
        Edit::Add(keys) => {
            out.push_str(text);
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            for k in keys {
                out.push_str(&k.key);
                if let Some(p) = &k.project {
                    out.push(' ');
                    out.push_str(p);
                }
                out.push('\n');
            }
            return Ok(out);
        }
        Edit::Disable(id) | Edit::Enable(id) | Edit::Remove(id) => {
            for line in text.split_inclusive('\n') {
                let Some((disabled, key)) = line_key(line).filter(|(_, k)| !found && is(id, k)) else {
                    out.push_str(line);
                    continue;
                };
                found = true;
                match (edit, disabled) {
                    (Edit::Remove(_), _) => {}
                    (Edit::Disable(_), false) => {
                        out.push_str(DISABLED_MARK);
                        out.push_str(line.trim_start());
                    }
                    (Edit::Enable(_), true) => {
                        let start = line.find(DISABLED_MARK).map(|i| i + DISABLED_MARK.len()).unwrap_or(0);
                        out.push_str(&line[start..]);
                    }
                    _ => out.push_str(line),
                }
                let _ = key;
            }
            if !found {
                return Err(not_found(id));
            }
        }
    }
    Ok(out)
}

/// Rewrite the key file with `change` (applied to its current text) atomically, then reload it.
/// A change that would leave no key is refused; a file changed by someone else between the read
/// and the rename is read again and the change applied to that.
fn rewrite(app: &App, change: &Edit) -> Result<(), ProxyError> {
    let path = &app.config.key_file;
    let io = |what: &str, e: std::io::Error| ProxyError::Internal {
        message: format!("cannot {what} the key file {}: {e}", path.display()),
    };
    let guard = app.key_edits.lock.lock();
    let mut written = false;
    for _ in 0..20 {
        let before = std::fs::read(path).map_err(|e| io("read", e))?;
        let text = String::from_utf8(before.clone())
            .map_err(|_| ProxyError::Internal { message: "the key file is not UTF-8".into() })?;
        let after = edit(&text, change)?;
        if after == text {
            written = true;
            break;
        }
        if keyfile::parse(&after).keys.is_empty() {
            return Err(ProxyError::Forbidden {
                message: "refused: the change would leave the key file without any key".into(),
            });
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.admin-{}", std::process::id()));
        write_synced(&tmp, after.as_bytes(), path).map_err(|e| io("write", e))?;
        // Someone (an editor, a script) changed the file since it was read: start again from theirs.
        if std::fs::read(path).map_err(|e| io("read", e))? != before {
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        std::fs::rename(&tmp, path).map_err(|e| io("replace", e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        written = true;
        break;
    }
    drop(guard);
    if !written {
        return Err(ProxyError::Internal { message: "the key file kept changing; nothing written".into() });
    }
    crate::background::reload_keys(app, "admin change").map_err(|message| ProxyError::Internal { message })
}

/// Write `bytes` to `tmp` with the permissions of `like`, and fsync it.
fn write_synced(tmp: &Path, bytes: &[u8], like: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(bytes)?;
    if let Ok(meta) = std::fs::metadata(like) {
        let _ = f.set_permissions(meta.permissions());
    }
    f.sync_all()
}

/// The cross-site guard of every admin change (SPEC §13): a request from another origin (its
/// `Origin` or `Sec-Fetch-Site` says so) is refused, and one authenticated by HTTP Basic (what a
/// browser sends by itself) must carry the dashboard's token (`?csrf=` or `x-csrf-token`).
pub fn check_same_origin(app: &App, ex: &Exchange, presented: &Presented) -> Result<(), ProxyError> {
    let refuse =
        |why: &str| Err(ProxyError::Forbidden { message: format!("cross-site admin change refused: {why}") });
    if ex.header("sec-fetch-site").is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
        return refuse("Sec-Fetch-Site is cross-site");
    }
    if let Some(origin) = ex.header("origin") {
        let host = origin.split_once("://").map(|(_, h)| h).unwrap_or(origin);
        if ex.header("host").is_none_or(|h| !h.eq_ignore_ascii_case(host)) {
            return refuse("Origin is not this proxy");
        }
    }
    if presented.basic_password.is_some() {
        let target = crate::router::Target::parse(&ex.target);
        let token = target.query_param("csrf").or_else(|| ex.header("x-csrf-token").map(str::to_string));
        if !token.is_some_and(|t| crate::router::constant_time_eq(&t, &app.key_edits.csrf)) {
            return refuse("the dashboard's form token is missing or wrong");
        }
    }
    Ok(())
}

#[derive(Deserialize)]
struct AddBody {
    keys: Vec<AddKey>,
}

#[derive(Deserialize)]
struct AddKey {
    key: String,
    #[serde(default)]
    project: Option<String>,
}

/// Serve one `/admin/keys` request.
pub fn handle(app: &App, ex: &mut Exchange, op: &AdminKeys) -> Result<(), ProxyError> {
    let reply = match op {
        AdminKeys::List => Reply::json(200, &json!({"keys": list(app)})),
        AdminKeys::Add => {
            let body = ex.read_body(MAX_ADD_BODY)?;
            let asked: AddBody = serde_json::from_slice(&body).map_err(|e| {
                ProxyError::bad_request(
                    format!("expected {{\"keys\":[{{\"key\":…,\"project\":…}}]}}: {e}"),
                    Some("keys"),
                )
            })?;
            add(app, asked.keys)?
        }
        AdminKeys::Disable(id) | AdminKeys::Enable(id) | AdminKeys::Remove(id) => {
            let (change, state) = match op {
                AdminKeys::Disable(_) => (Edit::Disable(id.clone()), "disabled"),
                AdminKeys::Enable(_) => (Edit::Enable(id.clone()), "usable"),
                _ => (Edit::Remove(id.clone()), "removed"),
            };
            rewrite(app, &change)?;
            log::warn!("admin: key {id} {state}");
            if ex.header("accept").is_some_and(|a| a.contains("text/html")) {
                // A dashboard form: back to the page.
                Reply {
                    status: 303,
                    headers: vec![("Location".into(), "/dashboard".into())],
                    body: Vec::new(),
                }
            } else {
                Reply::json(200, &json!({"id": id, "state": state}))
            }
        }
    };
    ex.respond(reply);
    Ok(())
}

/// Every key as `/status` lists it, then the keys disabled here (state `disabled`, reason `admin`).
fn list(app: &App) -> Vec<Value> {
    let status = crate::admin::status_view(app, Utc::now());
    let mut keys: Vec<Value> = status.keys.iter().filter_map(|k| serde_json::to_value(k).ok()).collect();
    for k in disabled_in_file(&app.config.key_file) {
        keys.push(json!({
            "id": keyfile::fingerprint(&k.key), "masked": keyfile::mask(&k.key), "project": k.project,
            "state": "disabled", "disabled_reason": "admin", "last_used": null,
            "requests": 0, "tokens": 0, "models": {},
        }));
    }
    keys
}

/// Why a key offered to `POST /admin/keys` cannot be taken as it is, before any probe.
fn malformed(k: &AddKey, known: &[String]) -> Option<&'static str> {
    let bad = |s: &str| s.is_empty() || s.len() > 512 || s.contains(|c: char| c.is_whitespace() || c == '#');
    if bad(&k.key) {
        Some("malformed key")
    } else if k.project.as_deref().is_some_and(bad) {
        Some("malformed project label")
    } else if known.contains(&keyfile::fingerprint(&k.key)) {
        Some("already in the key file")
    } else {
        None
    }
}

/// Validate each key with one models.list (no lock held), add the valid ones to the key file.
fn add(app: &App, asked: Vec<AddKey>) -> Result<Reply, ProxyError> {
    if asked.is_empty() {
        return Err(ProxyError::bad_request("keys is empty", Some("keys")));
    }
    crate::redact::add_keys(asked.iter().map(|k| k.key.clone()));
    let mut known: Vec<String> = app.pool.lock().status(Utc::now()).keys.into_iter().map(|k| k.id).collect();
    known.extend(disabled_in_file(&app.config.key_file).iter().map(|k| keyfile::fingerprint(&k.key)));
    let (mut added, mut refused, mut specs) = (Vec::new(), Vec::new(), Vec::new());
    for k in asked {
        let (id, masked) = (keyfile::fingerprint(&k.key), keyfile::mask(&k.key));
        let verdict = match malformed(&k, &known) {
            Some(why) => Err(why.to_string()),
            None => match crate::background::probe_key(app, &k.key) {
                Ok((
                    _,
                    Outcome::Success
                    | Outcome::QuotaPerDay
                    | Outcome::QuotaPerMinute { .. }
                    | Outcome::RateLimited,
                )) => Ok(()),
                Ok((status, Outcome::KeyInvalid { .. })) => {
                    Err(format!("invalid: models.list answered {status}"))
                }
                Ok((status, _)) => Err(format!("not validated: models.list answered {status}")),
                Err(e) => Err(format!("not validated: {e}")),
            },
        };
        match verdict {
            Ok(()) => {
                known.push(id.clone());
                added.push(json!({"id": id, "masked": masked, "project": k.project}));
                specs.push(KeySpec::new(&k.key, k.project.as_deref()));
            }
            Err(reason) => refused.push(json!({"id": id, "masked": masked, "reason": reason})),
        }
    }
    if !specs.is_empty() {
        rewrite(app, &Edit::Add(specs))?;
        log::warn!("admin: {} keys added, {} refused", added.len(), refused.len());
    }
    Ok(Reply::json(200, &json!({"added": added, "refused": refused})))
}

/// Keys disabled here (not in the pool) that the overview lists with an enable form; the others
/// are counted (`GET /admin/keys` lists them all).
const DISABLED_SHOWN: usize = 100;

/// The `/dashboard` page in `view` with the admin section: the clients table and a form per key
/// the page shows to disable or enable it (plain HTML, no script; the form token guards them).
pub fn dashboard_reply(app: &App, view: crate::dashboard::View) -> Reply {
    crate::admin::dashboard_reply(app, view, |status, shown| admin_section(app, status, shown, view))
}

/// The admin section: the clients table, then a form for each key in `shown` (indices into
/// `status.keys`) and, on the overview, for the keys disabled here.
fn admin_section(app: &App, status: &StatusView, shown: &[usize], view: crate::dashboard::View) -> String {
    use crate::dashboard::escape;
    use std::fmt::Write;
    let now = Utc::now();
    let mut out = String::from("<section class=\"admin\">\n");
    let clients = app.clients.view(now);
    if !clients.is_empty() {
        out.push_str("<h2>Clients</h2>\n<table class=\"clients\">\n<tr><th>client</th><th>requests today</th><th>tokens today</th><th>rpd</th><th>tpd</th><th>models</th><th>state</th></tr>\n");
        for c in &clients {
            let limit = |l: Option<u64>| l.map(|v| v.to_string()).unwrap_or_else(|| "—".into());
            let models = c.limits.models.as_ref().map(|m| m.join(" | ")).unwrap_or_else(|| "all".into());
            let _ = writeln!(
                out,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&c.name),
                if c.admin { " (admin)" } else { "" },
                c.requests,
                c.tokens,
                limit(c.limits.rpd),
                limit(c.limits.tpd),
                escape(&models),
                c.state
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("<h2>Keys</h2>\n");
    if shown.len() < status.keys.len() {
        out.push_str(
            "<p class=\"none\">The keys shown above; every other key has its form on its page.</p>\n",
        );
    }
    out.push_str("<table class=\"manage\">\n<tr><th>key</th><th>project</th><th>state</th><th></th></tr>\n");
    let csrf = &app.key_edits.csrf;
    let mut row = |masked: &str, id: &str, project: Option<&str>, state: &str, action: &str| {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code> {}</td><td>{}</td><td>{}</td><td><form method=\"post\" action=\"/admin/keys/{}/{action}?csrf={csrf}\"><button type=\"submit\">{action}</button></form></td></tr>",
            escape(masked),
            escape(id),
            escape(project.unwrap_or("")),
            escape(state),
            escape(id),
        );
    };
    for k in shown.iter().filter_map(|&i| status.keys.get(i)) {
        let action = if k.disabled_reason.as_deref() == Some("admin") { "enable" } else { "disable" };
        row(&k.masked, &k.id, k.project.as_deref(), k.state.as_str(), action);
    }
    let mut hidden = 0usize;
    if view == crate::dashboard::View::Overview {
        for (n, k) in disabled_in_file(&app.config.key_file).into_iter().enumerate() {
            if n >= DISABLED_SHOWN {
                hidden += 1;
                continue;
            }
            let (id, masked) = (keyfile::fingerprint(&k.key), keyfile::mask(&k.key));
            row(&masked, &id, k.project.as_deref(), "disabled", "enable");
        }
    }
    out.push_str("</table>\n");
    if hidden > 0 {
        let _ = writeln!(
            out,
            "<p class=\"none\">{} more keys disabled here: <code>GET /admin/keys</code> lists them.</p>",
            crate::dashboard::thousands(hidden as u64)
        );
    }
    out.push_str("</section>\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "AIzaSyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    const B: &str = "AIzaSyBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";

    #[test]
    fn disable_enable_remove_keep_comments_order_and_line_ends() {
        let text = format!("# pool\r\n{A} proj-a # first\r\n\n{B}\n# end");
        let fa = keyfile::fingerprint(A);
        let off = edit(&text, &Edit::Disable(fa.clone())).unwrap();
        assert_eq!(off, format!("# pool\r\n#disabled {A} proj-a # first\r\n\n{B}\n# end"));
        assert_eq!(keyfile::parse(&off).keys.len(), 1);
        assert_eq!(disabled_keys(&off), vec![KeySpec::new(A, Some("proj-a"))]);
        assert_eq!(edit(&off, &Edit::Disable(fa.clone())).unwrap(), off, "disabling twice changes nothing");
        assert_eq!(edit(&off, &Edit::Enable(fa.clone())).unwrap(), text);
        assert_eq!(edit(&off, &Edit::Remove(fa.clone())).unwrap(), format!("# pool\r\n\n{B}\n# end"));
        let added = edit(&text, &Edit::Add(vec![KeySpec::new("AIzaNEW-key-0000000000", Some("p"))])).unwrap();
        assert!(added.starts_with(&text) && added.ends_with("# end\nAIzaNEW-key-0000000000 p\n"));
        assert!(matches!(
            edit(&text, &Edit::Remove("000000000000".into())),
            Err(ProxyError::NotFound { .. })
        ));
    }
}
