//! Google's error body, read in one place: `{"error": {"code", "message", "status", "details"}}`,
//! or the array `[{"error": {...}}]` that JSON-array streams and Gemini's OpenAI layer send (the
//! first element that carries an error). Details are kept with their `@type` shortened to the
//! name after the last `/` (`google.rpc.QuotaFailure`), so readers look them up by type, never by
//! position.
//!
//! Pure: no I/O, no locks, no clock; never panics, whatever the bytes.

use serde_json::Value;

/// The parts of a Google error that the proxy reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GoogleError {
    pub code: Option<u64>,
    /// `error.message`, empty when absent.
    pub message: String,
    /// `error.status` (`RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, ...).
    pub status: Option<String>,
    /// `(type name, detail)`; a detail without `@type` has an empty type name.
    pub details: Vec<(String, Value)>,
}

impl GoogleError {
    /// The error of a body, if it is Google's error JSON.
    pub fn parse(body: &[u8]) -> Option<GoogleError> {
        serde_json::from_slice::<Value>(body).ok().as_ref().and_then(GoogleError::from_value)
    }

    /// The error of a parsed body or stream event, if it carries one.
    pub fn from_value(value: &Value) -> Option<GoogleError> {
        let error = match value {
            Value::Array(items) => items.iter().find_map(|item| item.get("error").filter(|e| e.is_object())),
            other => other.get("error").filter(|e| e.is_object()),
        }?;
        let details = error
            .get("details")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|d| {
                        let ty = d.get("@type").and_then(Value::as_str).unwrap_or_default();
                        (ty.rsplit('/').next().unwrap_or(ty).to_string(), d.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(GoogleError {
            code: error.get("code").and_then(Value::as_u64),
            message: error.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            status: error.get("status").and_then(Value::as_str).map(str::to_string),
            details,
        })
    }

    /// The details of one type (`google.rpc.RetryInfo`, ...).
    pub fn details_of<'a>(&'a self, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.details.iter().filter(move |(t, _)| t == ty).map(|(_, d)| d)
    }

    /// Every detail, whatever its type.
    pub fn all_details(&self) -> impl Iterator<Item = &Value> {
        self.details.iter().map(|(_, d)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_non_errors() {
        let body = br#"{"error": {"code": 429, "message": "m", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "5s"}, {"reason": "X"}]}}"#;
        let e = GoogleError::parse(body).unwrap();
        assert_eq!(
            (e.code, e.message.as_str(), e.status.as_deref()),
            (Some(429), "m", Some("RESOURCE_EXHAUSTED"))
        );
        assert_eq!(e.details_of("google.rpc.RetryInfo").count(), 1);
        assert_eq!(e.details[1].0, "", "a detail without @type is kept, untyped");
        let arr = br#"[{"candidates": []}, {"error": {"message": "in an array"}}]"#;
        assert_eq!(GoogleError::parse(arr).unwrap().message, "in an array");
        for not in [&b"{}"[..], b"[]", b"not json", br#"{"error": "a string"}"#, b""] {
            assert_eq!(GoogleError::parse(not), None, "{}", String::from_utf8_lossy(not));
        }
    }
}
