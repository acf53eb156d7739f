//! List routes over every project (SPEC §5: `GET /{v}/files`, `cachedContents`, `batches`,
//! `fileSearchStores`, `tunedModels`): the page token the proxy hands out, which holds each
//! project's own cursor, and the merge of the projects' pages into one answer.
//!
//! Pure: values in, values out. Which key asks each project is the pool's business.

use base64::Engine;
use serde_json::{Map, Value};

use crate::keyfile::ProjectId;

/// Every page token the proxy issues starts so (anything else was not ours: 400).
pub const TOKEN_PREFIX: &str = "gkm1.";
/// The longest page token read back.
const MAX_TOKEN: usize = 64 * 1024;

/// The projects still to list and, for each, Google's page token (`None`: its first page).
pub type Cursors = Vec<(ProjectId, Option<String>)>;

/// The proxy's page token for the projects that have more to show.
pub fn encode(next: &[(ProjectId, String)]) -> String {
    let json = serde_json::to_vec(next).unwrap_or_default();
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
}

/// The cursors of a page token [`encode`] made; `None` for anything else.
pub fn decode(token: &str) -> Option<Cursors> {
    let raw = token.strip_prefix(TOKEN_PREFIX).filter(|r| r.len() <= MAX_TOKEN)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).ok()?;
    let next: Vec<(ProjectId, String)> = serde_json::from_slice(&json).ok()?;
    Some(next.into_iter().map(|(p, c)| (p, Some(c))).collect())
}

/// One answer from the projects' pages, in project order: every array at the top level
/// concatenated (`files`, `operations`, …), other fields from the first page that has them,
/// and `nextPageToken` the proxy's own when some project has more.
pub fn merge(pages: Vec<Value>, next: &[(ProjectId, String)]) -> Value {
    let mut merged = Map::new();
    for page in pages {
        let Value::Object(fields) = page else { continue };
        for (name, value) in fields {
            if name == "nextPageToken" {
                continue;
            }
            match (merged.get_mut(&name), value) {
                (Some(Value::Array(have)), Value::Array(more)) => have.extend(more),
                (Some(_), _) => {}
                (None, value) => {
                    merged.insert(name, value);
                }
            }
        }
    }
    if !next.is_empty() {
        merged.insert("nextPageToken".into(), Value::String(encode(next)));
    }
    Value::Object(merged)
}

/// `query` without its `pageToken`, with `pageToken=cursor` when there is one (percent-encoded).
pub fn with_page_token(query: &str, cursor: Option<&str>) -> String {
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| {
            !p.is_empty() && !crate::router::param_name_is(p.split('=').next().unwrap_or(""), "pageToken")
        })
        .map(str::to_string)
        .collect();
    if let Some(c) = cursor {
        parts.push(format!("pageToken={}", percent_encode(c)));
    }
    parts.join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(l: &str) -> ProjectId {
        ProjectId::Label(l.into())
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let next =
            vec![(p("a"), "tok/+=1".to_string()), (ProjectId::Solo("0123456789ab".into()), "x".into())];
        let token = encode(&next);
        assert!(token.starts_with(TOKEN_PREFIX));
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{token}");
        let back = decode(&token).unwrap();
        assert_eq!(
            back,
            vec![
                (p("a"), Some("tok/+=1".into())),
                (ProjectId::Solo("0123456789ab".into()), Some("x".into()))
            ]
        );
        for bad in ["", "abc", "gkm1.", "gkm1.!!!", "gkm1.e30", "gkm2.W10"] {
            assert!(decode(bad).is_none_or(|c| c.is_empty()), "{bad}");
        }
    }

    #[test]
    fn pages_merge_in_project_order() {
        let a = json!({"files": [{"name": "files/a1"}, {"name": "files/a2"}], "nextPageToken": "A2"});
        let b = json!({"files": [{"name": "files/b1"}]});
        let c = json!({});
        let next = vec![(p("a"), "A2".to_string())];
        let merged = merge(vec![a, b, c], &next);
        let names: Vec<&str> =
            merged["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["files/a1", "files/a2", "files/b1"]);
        assert_eq!(
            decode(merged["nextPageToken"].as_str().unwrap()).unwrap(),
            vec![(p("a"), Some("A2".into()))]
        );
        // The last page has no token; a project whose page had no array still adds its items.
        let merged = merge(vec![json!({}), json!({"operations": [{"name": "batches/1"}]})], &[]);
        assert_eq!(merged, json!({"operations": [{"name": "batches/1"}]}));
    }

    #[test]
    fn the_page_token_is_replaced_in_the_query() {
        assert_eq!(
            with_page_token("pageSize=5&pageToken=gkm1.x", Some("a b/c")),
            "pageSize=5&pageToken=a%20b%2Fc"
        );
        assert_eq!(with_page_token("pageToken=x", None), "");
        assert_eq!(with_page_token("", Some("t")), "pageToken=t");
    }
}
