//! Routing and the client-token check: (method, path, credentials) → which handler, and whether
//! the caller may use it.
//!
//! Everything here is pure: it looks at the request head only, never at the body, so a wrong
//! token is refused before a byte of the body is read. Tokens are compared in constant time.

use sha2::{Digest, Sha256};

use crate::error::Surface;

/// The request target split into path and query; absolute-form targets lose their authority
/// (only the configured upstream is ever contacted, whatever the request line says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub query: String,
}

impl Target {
    pub fn parse(target: &str) -> Target {
        let mut rest = target;
        if let Some(i) = rest.find("://")
            && i > 0
            && rest[..i].bytes().all(|b| b.is_ascii_alphabetic())
        {
            let after = &rest[i + 3..];
            rest = match after.find('/') {
                Some(j) => &after[j..],
                None => "/",
            };
        }
        let rest = rest.split('#').next().unwrap_or("");
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, q),
            None => (rest, ""),
        };
        Target { path: path.to_string(), query: query.to_string() }
    }

    /// First value of a query parameter, its name and value percent-decoded (`k%65y` is `key`,
    /// as Google reads it).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            param_name_is(k, name).then(|| percent_decode(v))
        })
    }
}

/// Is the raw query parameter name `raw` (percent-encoded or not) the name `name`?
pub fn param_name_is(raw: &str, name: &str) -> bool {
    if raw.contains(['%', '+']) { percent_decode(raw) == name } else { raw == name }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Native Gemini pass-through (`/v1beta/**`, `/v1/**`, `/v1alpha/**`, `/upload/**`,
    /// `/download/**`).
    Native,
    /// Gemini's own OpenAI layer, real key as Bearer.
    GeminiOpenAi,
    OpenAiChat,
    OpenAiModels {
        id: Option<String>,
    },
    OpenAiEmbeddings,
    /// `POST /v1/responses`.
    OpenAiResponses,
    /// `GET` (or, with `delete`, `DELETE`) `/v1/responses/{id}`.
    OpenAiResponse {
        id: String,
        delete: bool,
    },
    /// `GET /v1/responses/{id}/input_items`.
    OpenAiResponseInputItems {
        id: String,
    },
    /// Anthropic's Messages API (`POST /v1/messages`).
    AnthropicMessages,
    /// `POST /v1/messages/count_tokens`.
    AnthropicCountTokens,
    /// The Live API's WebSocket (`GET /ws/…BidiGenerateContent` and friends, SPEC §11).
    Live,
    Status,
    Metrics,
    Dashboard,
    /// `/admin/keys` and `/admin/keys/{id}[/disable|/enable]` (SPEC §13).
    AdminKeys(AdminKeys),
    NotFound,
}

/// What an `/admin/keys` request asks for; `id` is a key's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminKeys {
    List,
    Add,
    Disable(String),
    Enable(String),
    Remove(String),
}

/// The `/admin/keys` route of a method and path, if it is one.
fn admin_keys(method: &str, path: &str) -> Option<AdminKeys> {
    let rest = path.strip_prefix("/admin/keys")?;
    match (method, rest.trim_end_matches('/')) {
        ("GET", "") => return Some(AdminKeys::List),
        ("POST", "") => return Some(AdminKeys::Add),
        _ => {}
    }
    let rest = rest.strip_prefix('/')?;
    let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
    let id_ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    if !id_ok {
        return None;
    }
    let id = id.to_ascii_lowercase();
    match (method, action) {
        ("POST", "disable") => Some(AdminKeys::Disable(id)),
        ("POST", "enable") => Some(AdminKeys::Enable(id)),
        ("DELETE", "") => Some(AdminKeys::Remove(id)),
        _ => None,
    }
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Native => "native",
            Route::GeminiOpenAi => "gemini_openai",
            Route::OpenAiChat => "chat_completions",
            Route::OpenAiModels { .. } => "models",
            Route::OpenAiEmbeddings => "embeddings",
            Route::OpenAiResponses | Route::OpenAiResponse { .. } => "responses",
            Route::OpenAiResponseInputItems { .. } => "response_input_items",
            Route::AnthropicMessages => "messages",
            Route::AnthropicCountTokens => "count_tokens",
            Route::Live => "live",
            Route::Status => "status",
            Route::Metrics => "metrics",
            Route::Dashboard => "dashboard",
            Route::AdminKeys(_) => "admin_keys",
            Route::NotFound => "not_found",
        }
    }

    pub fn surface(&self) -> Surface {
        match self {
            Route::OpenAiChat
            | Route::OpenAiModels { .. }
            | Route::OpenAiEmbeddings
            | Route::OpenAiResponses
            | Route::OpenAiResponse { .. }
            | Route::OpenAiResponseInputItems { .. }
            | Route::GeminiOpenAi => Surface::OpenAi,
            Route::AnthropicMessages | Route::AnthropicCountTokens => Surface::Anthropic,
            Route::Status | Route::Metrics | Route::Dashboard | Route::AdminKeys(_) => Surface::Admin,
            Route::Native | Route::Live | Route::NotFound => Surface::Native,
        }
    }
}

/// Pick the route. `bearer` tells whether the client authenticated OpenAI-style, which decides
/// between OpenAI's and Gemini's `GET /v1/models`.
pub fn route(method: &str, path: &str, bearer: bool) -> Route {
    match (method, path) {
        ("POST", "/v1/chat/completions") => return Route::OpenAiChat,
        ("POST", "/v1/embeddings") => return Route::OpenAiEmbeddings,
        ("POST", "/v1/responses") => return Route::OpenAiResponses,
        ("POST", "/v1/messages") => return Route::AnthropicMessages,
        ("POST", "/v1/messages/count_tokens") => return Route::AnthropicCountTokens,
        ("GET", "/status") => return Route::Status,
        ("GET", "/metrics") => return Route::Metrics,
        ("GET", "/dashboard") => return Route::Dashboard,
        _ => {}
    }
    if let Some(op) = admin_keys(method, path) {
        return Route::AdminKeys(op);
    }
    if let Some(id) = path.strip_prefix("/v1/responses/").and_then(|r| r.strip_suffix("/input_items"))
        && !id.is_empty()
        && !id.contains('/')
        && method == "GET"
    {
        return Route::OpenAiResponseInputItems { id: id.to_string() };
    }
    if let Some(id) = path.strip_prefix("/v1/responses/")
        && !id.is_empty()
        && !id.contains('/')
        && (method == "GET" || method == "DELETE")
    {
        return Route::OpenAiResponse { id: id.to_string(), delete: method == "DELETE" };
    }
    if method == "GET" && live_path(path).is_some() {
        return Route::Live;
    }
    if method == "GET" && bearer {
        if path == "/v1/models" {
            return Route::OpenAiModels { id: None };
        }
        if let Some(id) = path.strip_prefix("/v1/models/")
            && !id.is_empty()
            && !id.contains([':', '/'])
        {
            return Route::OpenAiModels { id: Some(id.to_string()) };
        }
    }
    if path.starts_with("/v1beta/openai/") {
        return Route::GeminiOpenAi;
    }
    if ["/v1beta/", "/v1/", "/upload/", "/download/", "/v1alpha/"].iter().any(|p| path.starts_with(p)) {
        return Route::Native;
    }
    Route::NotFound
}

/// The Live API's services (SPEC §11): `BidiGenerateContent`, its ephemeral-token variant and
/// Live Music.
const LIVE_METHODS: &[&str] = &["BidiGenerateContent", "BidiGenerateContentConstrained", "BidiGenerateMusic"];

/// The upstream path of a Live API route: `/ws/google.ai.generativelanguage.{v}.GenerativeService.{m}`,
/// also when sent with the Python SDK's leading double slash (which becomes one).
pub fn live_path(path: &str) -> Option<&str> {
    let path = path.strip_prefix('/').filter(|p| p.starts_with('/')).unwrap_or(path);
    let rest = path.strip_prefix("/ws/google.ai.generativelanguage.")?;
    let (version, method) = rest.split_once(".GenerativeService.")?;
    let version_ok = !version.is_empty() && version.bytes().all(|b| b.is_ascii_alphanumeric());
    (version_ok && LIVE_METHODS.contains(&method)).then_some(path)
}

/// The credential a client presented, by the style it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub goog: Option<String>,
    pub bearer: Option<String>,
    pub basic_password: Option<String>,
    pub query: Option<String>,
    /// `x-api-key: T`, as Anthropic clients send it.
    pub api_key: Option<String>,
}

impl Presented {
    pub fn from_request(headers: &[(String, String)], target: &Target) -> Presented {
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim().to_string());
        let auth = header("authorization");
        let scheme = |prefix: &str| {
            auth.as_deref().and_then(|a| {
                let (s, rest) = a.split_once(' ')?;
                s.eq_ignore_ascii_case(prefix).then(|| rest.trim().to_string())
            })
        };
        Presented {
            goog: header("x-goog-api-key"),
            bearer: scheme("bearer"),
            basic_password: scheme("basic").and_then(|b| basic_password(&b)),
            query: target.query_param("key"),
            api_key: header("x-api-key"),
        }
    }

    pub fn any(&self) -> bool {
        self.goog.is_some()
            || self.bearer.is_some()
            || self.query.is_some()
            || self.basic_password.is_some()
            || self.api_key.is_some()
    }

    /// The credentials presented, in every style (Basic's password only with `allow_basic`).
    pub fn candidates(&self, allow_basic: bool) -> impl Iterator<Item = &str> {
        let basic = if allow_basic { &self.basic_password } else { &None };
        [&self.goog, &self.bearer, &self.query, &self.api_key, basic]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// True when one of the presented credentials equals one of `tokens`.
    pub fn matches(&self, tokens: &[String], allow_basic: bool) -> bool {
        let mut candidates = vec![&self.goog, &self.bearer, &self.query, &self.api_key];
        if allow_basic {
            candidates.push(&self.basic_password);
        }
        let mut ok = false;
        for c in candidates.into_iter().flatten() {
            for t in tokens {
                // Not short-circuited: the time taken does not depend on which token matched.
                ok |= constant_time_eq(c, t);
            }
        }
        ok
    }
}

/// Compare two secrets in time independent of their contents (and of their lengths: both are
/// hashed to 32 bytes first).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let ha = Sha256::digest(a.as_bytes());
    let hb = Sha256::digest(b.as_bytes());
    let diff = ha.iter().zip(hb.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

fn basic_password(b64: &str) -> Option<String> {
    let decoded = base64_decode(b64)?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':').map(|(_, p)| p.to_string())
}

/// Standard base64 (with or without padding); `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_every_form_keep_only_path_and_query() {
        let cases = [
            ("/v1beta/models?key=t", "/v1beta/models", "key=t"),
            ("http://evil.example/v1beta/models?x=1", "/v1beta/models", "x=1"),
            ("https://evil.example", "/", ""),
            ("//evil.example/v1beta/models", "//evil.example/v1beta/models", ""),
            ("/v1beta/models#frag", "/v1beta/models", ""),
        ];
        for (raw, path, query) in cases {
            assert_eq!(Target::parse(raw), Target { path: path.into(), query: query.into() }, "{raw}");
        }
    }

    #[test]
    fn live_routes_with_one_slash_or_the_python_sdks_two() {
        let m = "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent";
        assert_eq!(live_path(m), Some(m));
        assert_eq!(live_path(&format!("/{m}")), Some(m));
        let c = "/ws/google.ai.generativelanguage.v1alpha.GenerativeService.BidiGenerateContentConstrained";
        assert_eq!(live_path(c), Some(c));
        let music = "/ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateMusic";
        assert_eq!(live_path(music), Some(music));
        for no in [
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.Other",
            "/ws/google.ai.generativelanguage..GenerativeService.BidiGenerateContent",
            "///ws/google.ai.generativelanguage.v1.GenerativeService.BidiGenerateContent",
            "/ws/google.ai.generativelanguage.v1/x.GenerativeService.BidiGenerateContent",
        ] {
            assert_eq!(live_path(no), None, "{no}");
        }
        assert_eq!(route("GET", &format!("/{m}"), false), Route::Live);
        assert_eq!(route("POST", m, false), Route::NotFound);
    }

    #[test]
    fn routes() {
        let cases = [
            ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", false, Route::Native),
            ("GET", "/v1/models", false, Route::Native),
            ("GET", "/v1/models", true, Route::OpenAiModels { id: None }),
            (
                "GET",
                "/v1/models/gemini-2.5-flash",
                true,
                Route::OpenAiModels { id: Some("gemini-2.5-flash".into()) },
            ),
            ("POST", "/v1/models/gemini-2.5-flash:generateContent", true, Route::Native),
            ("POST", "/v1/chat/completions", false, Route::OpenAiChat),
            ("POST", "/v1/embeddings", true, Route::OpenAiEmbeddings),
            ("POST", "/v1/responses", true, Route::OpenAiResponses),
            (
                "GET",
                "/v1/responses/resp_1",
                true,
                Route::OpenAiResponse { id: "resp_1".into(), delete: false },
            ),
            (
                "DELETE",
                "/v1/responses/resp_1",
                false,
                Route::OpenAiResponse { id: "resp_1".into(), delete: true },
            ),
            (
                "GET",
                "/v1/responses/resp_1/input_items",
                true,
                Route::OpenAiResponseInputItems { id: "resp_1".into() },
            ),
            ("POST", "/v1beta/openai/chat/completions", true, Route::GeminiOpenAi),
            ("PUT", "/upload/v1beta/files", false, Route::Native),
            ("GET", "/download/v1beta/files/abc:download", false, Route::Native),
            ("POST", "/v1alpha/interactions", false, Route::Native),
            ("GET", "/status", false, Route::Status),
            ("GET", "/admin/keys", false, Route::AdminKeys(AdminKeys::List)),
            ("POST", "/admin/keys", false, Route::AdminKeys(AdminKeys::Add)),
            (
                "POST",
                "/admin/keys/3F2a9c1b7e4d/disable",
                false,
                Route::AdminKeys(AdminKeys::Disable("3f2a9c1b7e4d".into())),
            ),
            (
                "POST",
                "/admin/keys/3f2a9c1b7e4d/enable",
                false,
                Route::AdminKeys(AdminKeys::Enable("3f2a9c1b7e4d".into())),
            ),
            (
                "DELETE",
                "/admin/keys/3f2a9c1b7e4d",
                false,
                Route::AdminKeys(AdminKeys::Remove("3f2a9c1b7e4d".into())),
            ),
            ("DELETE", "/admin/keys/not-hex", false, Route::NotFound),
            ("GET", "/admin/keys/3f2a9c1b7e4d/disable", false, Route::NotFound),
            ("GET", "/", false, Route::NotFound),
            ("GET", "//evil.example/v1beta/models", false, Route::NotFound),
            ("GET", "/v1betax", false, Route::NotFound),
        ];
        for (m, p, bearer, want) in cases {
            assert_eq!(route(m, p, bearer), want, "{m} {p}");
        }
    }

    #[test]
    fn tokens_in_all_three_styles_and_basic() {
        let tokens = vec!["tok-a".to_string(), "tok-b".to_string()];
        let t = Target::parse("/v1beta/models?key=tok-b");
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        assert!(Presented::from_request(&[], &t).matches(&tokens, false));
        let none = Target::parse("/v1beta/models");
        assert!(Presented::from_request(&h("x-goog-api-key", "tok-a"), &none).matches(&tokens, false));
        assert!(Presented::from_request(&h("authorization", "Bearer tok-a"), &none).matches(&tokens, false));
        assert!(!Presented::from_request(&h("authorization", "Bearer tok-c"), &none).matches(&tokens, false));
        assert!(!Presented::from_request(&[], &none).matches(&tokens, false));
        // "user:tok-a" in base64
        let basic = h("authorization", "Basic dXNlcjp0b2stYQ==");
        assert!(!Presented::from_request(&basic, &none).matches(&tokens, false));
        assert!(Presented::from_request(&basic, &none).matches(&tokens, true));
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "abcd"));
    }

    #[test]
    fn percent_decoding_of_query_values() {
        let t = Target::parse("/x?key=a%2Bb%3D&y");
        assert_eq!(t.query_param("key").as_deref(), Some("a+b="));
        assert_eq!(Target::parse("/x?key=%zz%").query_param("key").as_deref(), Some("%zz%"));
        // Names are decoded too: `k%65y` is `key` for Google, so it is for the proxy.
        assert_eq!(Target::parse("/x?alt=sse&k%65y=tok").query_param("key").as_deref(), Some("tok"));
        assert_eq!(Target::parse("/x?k+ey=tok").query_param("key"), None);
    }
}
