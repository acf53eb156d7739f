//! Model aliases (`--model-alias 'claude-*=gemini-2.5-pro,gpt-*=gemini-2.5-flash'`, SPEC §12):
//! the Gemini model used upstream for a model a client names, on every surface. The first pattern
//! that matches wins; `*` matches any run of characters. Answers keep naming the model the client
//! asked for; quota is booked to the Gemini model.
//!
//! Pure: parsing and matching only.

/// The configured aliases, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aliases {
    rules: Vec<(String, String)>,
}

impl Aliases {
    /// Parse `PATTERN=MODEL,PATTERN=MODEL`; an empty text is no alias.
    pub fn parse(text: &str) -> Result<Aliases, String> {
        let mut rules = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((pattern, model)) = item.split_once('=') else {
                return Err(format!("'{item}' is not PATTERN=MODEL"));
            };
            let (pattern, model) = (pattern.trim(), model.trim().trim_start_matches("models/"));
            if pattern.is_empty() || model.is_empty() {
                return Err(format!("'{item}' is not PATTERN=MODEL"));
            }
            if model.contains(['*', '/', ':', '?', '#', ' ']) {
                return Err(format!("'{model}' is not a Gemini model id"));
            }
            rules.push((pattern.to_string(), model.to_string()));
        }
        Ok(Aliases { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The Gemini model for `asked` (without a `models/` prefix), if an alias matches it.
    pub fn resolve(&self, asked: &str) -> Option<&str> {
        let asked = asked.strip_prefix("models/").unwrap_or(asked);
        self.rules.iter().find(|(p, _)| glob(p, asked)).map(|(_, m)| m.as_str())
    }

    /// The model to use upstream for `asked`: its alias target, or itself.
    pub fn upstream<'a>(&'a self, asked: &'a str) -> &'a str {
        self.resolve(asked).unwrap_or(asked)
    }

    /// Alias names that are model ids of their own (patterns without `*`), for model lists.
    pub fn names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.rules.iter().filter(|(p, _)| !p.contains('*')).map(|(p, m)| (p.as_str(), m.as_str()))
    }
}

/// Does `text` match `pattern`, where `*` stands for any run of characters? Iterative, linear in
/// practice (the classic two-pointer match with one backtrack point).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_pattern_wins() {
        let a = Aliases::parse(
            "claude-*=gemini-2.5-pro, gpt-4o-mini=gemini-2.5-flash-lite,gpt-*=models/gemini-2.5-flash",
        )
        .unwrap();
        assert_eq!(a.resolve("claude-sonnet-4-5-20250929"), Some("gemini-2.5-pro"));
        assert_eq!(a.resolve("gpt-4o-mini"), Some("gemini-2.5-flash-lite"));
        assert_eq!(a.resolve("models/gpt-4o"), Some("gemini-2.5-flash"));
        assert_eq!(a.resolve("gemini-2.5-flash"), None);
        assert_eq!(a.upstream("gemini-2.5-flash"), "gemini-2.5-flash");
        assert_eq!(a.names().collect::<Vec<_>>(), vec![("gpt-4o-mini", "gemini-2.5-flash-lite")]);
    }

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("*", "", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abcd", false),
            ("*-haiku-*", "claude-3-5-haiku-latest", true),
            ("a**b", "ab", true),
            ("abc", "abcd", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn malformed_aliases_are_refused() {
        for bad in ["claude", "=gemini", "claude-*=", "a=gemini-*", "a=b/c"] {
            assert!(Aliases::parse(bad).is_err(), "{bad}");
        }
        assert!(Aliases::parse("").unwrap().is_empty());
    }
}
