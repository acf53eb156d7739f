//! Quota: reads one upstream answer (status and body) and says what it means for the key that was
//! used ([`Outcome`]), from Google's error body as `google_error` reads it; also the model of a
//! request's path. Tokens are counted in `usage.rs`.
//!
//! It must never do I/O, read the clock, hold state, or panic on any input: bodies come from the
//! network and may be anything (not JSON, truncated, a 200 body, an array, a huge number).
//!
//! # Rules (SPEC §5), and the choices made where the spec is silent
//!
//! * Error bodies are read by `@type`, never by position; details may come in any order.
//! * A 429 is per-day when any `QuotaFailure` violation has a `quotaId` containing `PerDay`. This wins
//!   over per-minute violations and over any `RetryInfo` (a per-day 429 often carries `"0s"`).
//! * Any other 429 with a `QuotaFailure` or a `RetryInfo` is per-minute: cool down for `retryDelay`,
//!   clamped to 1 s ..= 24 h, or 60 s when no delay is given. A 429 without either is
//!   [`Outcome::RateLimited`] (the pool applies its doubling backoff).
//! * **A 400/401/403 disables a key only on evidence that the key itself is the problem**: an
//!   `ErrorInfo` reason from [`KEY_REASONS`] (`API_KEY_INVALID`, `CONSUMER_SUSPENDED`,
//!   `API_KEY_SERVICE_BLOCKED`, referrer/IP/app restrictions, ...), `SERVICE_DISABLED` for the
//!   Generative Language API itself, or — when the body carries no `ErrorInfo` — a message that
//!   names the key ("API key not valid", "API key expired", "reported as leaked", "has been
//!   suspended", "Requests to this API ... are blocked", "Generative Language API has not been
//!   used in project"). Everything else, notably a generic 403 `PERMISSION_DENIED` such as "You do
//!   not have permission to access the File ... or it may not exist", "The caller does not have
//!   permission", or a 401 "API keys are not supported by this API", is [`Outcome::ClientError`].
//!   Why: a key-level outcome is retried on every other key, so a request that is itself at fault
//!   (someone else's file, an OAuth-only endpoint) would otherwise disable the whole pool, one key
//!   per attempt. `SERVICE_DISABLED` for Gemini *is* key-level: every request with that key fails
//!   until the operator enables the API, and the re-probe notices when they do. `SERVICE_DISABLED`
//!   naming another service is not.
//! * The disabled reason is a fixed code (the `ErrorInfo` reason, or a code standing for the
//!   message), never upstream text: Google echoes the raw key in some messages
//!   ("Consumer 'api_key:AIza...' has been suspended"), and the reason is persisted and shown.
//! * 500, 502, 503 and 504 are [`Outcome::Transient`] (502 added: a Google front end's bad gateway is
//!   not the request's fault). Every other status is [`Outcome::ClientError`].

use serde_json::Value;

use crate::google_error::GoogleError;
use std::time::Duration;

/// Cooldown when a 429 asks for one without saying how long.
pub const DEFAULT_RETRY: Duration = Duration::from_secs(60);
/// Shortest cooldown ever applied (`retryDelay: "0s"` still waits this long).
pub const MIN_RETRY: Duration = Duration::from_secs(1);
/// Longest cooldown taken from a `retryDelay` (guards the date arithmetic against absurd values).
pub const MAX_RETRY: Duration = Duration::from_secs(86_400);

/// `ErrorInfo` reasons that mean "this key cannot serve any request".
pub const KEY_REASONS: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "CONSUMER_SUSPENDED",
    "CONSUMER_INVALID",
    "API_KEY_SERVICE_BLOCKED",
    "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED",
    "API_KEY_ANDROID_APP_BLOCKED",
    "API_KEY_IOS_APP_BLOCKED",
    "SERVICE_DISABLED",
];

/// The service this proxy talks to; `SERVICE_DISABLED` for any other service is not the key's fault.
const GEMINI_SERVICE: &str = "generativelanguage.googleapis.com";

/// Message fragments (for bodies without `ErrorInfo`) that name the key, with the reason recorded.
const KEY_MESSAGES: &[(&str, &str)] = &[
    ("api key not valid", "API_KEY_INVALID"),
    ("api key expired", "API_KEY_EXPIRED"),
    ("reported as leaked", "API_KEY_LEAKED"),
    ("has been suspended", "CONSUMER_SUSPENDED"),
    ("generative language api has not been used", "SERVICE_DISABLED"),
    ("are blocked", "API_KEY_SERVICE_BLOCKED"),
];

/// What an upstream answer means for the key that was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: count the request and its tokens.
    Success,
    /// 429 with a per-day quota violation: park the key's project for the model until the reset.
    QuotaPerDay,
    /// 429 with a per-minute violation or a `RetryInfo`: cool the project down for `retry`.
    QuotaPerMinute { retry: Duration },
    /// 429 with neither: doubling backoff in the pool.
    RateLimited,
    /// The key itself is unusable; `reason` is a fixed code, never upstream text.
    KeyInvalid { reason: String },
    /// Upstream trouble (500, 502, 503, 504; the caller also uses it for connection errors).
    Transient,
    /// The request's own fault: returned to the client as is, no effect on the key.
    ClientError,
}

impl Outcome {
    /// Whether the request should move on to the next key (SPEC §5 "the request" column).
    pub fn retry_on_next_key(&self) -> bool {
        !matches!(self, Outcome::Success | Outcome::ClientError)
    }
}

/// What the upstream closing a Live API WebSocket before its first frame means for the key
/// (SPEC §11): a reason that says quota (per day, or else rate-limited with the doubling
/// backoff) or names a key problem; `None` for any other close (passed on to the client).
pub fn classify_live_close(reason: &str) -> Option<Outcome> {
    let lower = reason.to_ascii_lowercase();
    if lower.contains("quota")
        || lower.contains("resource_exhausted")
        || lower.contains("resource has been exhausted")
    {
        let per_day = lower.contains("perday") || lower.contains("per day") || lower.contains("daily");
        return Some(if per_day { Outcome::QuotaPerDay } else { Outcome::RateLimited });
    }
    KEY_MESSAGES
        .iter()
        .find(|(fragment, _)| lower.contains(fragment))
        .map(|(_, reason)| Outcome::KeyInvalid { reason: (*reason).to_string() })
}

/// Classify an upstream answer. Never panics, whatever the body.
pub fn classify(status: u16, body: &[u8]) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        429 => classify_429(&GoogleError::parse(body).unwrap_or_default()),
        400 | 401 | 403 => match key_problem(&GoogleError::parse(body).unwrap_or_default()) {
            Some(reason) => Outcome::KeyInvalid { reason },
            None => Outcome::ClientError,
        },
        500 | 502 | 503 | 504 => Outcome::Transient,
        _ => Outcome::ClientError,
    }
}

fn classify_429(err: &GoogleError) -> Outcome {
    let quota_ids: Vec<&str> = err
        .details_of("google.rpc.QuotaFailure")
        .filter_map(|d| d.get("violations")?.as_array())
        .flatten()
        .filter_map(|v| v.get("quotaId")?.as_str())
        .collect();
    let has_quota_failure = err.details_of("google.rpc.QuotaFailure").next().is_some();
    if quota_ids.iter().any(|id| id.contains("PerDay")) {
        return Outcome::QuotaPerDay;
    }
    let retry =
        err.details_of("google.rpc.RetryInfo").find_map(|d| d.get("retryDelay").and_then(duration_value));
    if has_quota_failure || retry.is_some() {
        let retry = retry.unwrap_or(DEFAULT_RETRY).clamp(MIN_RETRY, MAX_RETRY);
        return Outcome::QuotaPerMinute { retry };
    }
    Outcome::RateLimited
}

/// `Some(reason)` when the body shows that the key itself is unusable.
fn key_problem(err: &GoogleError) -> Option<String> {
    let mut saw_error_info = false;
    for info in err.details_of("google.rpc.ErrorInfo") {
        saw_error_info = true;
        let Some(reason) = info.get("reason").and_then(Value::as_str) else {
            continue;
        };
        if !KEY_REASONS.contains(&reason) {
            continue;
        }
        if reason == "SERVICE_DISABLED" {
            let service = info.get("metadata").and_then(|m| m.get("service")).and_then(Value::as_str);
            if service.is_some_and(|s| s != GEMINI_SERVICE) {
                continue;
            }
        }
        return Some(reason.to_string());
    }
    if saw_error_info {
        // An explicit reason that is not about the key: trust it over the wording.
        return None;
    }
    let message = err.message.to_ascii_lowercase();
    KEY_MESSAGES
        .iter()
        .find(|(fragment, _)| message.contains(fragment))
        .map(|(_, reason)| (*reason).to_string())
}

/// A `retryDelay` as JSON: the protobuf string form, or the `{"seconds", "nanos"}` object form.
fn duration_value(v: &Value) -> Option<Duration> {
    match v {
        Value::String(s) => parse_duration(s),
        Value::Object(o) => {
            let secs = match o.get("seconds") {
                Some(Value::String(s)) => s.parse::<u64>().ok()?,
                Some(n) => n.as_u64()?,
                None => 0,
            };
            let nanos = o.get("nanos").and_then(Value::as_u64).unwrap_or(0);
            let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000)?;
            Some(Duration::new(secs, nanos))
        }
        _ => None,
    }
}

/// Parse a protobuf JSON duration: `"26s"`, `"0.5s"`, `"1.234567s"`, `"0s"`. Digits past the
/// ninth fractional one are ignored. Negative, empty or malformed input is `None`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let number = s.trim().strip_suffix('s')?;
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (number, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = whole.parse::<u64>().ok()?;
    let nanos = match frac {
        None => 0,
        Some(f) if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(f) => {
            let digits: String = f.chars().take(9).collect();
            let scale = 10u32.pow(9 - u32::try_from(digits.len()).ok()?);
            digits.parse::<u32>().ok()? * scale
        }
    };
    Some(Duration::new(secs, nanos))
}

/// The model a native request is for: `{model}` in `.../models/{model}:{method}` or
/// `.../tunedModels/{model}:{method}` (any version prefix, query and fragment ignored).
/// Paths without a `:method` (models.list, models.get, files, caches) have no model: they do not
/// spend a model's quota, so any key may serve them.
pub fn model_from_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut segments = path.split('/');
    while let Some(segment) = segments.next() {
        if segment != "models" && segment != "tunedModels" {
            continue;
        }
        let next = segments.next()?;
        let Some((model, method)) = next.split_once(':') else {
            continue;
        };
        let valid = |s: &str| {
            !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        };
        if valid(model) && valid(method) {
            return Some(model.to_string());
        }
        return None;
    }
    None
}

/// The model a request body names, for requests whose path names none (SPEC §5): `model`
/// (Interactions, cachedContents, decisions), `agent` (agent interactions), `voice.model`,
/// `baseModel` (tuning); without a `models/` prefix. Only a JSON object is read, and only those
/// fields (a typed reader: everything else is skipped).
pub fn model_from_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Voice {
        model: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<String>,
        agent: Option<String>,
        voice: Option<Voice>,
        #[serde(rename = "baseModel")]
        base_model: Option<String>,
    }
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    let named: Named = serde_json::from_slice(body).ok()?;
    let name = named.model.or(named.agent).or(named.voice.and_then(|v| v.model)).or(named.base_model)?;
    let name = name.trim().trim_start_matches("models/");
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    valid.then(|| name.to_string())
}

/// The model a 429's `QuotaFailure` names (`quotaDimensions.model`): for the effect of a quota
/// error it wins over the model of the request (SPEC §5).
pub fn quota_model(status: u16, body: &[u8]) -> Option<String> {
    if status != 429 {
        return None;
    }
    let err = GoogleError::parse(body)?;
    err.details_of("google.rpc.QuotaFailure")
        .filter_map(|d| d.get("violations")?.as_array())
        .flatten()
        .find_map(|v| v.pointer("/quotaDimensions/model")?.as_str().map(str::to_string))
        .filter(|m| !m.is_empty())
}

/// `path` with its model segment `models/{from}` (or `tunedModels/{from}`, before `:method`,
/// `/` or the end) naming `to` instead; `None` when no segment names `from`.
pub fn path_with_model(path: &str, from: &str, to: &str) -> Option<String> {
    for marker in ["/models/", "/tunedModels/"] {
        let mut at = 0;
        while let Some(i) = path[at..].find(marker) {
            let start = at + i + marker.len();
            if let Some(after) = path[start..].strip_prefix(from)
                && (after.is_empty() || after.starts_with([':', '/', '?']))
            {
                return Some(format!("{}{to}{after}", &path[..start]));
            }
            at = start;
        }
    }
    None
}

/// Whether a non-streamed `generateContent` answer is empty (SPEC §14): a JSON object whose
/// candidates (none at all counts) all lack parts, without a `promptFeedback.blockReason`.
pub fn empty_answer(body: &[u8]) -> bool {
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(body) else { return false };
    if v.contains_key("error") || v.get("promptFeedback").and_then(|f| f.get("blockReason")).is_some() {
        return false;
    }
    let candidates = v.get("candidates").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    candidates
        .iter()
        .all(|c| c.pointer("/content/parts").and_then(Value::as_array).is_none_or(|parts| parts.is_empty()))
}

/// The limits a 429's `QuotaFailure` names (SPEC §14): each violation's `quotaId` (requests or
/// tokens, per minute or per day), `quotaValue` (a string or a number) and
/// `quotaDimensions.model`. Violations of kinds the pool does not model are left out.
pub fn violations(status: u16, body: &[u8]) -> Vec<crate::limits::Violation> {
    if status != 429 {
        return Vec::new();
    }
    let Some(err) = GoogleError::parse(body) else { return Vec::new() };
    err.details_of("google.rpc.QuotaFailure")
        .filter_map(|d| d.get("violations")?.as_array())
        .flatten()
        .filter_map(|v| {
            let kind = crate::limits::Violation::kind_of(v.get("quotaId")?.as_str()?)?;
            let value = match v.get("quotaValue")? {
                Value::String(s) => s.trim().parse::<u64>().ok()?,
                n => n.as_u64()?,
            };
            let model = v.pointer("/quotaDimensions/model").and_then(Value::as_str).filter(|m| !m.is_empty());
            Some(crate::limits::Violation { kind, value, model: model.map(str::to_string) })
        })
        .filter(|v| v.value > 0)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_live_close_before_the_first_frame_is_classified_by_its_reason() {
        let check =
            |reason: &str, want: Option<Outcome>| assert_eq!(classify_live_close(reason), want, "{reason}");
        check(
            "You exceeded your current quota, please check your plan and billing details.",
            Some(Outcome::RateLimited),
        );
        check(
            "Quota exceeded for metric: generate_content_free_tier_requests, GenerateRequestsPerDayPerProjectPerModel",
            Some(Outcome::QuotaPerDay),
        );
        check(
            "API key not valid. Please pass a valid API key.",
            Some(Outcome::KeyInvalid { reason: "API_KEY_INVALID".into() }),
        );
        check("Request contains an invalid argument.", None);
        check("", None);
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn per_minute(s: u64) -> Outcome {
        Outcome::QuotaPerMinute { retry: secs(s) }
    }

    fn invalid(reason: &str) -> Outcome {
        Outcome::KeyInvalid { reason: reason.to_string() }
    }

    /// One table drives classification: (name, status, body, expected).
    fn check(cases: &[(&str, u16, String, Outcome)]) {
        for (name, status, body, expected) in cases {
            let got = classify(*status, body.as_bytes());
            assert_eq!(&got, expected, "case {name}: status {status}, body {body}");
        }
    }

    fn quota_failure(quota_id: &str) -> Value {
        json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
                "quotaValue": "200"
            }]
        })
    }

    fn help() -> Value {
        json!({
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "Learn more about Gemini API quotas",
                       "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]
        })
    }

    fn retry_info(delay: &str) -> Value {
        json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    }

    fn error(code: u16, status: &str, message: &str, details: Vec<Value>) -> String {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}}).to_string()
    }

    const QUOTA_MSG: &str = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.";

    fn e429(details: Vec<Value>) -> String {
        error(429, "RESOURCE_EXHAUSTED", QUOTA_MSG, details)
    }

    #[test]
    fn classify_429_table() {
        let per_day = "GenerateRequestsPerDayPerProjectPerModel-FreeTier";
        let per_min = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier";
        let tokens_min = "GenerateContentInputTokensPerModelPerMinute-FreeTier";
        check(&[
            (
                "per-day, the usual order",
                429,
                e429(vec![quota_failure(per_day), help(), retry_info("26s")]),
                Outcome::QuotaPerDay,
            ),
            (
                "per-day carrying retryDelay 0s is still per-day",
                429,
                e429(vec![quota_failure(per_day), retry_info("0s")]),
                Outcome::QuotaPerDay,
            ),
            (
                "per-day, details in reverse order",
                429,
                e429(vec![retry_info("26s"), help(), quota_failure(per_day)]),
                Outcome::QuotaPerDay,
            ),
            (
                "per-day wins over per-minute in the same body",
                429,
                e429(vec![quota_failure(per_min), retry_info("12s"), quota_failure(per_day)]),
                Outcome::QuotaPerDay,
            ),
            (
                "per-day violation second in one QuotaFailure",
                429,
                e429(vec![json!({
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaId": per_min}, {"quotaId": per_day}]
                })]),
                Outcome::QuotaPerDay,
            ),
            (
                "per-minute with RetryInfo 26s",
                429,
                e429(vec![quota_failure(per_min), help(), retry_info("26s")]),
                per_minute(26),
            ),
            (
                "per-minute input tokens (real gemini-cli shape)",
                429,
                e429(vec![quota_failure(tokens_min), help(), retry_info("41s")]),
                per_minute(41),
            ),
            (
                "per-minute without RetryInfo waits 60 s",
                429,
                e429(vec![quota_failure(per_min), help()]),
                per_minute(60),
            ),
            ("RetryInfo alone", 429, e429(vec![retry_info("7s")]), per_minute(7)),
            (
                "RetryInfo 0s is raised to 1 s",
                429,
                e429(vec![quota_failure(per_min), retry_info("0s")]),
                per_minute(1),
            ),
            (
                "fractional RetryInfo kept",
                429,
                e429(vec![retry_info("1.5s")]),
                Outcome::QuotaPerMinute { retry: Duration::from_millis(1500) },
            ),
            (
                "absurd RetryInfo clamped to a day",
                429,
                e429(vec![retry_info("99999999999s")]),
                per_minute(86_400),
            ),
            (
                "unparsable RetryInfo with QuotaFailure falls back to 60 s",
                429,
                e429(vec![quota_failure(per_min), retry_info("soon")]),
                per_minute(60),
            ),
            (
                "RetryInfo in object form",
                429,
                e429(vec![json!({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                  "retryDelay": {"seconds": 9, "nanos": 0}})]),
                per_minute(9),
            ),
            (
                "unknown quotaId without PerDay is per-minute",
                429,
                e429(vec![quota_failure("SomethingNew-FreeTier")]),
                per_minute(60),
            ),
            (
                "no details",
                429,
                json!({"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                                 "status": "RESOURCE_EXHAUSTED"}})
                .to_string(),
                Outcome::RateLimited,
            ),
            ("only a Help detail counts as no details", 429, e429(vec![help()]), Outcome::RateLimited),
            (
                "details not an array",
                429,
                json!({"error": {"code": 429, "details": {"@type": "x"}}}).to_string(),
                Outcome::RateLimited,
            ),
            (
                "detail without @type is ignored",
                429,
                e429(vec![json!({"violations": [{"quotaId": per_day}]})]),
                Outcome::RateLimited,
            ),
            ("429 body not JSON", 429, "Too Many Requests".to_string(), Outcome::RateLimited),
            ("429 empty body", 429, String::new(), Outcome::RateLimited),
            (
                "OpenAI-layer array body, per-day",
                429,
                format!("[{}]", e429(vec![quota_failure(per_day)])),
                Outcome::QuotaPerDay,
            ),
            (
                "violations not an array",
                429,
                e429(vec![json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                                  "violations": "PerDay"})]),
                per_minute(60),
            ),
        ]);
    }

    #[test]
    fn classify_key_problems_table() {
        let invalid_key = error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}
            })],
        );
        let suspended = error(
            403,
            "PERMISSION_DENIED",
            "Permission denied: Consumer 'api_key:AIzaSyRAWKEYRAWKEYRAWKEYRAWKEYRAWKEY12' has been suspended.",
            vec![
                json!({
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "CONSUMER_SUSPENDED",
                    "domain": "googleapis.com",
                    "metadata": {"consumer": "projects/895908428397",
                                 "service": "generativelanguage.googleapis.com",
                                 "containerInfo": "api_key:AIzaSyRAWKEYRAWKEYRAWKEYRAWKEYRAWKEY12"}
                }),
                json!({"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
                       "message": "Permission denied: Consumer has been suspended."}),
            ],
        );
        let service_blocked = error(
            403,
            "PERMISSION_DENIED",
            "Requests to this API generativelanguage.googleapis.com method google.ai.generativelanguage.v1beta.GenerativeService.StreamGenerateContent are blocked.",
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_SERVICE_BLOCKED",
                "domain": "googleapis.com",
                "metadata": {"consumer": "projects/177838813423",
                             "service": "generativelanguage.googleapis.com"}
            })],
        );
        let gemini_disabled = error(
            403,
            "PERMISSION_DENIED",
            "Generative Language API has not been used in project 411082643095 before or it is disabled.",
            vec![
                json!({"@type": "type.googleapis.com/google.rpc.Help", "links": []}),
                json!({
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {"consumer": "projects/411082643095",
                                 "service": "generativelanguage.googleapis.com"}
                }),
            ],
        );
        let other_disabled = error(
            403,
            "PERMISSION_DENIED",
            "Gemini for Google Cloud API has not been used in project p before or it is disabled.",
            vec![json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "metadata": {"service": "cloudaicompanion.googleapis.com"}
            })],
        );
        let leaked = json!({"error": {"code": 403,
            "message": "Your API key was reported as leaked. Please use another API key.",
            "status": "PERMISSION_DENIED"}})
        .to_string();
        let foreign_file = json!({"error": {"code": 403,
            "message": "You do not have permission to access the File abc123 or it may not exist.",
            "status": "PERMISSION_DENIED"}})
        .to_string();
        let caller = json!({"error": {"code": 403, "message": "The caller does not have permission",
            "status": "PERMISSION_DENIED"}})
        .to_string();
        let oauth_only = error(
            401,
            "UNAUTHENTICATED",
            "API keys are not supported by this API. Expected OAuth2 access token or other authentication credentials that assert a principal.",
            vec![json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                         "reason": "CREDENTIALS_MISSING", "domain": "googleapis.com"})],
        );
        let expired = json!({"error": {"code": 400,
            "message": "API key expired. Please renew the API key.", "status": "INVALID_ARGUMENT"}})
        .to_string();
        check(&[
            ("400 API_KEY_INVALID", 400, invalid_key.clone(), invalid("API_KEY_INVALID")),
            (
                "400 'API key not valid' without details",
                400,
                json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                 "status": "INVALID_ARGUMENT"}})
                .to_string(),
                invalid("API_KEY_INVALID"),
            ),
            ("400 API key expired (message only)", 400, expired, invalid("API_KEY_EXPIRED")),
            ("403 CONSUMER_SUSPENDED", 403, suspended, invalid("CONSUMER_SUSPENDED")),
            ("403 API_KEY_SERVICE_BLOCKED", 403, service_blocked, invalid("API_KEY_SERVICE_BLOCKED")),
            ("403 SERVICE_DISABLED for Gemini", 403, gemini_disabled, invalid("SERVICE_DISABLED")),
            ("403 SERVICE_DISABLED for another service", 403, other_disabled, Outcome::ClientError),
            ("403 reported as leaked", 403, leaked, invalid("API_KEY_LEAKED")),
            ("403 someone else's file", 403, foreign_file, Outcome::ClientError),
            ("403 generic caller permission", 403, caller, Outcome::ClientError),
            ("401 OAuth-only endpoint", 401, oauth_only, Outcome::ClientError),
            ("401 invalid key", 401, invalid_key.replace("400", "401"), invalid("API_KEY_INVALID")),
            ("403 body not JSON", 403, "<html>Forbidden</html>".into(), Outcome::ClientError),
            (
                "400 invalid argument about the request",
                400,
                json!({"error": {"code": 400, "message": "* GenerateContentRequest.contents: contents is not specified",
                                 "status": "INVALID_ARGUMENT"}})
                .to_string(),
                Outcome::ClientError,
            ),
            (
                "400 location not supported is the deployment's problem, not a key's",
                400,
                json!({"error": {"code": 400, "message": "User location is not supported for the API use.",
                                 "status": "FAILED_PRECONDITION"}})
                .to_string(),
                Outcome::ClientError,
            ),
            (
                "a key reason is not a 404",
                404,
                invalid_key.replace("400", "404"),
                Outcome::ClientError,
            ),
        ]);
    }

    #[test]
    fn classify_status_families() {
        let cases: Vec<(&str, u16, String, Outcome)> = vec![
            ("200", 200, "{}".into(), Outcome::Success),
            ("200 not JSON", 200, "data: {\"x\":1}\n\n".into(), Outcome::Success),
            ("204", 204, String::new(), Outcome::Success),
            ("500", 500, "{}".into(), Outcome::Transient),
            ("502", 502, "bad gateway".into(), Outcome::Transient),
            (
                "503 overloaded",
                503,
                json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.",
                                 "status": "UNAVAILABLE"}})
                .to_string(),
                Outcome::Transient,
            ),
            ("504", 504, String::new(), Outcome::Transient),
            ("404", 404, "{}".into(), Outcome::ClientError),
            ("413", 413, String::new(), Outcome::ClientError),
            ("501", 501, String::new(), Outcome::ClientError),
            ("301", 301, String::new(), Outcome::ClientError),
        ];
        check(&cases);
    }

    #[test]
    fn disabled_reason_never_carries_upstream_text() {
        let body = error(
            403,
            "PERMISSION_DENIED",
            "Permission denied: Consumer 'api_key:AIzaSySECRETSECRET' has been suspended.",
            vec![],
        );
        let Outcome::KeyInvalid { reason } = classify(403, body.as_bytes()) else {
            panic!("expected KeyInvalid");
        };
        assert_eq!(reason, "CONSUMER_SUSPENDED");
        assert!(!reason.contains("AIza"));
    }

    #[test]
    fn classify_never_panics_on_garbage() {
        let deep = "[".repeat(100_000);
        let bodies: Vec<Vec<u8>> = vec![
            vec![0xff, 0xfe, 0x00],
            b"null".to_vec(),
            b"42".to_vec(),
            b"\"error\"".to_vec(),
            b"{\"error\": null}".to_vec(),
            b"{\"error\": {\"details\": [null, 1, \"x\", {\"@type\": 5}]}}".to_vec(),
            b"{\"error\": {\"message\": 12, \"details\": [{\"@type\": \"type.googleapis.com/google.rpc.ErrorInfo\", \"reason\": 1}]}}".to_vec(),
            b"{\"error\": {\"details\": [{\"@type\": \"type.googleapis.com/google.rpc.RetryInfo\", \"retryDelay\": {\"seconds\": -1, \"nanos\": 5000000000}}]}}".to_vec(),
            deep.into_bytes(),
            b"{\"error\":".to_vec(),
        ];
        for body in &bodies {
            for status in [200, 400, 401, 403, 429, 500, 599, 0, 999] {
                let _ = classify(status, body);
            }
        }
    }

    #[test]
    fn parse_duration_table() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("26s", Some(secs(26))),
            ("0s", Some(secs(0))),
            ("0.5s", Some(Duration::from_millis(500))),
            ("1.234567s", Some(Duration::new(1, 234_567_000))),
            ("1.000000001s", Some(Duration::new(1, 1))),
            ("1.0000000019s", Some(Duration::new(1, 1))),
            (" 3s ", Some(secs(3))),
            ("18446744073709551615s", Some(secs(u64::MAX))),
            ("18446744073709551616s", None),
            ("", None),
            ("s", None),
            ("26", None),
            ("-1s", None),
            ("+1s", None),
            ("1.s", None),
            (".5s", None),
            ("1.5.5s", None),
            ("1e3s", None),
            ("26ms", None),
            ("½s", None),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn model_from_body_and_from_a_quota_failure() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (br#"{"model": "gemini-3-flash", "input": "hi"}"#, Some("gemini-3-flash")),
            (br#"{"model": "models/gemini-2.5-flash", "contents": []}"#, Some("gemini-2.5-flash")),
            (br#"{"agent": "deep-research-pro-preview", "input": "x"}"#, Some("deep-research-pro-preview")),
            (br#"{"voice": {"model": "gemini-tts-1"}}"#, Some("gemini-tts-1")),
            (br#"{"baseModel": "models/gemini-2.5-flash-001"}"#, Some("gemini-2.5-flash-001")),
            (br#"{"model": 7}"#, None),
            (br#"{"model": "a/b"}"#, None),
            (br#"[{"model": "x"}]"#, None),
            (b"", None),
        ];
        for (body, want) in cases {
            assert_eq!(model_from_body(body).as_deref(), *want, "{}", String::from_utf8_lossy(body));
        }
        let body = serde_json::to_vec(&json!({"error": {"code": 429, "details": [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0s"},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                 "quotaDimensions": {"location": "global", "model": "gemini-3-flash"}}]}]}}))
        .unwrap();
        assert_eq!(quota_model(429, &body).as_deref(), Some("gemini-3-flash"));
        assert_eq!(quota_model(400, &body), None);
        assert_eq!(quota_model(429, br#"{"error": {"code": 429}}"#), None);
    }

    #[test]
    fn model_from_path_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/v1beta/models/gemini-2.5-flash:generateContent", Some("gemini-2.5-flash")),
            ("/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse", Some("gemini-2.0-flash")),
            ("/v1beta/models/gemini-2.5-pro:countTokens?key=abc", Some("gemini-2.5-pro")),
            ("/v1beta/models/text-embedding-004:batchEmbedContents", Some("text-embedding-004")),
            ("/v1beta/models/gemini-embedding-001:embedContent", Some("gemini-embedding-001")),
            ("/v1beta/models/imagen-3.0-generate-002:predict", Some("imagen-3.0-generate-002")),
            ("/v1beta/tunedModels/my-tuned-7:generateContent", Some("my-tuned-7")),
            ("/v1beta/models/gemini-2.5-flash:generateContent#frag", Some("gemini-2.5-flash")),
            ("/v1beta/models", None),
            ("/v1beta/models/", None),
            ("/v1beta/models?pageSize=50", None),
            ("/v1beta/models/gemini-2.5-flash", None),
            ("/v1beta/models/:generateContent", None),
            ("/v1beta/models/gemini-2.5-flash:", None),
            ("/v1beta/files/abc", None),
            ("/upload/v1beta/files?uploadType=resumable", None),
            ("/v1beta/cachedContents", None),
            ("/v1beta/openai/chat/completions", None),
            ("/v1beta/models/gemini 2:generateContent", None),
            ("", None),
            ("models/gemini-2.5-flash:generateContent", Some("gemini-2.5-flash")),
        ];
        for (path, expected) in cases {
            assert_eq!(model_from_path(path).as_deref(), *expected, "path {path:?}");
        }
    }

    #[test]
    fn outcomes_that_retry() {
        assert!(!Outcome::Success.retry_on_next_key());
        assert!(!Outcome::ClientError.retry_on_next_key());
        assert!(Outcome::QuotaPerDay.retry_on_next_key());
        assert!(Outcome::Transient.retry_on_next_key());
        assert!(invalid("X").retry_on_next_key());
    }

    #[test]
    fn violations_name_the_limits_google_applies() {
        use crate::limits::{Kind, Violation};
        let body = error(
            429,
            "RESOURCE_EXHAUSTED",
            QUOTA_MSG,
            vec![
                help(),
                quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
                json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier", "quotaValue": 250000},
                {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaValue": "x"},
                {"quotaId": "Unknown", "quotaValue": "3"}]}),
                retry_info("26s"),
            ],
        );
        assert_eq!(
            violations(429, body.as_bytes()),
            vec![
                Violation { kind: Kind::Rpm, value: 200, model: Some("gemini-2.0-flash".into()) },
                Violation { kind: Kind::Tpm, value: 250_000, model: None },
            ]
        );
        assert!(violations(200, body.as_bytes()).is_empty());
        assert!(violations(429, b"not json").is_empty());
    }

    #[test]
    fn a_path_names_another_model() {
        let p = |path, from, to| path_with_model(path, from, to);
        assert_eq!(
            p("/v1beta/models/claude-x:streamGenerateContent?alt=sse", "claude-x", "gemini-2.5-pro")
                .as_deref(),
            Some("/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            p("/v1/models/gpt-4o", "gpt-4o", "gemini-2.5-flash").as_deref(),
            Some("/v1/models/gemini-2.5-flash")
        );
        assert_eq!(p("/v1/models/gpt-4o-mini:x", "gpt-4o", "g"), None);
        assert_eq!(p("/v1beta/files/abc", "abc", "g"), None);
    }

    #[test]
    fn empty_answers_are_told_from_blocked_and_full_ones() {
        let cases = [
            (r#"{"candidates": [{"content": {"role": "model"}, "finishReason": "STOP"}]}"#, true),
            (r#"{"candidates": [{"content": {"parts": []}}], "usageMetadata": {}}"#, true),
            (r#"{"usageMetadata": {"totalTokenCount": 3}}"#, true),
            (r#"{"candidates": []}"#, true),
            (r#"{"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}"#, false),
            (r#"{"candidates": [{"content": {}}, {"content": {"parts": [{"text": ""}]}}]}"#, false),
            (r#"{"promptFeedback": {"blockReason": "SAFETY"}}"#, false),
            (r#"{"error": {"code": 500}}"#, false),
            ("not json", false),
            ("[]", false),
        ];
        for (body, empty) in cases {
            assert_eq!(empty_answer(body.as_bytes()), empty, "{body}");
        }
    }
}
