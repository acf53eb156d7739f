//! The key file (SPEC §3): one key per line, an optional project label, `#` comments.
//!
//! Parsing is a pure function of the text; `load` is the only place that reads the file. Nothing
//! here ever prints a key: warnings name line numbers and fingerprints.
//!
//! A key's identity lives here too: [`KeySpec`] (a line of the file), its [`fingerprint`] (the
//! stable public id) and its [`mask`] (the form shown to people); `Debug` shows the mask only.

use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;

/// One line of the key file.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub key: String,
    pub project: Option<String>,
    /// The key's own outbound proxy (`proxy=URL` on its line, SPEC §15).
    pub proxy: Option<crate::egress::ProxyUrl>,
}

impl KeySpec {
    pub fn new(key: &str, project: Option<&str>) -> KeySpec {
        KeySpec { key: key.to_string(), project: project.map(str::to_string), proxy: None }
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySpec")
            .field("key", &mask(&self.key))
            .field("project", &self.project)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// Whose quota and whose server-side resources: a labelled Cloud project, or a lone key (by
/// fingerprint) that is its own project (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectId {
    Label(String),
    Solo(String),
}

impl fmt::Display for ProjectId {
    /// How people see it: the label, or `key <fingerprint>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectId::Label(l) => write!(f, "project {l}"),
            ProjectId::Solo(fp) => write!(f, "the project of key {fp}"),
        }
    }
}

/// First 12 hex digits of the SHA-256 of the key: the key's stable public id.
pub fn fingerprint(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// `AIza…XyZ1`: first 4 and last 4 characters. Keys shorter than 9 characters show `…` and their
/// last 2 only, so that a mask never reveals most of a short key.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let n = chars.len();
    if n < 9 {
        let tail: String = chars[n.saturating_sub(2)..].iter().collect();
        return format!("…{tail}");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[n - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// The keys of a file and what was odd about it (for warning logs; no key text inside).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub keys: Vec<KeySpec>,
    pub warnings: Vec<String>,
    /// Lines that cannot be used as they are (a bad `proxy=` URL): `load` refuses the file.
    pub errors: Vec<String>,
}

/// Parse key-file text. Never fails: an empty result is for the caller to judge.
pub fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    for (n, line) in text.lines().enumerate() {
        // The byte-order mark first, then blanks: "\u{feff} # note" is a comment.
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `proxy=URL` may stand anywhere after the key; the other fields are as before.
        let mut proxy = None;
        let mut fields = line.split_whitespace().take_while(|f| !f.starts_with('#')).filter(|f| {
            let Some(url) = f.strip_prefix("proxy=") else { return true };
            match crate::egress::ProxyUrl::parse(url) {
                Ok(p) => proxy = Some(p),
                Err(e) => out.errors.push(format!("line {}: proxy= {e}", n + 1)),
            }
            false
        });
        let Some(key) = fields.next() else { continue };
        let project = fields.next().map(str::to_string);
        if fields.next().is_some() {
            out.warnings.push(format!("line {}: fields after the project label are ignored", n + 1));
        }
        if out.keys.iter().any(|k| k.key == key) {
            out.warnings.push(format!("line {}: duplicate key dropped", n + 1));
            continue;
        }
        out.keys.push(KeySpec { key: key.to_string(), project, proxy });
    }
    out
}

/// Read and parse the key file; a missing, unreadable or key-less file is an error message.
pub fn load(path: &Path) -> Result<Parsed, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| format!("key file {} is not UTF-8 text", path.display()))?;
    let parsed = parse(&text);
    if !parsed.errors.is_empty() {
        return Err(format!("key file {}: {}", path.display(), parsed.errors.join("; ")));
    }
    if parsed.keys.is_empty() {
        return Err(format!(
            "key file {} holds no keys (one key per line; # starts a comment)",
            path.display()
        ));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> String {
        format!("AIzaSyTESTKEY{i:026}")
    }

    fn keys(text: &str) -> Vec<(String, Option<String>)> {
        parse(text).keys.into_iter().map(|k| (k.key, k.project)).collect()
    }

    #[test]
    fn fingerprint_is_sha256_prefix() {
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(fingerprint("abc"), "ba7816bf8f01");
        assert_eq!(fingerprint(""), "e3b0c44298fc");
        assert_eq!(fingerprint(&key(1)).len(), 12);
        assert_ne!(fingerprint(&key(1)), fingerprint(&key(2)));
    }

    #[test]
    fn mask_table() {
        let cases: &[(&str, &str)] = &[
            ("AIzaSyABCDEFGHIJKLMNOPXyZ1", "AIza…XyZ1"),
            ("123456789", "1234…6789"),
            ("12345678", "…78"),
            ("ab", "…ab"),
            ("a", "…a"),
            ("", "…"),
            ("ключ-ключ-ключ", "ключ…ключ"),
        ];
        for (input, expected) in cases {
            assert_eq!(mask(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn comments_blank_lines_whitespace_and_labels() {
        let text = "# my keys\n\n  AIzaA  \nAIzaB proj-1\n\tAIzaC\tproj-1 # shared\r\n#AIzaD\n";
        assert_eq!(
            keys(text),
            vec![
                ("AIzaA".into(), None),
                ("AIzaB".into(), Some("proj-1".into())),
                ("AIzaC".into(), Some("proj-1".into())),
            ]
        );
    }

    #[test]
    fn duplicates_are_dropped_with_a_warning_that_names_no_key() {
        let p = parse("AIzaSECRET1\nAIzaSECRET1 other\n");
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.warnings, vec!["line 2: duplicate key dropped".to_string()]);
        assert!(p.warnings.iter().all(|w| !w.contains("SECRET")));
    }

    #[test]
    fn a_comment_right_after_the_key_is_not_a_project() {
        assert_eq!(keys("AIzaA # note\n"), vec![("AIzaA".into(), None)]);
    }

    #[test]
    fn a_keys_own_proxy_field_stands_anywhere_after_it() {
        let p = parse(
            "AIzaA proj proxy=socks5h://u:pw@127.0.0.1:1080\nAIzaB proxy=http://h:3128 proj # c\nAIzaC\n",
        );
        let got: Vec<_> =
            p.keys.iter().map(|k| (k.project.clone(), k.proxy.as_ref().map(|x| x.label()))).collect();
        assert_eq!(
            got,
            vec![
                (Some("proj".into()), Some("127.0.0.1:1080".into())),
                (Some("proj".into()), Some("h:3128".into())),
                (None, None)
            ]
        );
        assert!(p.warnings.is_empty() && p.errors.is_empty(), "{p:?}");
        let bad = parse("AIzaA proxy=socks4://u:topsecret@h:1\n");
        assert_eq!(bad.errors.len(), 1);
        assert!(
            bad.errors[0].starts_with("line 1: proxy= ") && !bad.errors[0].contains("topsecret"),
            "{bad:?}"
        );
    }

    #[test]
    fn bom_and_crlf() {
        assert_eq!(keys("\u{feff}AIzaA\r\nAIzaB\r\n"), vec![("AIzaA".into(), None), ("AIzaB".into(), None)]);
    }

    #[test]
    fn load_errors_are_clear() {
        let dir = std::env::temp_dir().join(format!("gkm-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = load(&dir.join("nope.txt")).unwrap_err();
        assert!(missing.contains("cannot read key file"), "{missing}");
        let empty = dir.join("empty.txt");
        std::fs::write(&empty, "# nothing\n\n").unwrap();
        assert!(load(&empty).unwrap_err().contains("holds no keys"));
        let bin = dir.join("bin.txt");
        std::fs::write(&bin, [0xff, 0xfe, 0x00]).unwrap();
        assert!(load(&bin).unwrap_err().contains("not UTF-8"));
    }
}
