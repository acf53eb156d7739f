//! Anthropic-shaped error bodies: the one place that picks Anthropic's `error.type` for an HTTP
//! status, and the translation of an upstream Gemini error body (read with
//! `crate::google_error::GoogleError`) to that shape.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness; never chooses the HTTP status
//! (the caller keeps the status it has, this only shapes the body).

use serde_json::{Value, json};

use crate::google_error::GoogleError;
use crate::openai::TranslateError;

/// Longest upstream text copied into a message when the upstream body is not Google's JSON.
const MAX_RAW_MESSAGE_CHARS: usize = 1000;

/// Anthropic's `error.type` for an HTTP status (as api.anthropic.com documents them).
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// `{"type":"error","error":{"type","message"}}` for a status.
pub fn anthropic_error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": anthropic_error_type(status), "message": message}})
}

/// The Anthropic body of a refused request (its message names the field).
pub fn translate_error_body(e: &TranslateError) -> Value {
    anthropic_error_body(e.status, &e.message)
}

/// An upstream Gemini error body (object, or the `[{"error":...}]` of streams) in Anthropic's shape,
/// for the same status: Google's `error.message`; for a body that is not Google's error JSON, its
/// text (trimmed, at most 1000 characters); for an empty one, `upstream returned HTTP <status>`.
pub fn gemini_error_to_anthropic(status: u16, body: &[u8]) -> Value {
    let message = match GoogleError::parse(body) {
        Some(err) if !err.message.is_empty() => err.message,
        Some(_) => String::new(),
        None => String::from_utf8_lossy(body).trim().chars().take(MAX_RAW_MESSAGE_CHARS).collect(),
    };
    let message = if message.is_empty() { format!("upstream returned HTTP {status}") } else { message };
    anthropic_error_body(status, &message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn types_per_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (402, "billing_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (409, "invalid_request_error"),
            (413, "request_too_large"),
            (422, "invalid_request_error"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "overloaded_error"),
            (504, "timeout_error"),
            (529, "overloaded_error"),
        ] {
            let body = anthropic_error_body(status, "m");
            assert_eq!(body, json!({"type": "error", "error": {"type": kind, "message": "m"}}), "{status}");
        }
    }

    #[test]
    fn gemini_errors_keep_googles_message() {
        let body = br#"{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            gemini_error_to_anthropic(429, body),
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Resource has been exhausted"}})
        );
        let arr =
            br#"[{"error": {"code": 400, "message": "Invalid argument", "status": "INVALID_ARGUMENT"}}]"#;
        assert_eq!(gemini_error_to_anthropic(400, arr)["error"]["message"], "Invalid argument");
        assert_eq!(
            gemini_error_to_anthropic(502, b"<html>Bad Gateway</html>\n")["error"]["message"],
            "<html>Bad Gateway</html>"
        );
        assert_eq!(gemini_error_to_anthropic(503, b"")["error"]["message"], "upstream returned HTTP 503");
        assert_eq!(
            gemini_error_to_anthropic(500, br#"{"error": {}}"#)["error"]["message"],
            "upstream returned HTTP 500"
        );
        let long = "x".repeat(5000);
        assert_eq!(
            gemini_error_to_anthropic(500, long.as_bytes())["error"]["message"].as_str().unwrap().len(),
            MAX_RAW_MESSAGE_CHARS
        );
    }

    #[test]
    fn translate_errors_are_invalid_request_errors() {
        let e = TranslateError::missing("max_tokens");
        let body = translate_error_body(&e);
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("max_tokens"));
    }
}
