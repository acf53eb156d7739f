//! OpenAI-shaped error bodies: the one place that picks OpenAI's `type` and default `code` for an
//! HTTP status, and the translation of an upstream Gemini error body to that shape.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness; never chooses the HTTP status
//! (the caller keeps the status it has, this only shapes the body).
//!
//! `type` / `code` values follow what api.openai.com itself sends:
//! - 401: `type: "invalid_request_error"`, `code: "invalid_api_key"` (OpenAI's "Incorrect API key").
//! - 404: `type: "invalid_request_error"`; `code: "model_not_found"` when the missing thing is a
//!   model (the caller passes it, or the upstream Gemini message names `models/...`).
//! - 429: `type: "requests"`, `code: "rate_limit_exceeded"` (OpenAI's rate-limit error).
//! - 5xx: `type: "server_error"`.
//! - every other status (400, 403, 404, 409, 413, 422 ...): `type: "invalid_request_error"`.

use serde_json::Value;

use super::types::{ErrorBody, ErrorObject, to_json};

/// Longest upstream text copied into a message when the upstream body is not Gemini's JSON.
const MAX_RAW_MESSAGE_CHARS: usize = 1000;

/// OpenAI's `error.type` for an HTTP status.
pub fn openai_error_type(status: u16) -> &'static str {
    match status {
        429 => "requests",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's default `error.code` for an HTTP status, used when the caller passes none.
fn default_code(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("invalid_api_key"),
        429 => Some("rate_limit_exceeded"),
        _ => None,
    }
}

/// OpenAI-shaped error body `{"error":{"message","type","param","code"}}` for a status.
pub fn openai_error_body(status: u16, message: &str, param: Option<&str>, code: Option<&str>) -> Value {
    let code = code.or(default_code(status));
    to_json(&ErrorBody {
        error: ErrorObject {
            message: message.to_owned(),
            kind: openai_error_type(status),
            param: param.map(str::to_owned),
            code: code.map(str::to_owned),
        },
    })
}

/// Translates an upstream Gemini error body (`{"error":{"code","message","status","details"}}`, or
/// the one-element array `[{"error":...}]` that streaming endpoints send) to OpenAI's shape, for the
/// same HTTP status.
///
/// - `message`: Gemini's message; for a non-JSON body, its text (trimmed, at most 1000 characters);
///   for an empty one, `upstream returned HTTP <status>`.
/// - `code`: `invalid_api_key` when a detail says `API_KEY_INVALID`; `model_not_found` for a 404
///   whose message names a model; `rate_limit_exceeded` for 429; otherwise Gemini's `status`
///   lower-cased (`invalid_argument`, `permission_denied`, `unavailable` ...), or null.
/// - `param`: the first `fieldViolations[].field` of a `google.rpc.BadRequest` detail, if any.
pub fn gemini_error_to_openai(status: u16, body: &[u8]) -> Value {
    let Some(err) = crate::google_error::GoogleError::parse(body) else {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            format!("upstream returned HTTP {status}")
        } else {
            text.chars().take(MAX_RAW_MESSAGE_CHARS).collect()
        };
        return openai_error_body(status, &message, None, None);
    };

    let message =
        if err.message.is_empty() { format!("upstream returned HTTP {status}") } else { err.message.clone() };
    let google_status = err.status.as_deref();
    let key_invalid =
        err.all_details().any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"));
    let param = err
        .details_of("google.rpc.BadRequest")
        .filter_map(|d| d.get("fieldViolations").and_then(Value::as_array))
        .flatten()
        .find_map(|v| v.get("field").and_then(Value::as_str))
        .map(str::to_owned);

    let code = if key_invalid {
        Some("invalid_api_key".to_owned())
    } else if status == 404 && message.contains("models/") {
        Some("model_not_found".to_owned())
    } else if status == 429 {
        Some("rate_limit_exceeded".to_owned())
    } else {
        google_status.map(str::to_ascii_lowercase)
    };
    openai_error_body(status, &message, param.as_deref(), code.as_deref())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_valid;
    use super::*;

    #[test]
    fn types_and_default_codes_per_status() {
        let cases: [(u16, &str, Option<&str>); 8] = [
            (400, "invalid_request_error", None),
            (401, "invalid_request_error", Some("invalid_api_key")),
            (404, "invalid_request_error", None),
            (413, "invalid_request_error", None),
            (429, "requests", Some("rate_limit_exceeded")),
            (500, "server_error", None),
            (502, "server_error", None),
            (503, "server_error", None),
        ];
        for (status, kind, code) in cases {
            let body = openai_error_body(status, "m", None, None);
            assert_valid("ErrorResponse", &body);
            assert_eq!(body["error"]["type"], kind, "status {status}");
            assert_eq!(body["error"]["code"].as_str(), code, "status {status}");
            assert!(body["error"]["param"].is_null());
        }
    }

    #[test]
    fn explicit_code_and_param_win() {
        let body =
            openai_error_body(404, "The model `x` does not exist", Some("model"), Some("model_not_found"));
        assert_valid("ErrorResponse", &body);
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
    }

    #[test]
    fn gemini_invalid_argument_with_field_violation() {
        let body = json!({"error": {"code": 400, "message": "Invalid value at 'contents[0]'", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                         "fieldViolations": [{"field": "contents[0].parts", "description": "bad"}]}]}});
        let out = gemini_error_to_openai(400, body.to_string().as_bytes());
        assert_valid("ErrorResponse", &out);
        assert_eq!(out["error"]["message"], "Invalid value at 'contents[0]'");
        assert_eq!(out["error"]["type"], "invalid_request_error");
        assert_eq!(out["error"]["code"], "invalid_argument");
        assert_eq!(out["error"]["param"], "contents[0].parts");
    }

    #[test]
    fn gemini_api_key_invalid_and_model_not_found_and_quota() {
        let key = json!({"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}});
        assert_eq!(
            gemini_error_to_openai(400, key.to_string().as_bytes())["error"]["code"],
            "invalid_api_key"
        );

        let nf = json!({"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta",
            "status": "NOT_FOUND"}});
        let out = gemini_error_to_openai(404, nf.to_string().as_bytes());
        assert_eq!(out["error"]["code"], "model_not_found");

        let q = json!([{"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED"}}]);
        let out = gemini_error_to_openai(429, q.to_string().as_bytes());
        assert_valid("ErrorResponse", &out);
        assert_eq!(out["error"]["type"], "requests");
        assert_eq!(out["error"]["code"], "rate_limit_exceeded");
        assert_eq!(out["error"]["message"], "Resource has been exhausted");
    }

    #[test]
    fn gemini_non_json_and_empty_bodies() {
        let out = gemini_error_to_openai(502, b"<html>Bad Gateway</html>\n");
        assert_valid("ErrorResponse", &out);
        assert_eq!(out["error"]["message"], "<html>Bad Gateway</html>");
        assert_eq!(out["error"]["type"], "server_error");

        let out = gemini_error_to_openai(503, b"");
        assert_eq!(out["error"]["message"], "upstream returned HTTP 503");

        let long = "x".repeat(5000);
        let out = gemini_error_to_openai(500, long.as_bytes());
        assert_eq!(out["error"]["message"].as_str().unwrap().len(), MAX_RAW_MESSAGE_CHARS);

        // JSON, but not Gemini's shape: the text is passed on.
        let out = gemini_error_to_openai(500, br#"{"oops":1}"#);
        assert_eq!(out["error"]["message"], r#"{"oops":1}"#);
    }
}
