//! Typed access to the fields of a client's JSON object, each refusal a 400 naming the field
//! (`messages[2].content[0].text`). JSON `null` counts as absent. Shared by the OpenAI and the
//! Anthropic translation cores.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness; never recurses.

use serde_json::{Map, Value};

use super::types::TranslateError;

pub(crate) type Obj = Map<String, Value>;

pub(crate) fn bad(message: impl Into<String>, param: &str) -> TranslateError {
    TranslateError::bad_request(message, Some(param))
}

/// `obj[key]`, with JSON `null` treated as absent (OpenAI clients send explicit nulls freely).
pub(crate) fn field<'a>(obj: &'a Obj, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

pub(crate) fn opt_bool(obj: &Obj, key: &str, param: &str) -> Result<Option<bool>, TranslateError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(TranslateError::wrong_type(param, "a boolean", v)),
    }
}

pub(crate) fn opt_str<'a>(obj: &'a Obj, key: &str, param: &str) -> Result<Option<&'a str>, TranslateError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(TranslateError::wrong_type(param, "a string", v)),
    }
}

pub(crate) fn req_str<'a>(obj: &'a Obj, key: &str, param: &str) -> Result<&'a str, TranslateError> {
    opt_str(obj, key, param)?.ok_or_else(|| TranslateError::missing(param))
}

pub(crate) fn opt_number(obj: &Obj, key: &str) -> Result<Option<Value>, TranslateError> {
    match field(obj, key) {
        None => Ok(None),
        Some(v @ Value::Number(_)) => Ok(Some(v.clone())),
        Some(v) => Err(TranslateError::wrong_type(key, "a number", v)),
    }
}

pub(crate) fn opt_uint(obj: &Obj, key: &str, param: &str) -> Result<Option<u64>, TranslateError> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => {
            v.as_u64().map(Some).ok_or_else(|| TranslateError::wrong_type(param, "a non-negative integer", v))
        }
    }
}

pub(crate) fn as_object<'a>(v: &'a Value, param: &str) -> Result<&'a Obj, TranslateError> {
    v.as_object().ok_or_else(|| TranslateError::wrong_type(param, "an object", v))
}

/// `obj[key]` as an array (absent: empty).
pub(crate) fn opt_array<'a>(obj: &'a Obj, key: &str, param: &str) -> Result<&'a [Value], TranslateError> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(list)) => Ok(list),
        Some(v) => Err(TranslateError::wrong_type(param, "an array", v)),
    }
}

pub(crate) fn opt_object<'a>(
    obj: &'a Obj,
    key: &str,
    param: &str,
) -> Result<Option<&'a Obj>, TranslateError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(TranslateError::wrong_type(param, "an object", v)),
    }
}

/// `obj[key]` as a non-empty array: missing, empty or not an array is a 400 naming `key`.
pub(crate) fn req_nonempty_array<'a>(obj: &'a Obj, key: &str) -> Result<&'a [Value], TranslateError> {
    match field(obj, key) {
        None => Err(TranslateError::missing(key)),
        Some(Value::Array(list)) if list.is_empty() => {
            Err(bad(format!("'{key}' must contain at least one message."), key))
        }
        Some(Value::Array(list)) => Ok(list),
        Some(v) => Err(TranslateError::wrong_type(key, "an array", v)),
    }
}
