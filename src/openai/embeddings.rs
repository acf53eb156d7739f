//! OpenAI `POST /v1/embeddings` <-> Gemini `batchEmbedContents`.
//!
//! Owns: input forms (a string or a list of strings; token arrays are refused), `dimensions` ->
//! `outputDimensionality`, `encoding_format` (float, or base64 of little-endian f32), and the usage
//! estimate: Gemini's batchEmbedContents reports no token counts, so `prompt_tokens` is an estimate
//! of one token per 4 characters of input (rounded up), unless the response does carry
//! `usageMetadata.promptTokenCount`.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::fields::{bad, field};

use super::types::{
    EmbedCall, Embedding, EmbeddingList, EmbeddingUsage, EmbeddingVector, TranslateError, json_kind,
    strip_models_prefix, to_json,
};

/// Translates an OpenAI embeddings request into one `batchEmbedContents` call.
pub fn embeddings_request_to_gemini(req: &Value) -> Result<EmbedCall, TranslateError> {
    let Some(obj) = req.as_object() else {
        return Err(TranslateError::bad_request(
            format!("The request body must be a JSON object, but got {}.", json_kind(req)),
            None,
        ));
    };
    let model = match field(obj, "model") {
        None => return Err(TranslateError::missing("model")),
        Some(Value::String(m)) => strip_models_prefix(m.trim()).to_owned(),
        Some(v) => return Err(TranslateError::wrong_type("model", "a string", v)),
    };
    if model.is_empty() {
        return Err(bad("'model' must not be empty.", "model"));
    }

    let inputs: Vec<&str> = match field(obj, "input") {
        None => return Err(TranslateError::missing("input")),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(bad("'input' must not be an empty list.", "input"));
        }
        Some(Value::Array(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for (k, item) in list.iter().enumerate() {
                match item {
                    Value::String(s) => out.push(s.as_str()),
                    Value::Number(_) | Value::Array(_) => {
                        return Err(bad(
                            "Token arrays are not supported for 'input': Gemini embeds text, so send strings.",
                            "input",
                        ));
                    }
                    other => {
                        return Err(TranslateError::wrong_type(&format!("input[{k}]"), "a string", other));
                    }
                }
            }
            out
        }
        Some(v) => return Err(TranslateError::wrong_type("input", "a string or an array of strings", v)),
    };
    if let Some(k) = inputs.iter().position(|s| s.is_empty()) {
        let param = if matches!(field(obj, "input"), Some(Value::Array(_))) {
            format!("input[{k}]")
        } else {
            "input".into()
        };
        return Err(bad("'input' must not contain empty strings.", &param));
    }

    let dimensions = match field(obj, "dimensions") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(d) if d > 0 => Some(d),
            _ => return Err(TranslateError::wrong_type("dimensions", "a positive integer", v)),
        },
    };
    let base64 = match field(obj, "encoding_format") {
        None => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(Value::String(f)) => {
            return Err(bad(
                format!(
                    "Invalid value for 'encoding_format': '{f}'. Supported values are: 'float' and 'base64'."
                ),
                "encoding_format",
            ));
        }
        Some(v) => return Err(TranslateError::wrong_type("encoding_format", "a string", v)),
    };

    let gemini_model = format!("models/{model}");
    let requests: Vec<Value> = inputs
        .iter()
        .map(|text| {
            let mut r = json!({"model": gemini_model, "content": {"parts": [{"text": text}]}});
            if let Some(d) = dimensions {
                r["outputDimensionality"] = d.into();
            }
            r
        })
        .collect();
    Ok(EmbedCall { model, count: requests.len(), body: json!({ "requests": requests }), base64 })
}

/// Estimated tokens of the texts in a `batchEmbedContents` body: one per 4 characters, rounded up.
fn estimate_tokens(body: &Value) -> u64 {
    let chars: usize = body
        .get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.pointer("/content/parts").and_then(Value::as_array))
        .flatten()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .map(|t| t.chars().count())
        .sum();
    (chars as u64).div_ceil(4)
}

/// Gemini `batchEmbedContents` response -> OpenAI `CreateEmbeddingResponse`.
pub fn embeddings_response_to_openai(resp: &Value, call: &EmbedCall) -> Value {
    let embeddings = resp.get("embeddings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let data = embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let values: Vec<f64> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|vs| vs.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect())
                .unwrap_or_default();
            let embedding = if call.base64 {
                let bytes: Vec<u8> = values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect();
                EmbeddingVector::Base64(STANDARD.encode(bytes))
            } else {
                EmbeddingVector::Float(values)
            };
            Embedding { object: "embedding", index: i as u64, embedding }
        })
        .collect();
    let prompt_tokens = resp
        .pointer("/usageMetadata/promptTokenCount")
        .and_then(Value::as_u64)
        .unwrap_or_else(|| estimate_tokens(&call.body));
    to_json(&EmbeddingList {
        object: "list",
        data,
        model: call.model.clone(),
        usage: EmbeddingUsage { prompt_tokens, total_tokens: prompt_tokens },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_valid;
    use super::*;

    fn err(req: Value, param: Option<&str>) -> TranslateError {
        let e = embeddings_request_to_gemini(&req).expect_err("expected a 400");
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), param, "{e}");
        e
    }

    #[test]
    fn single_string_input() {
        let call =
            embeddings_request_to_gemini(&json!({"model": "models/text-embedding-004", "input": "hello"}))
                .unwrap();
        assert_eq!(call.model, "text-embedding-004");
        assert_eq!(call.count, 1);
        assert!(!call.base64);
        assert_eq!(
            call.body,
            json!({"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}]})
        );
    }

    #[test]
    fn list_input_with_dimensions_and_base64() {
        let call =
            embeddings_request_to_gemini(&json!({"model": "gemini-embedding-001", "input": ["a", "bb"],
            "dimensions": 768, "encoding_format": "base64", "user": "u"}))
            .unwrap();
        assert_eq!(call.count, 2);
        assert!(call.base64);
        assert_eq!(call.body["requests"][1]["outputDimensionality"], 768);
        assert_eq!(call.body["requests"][1]["content"]["parts"][0]["text"], "bb");
    }

    #[test]
    fn float_response() {
        let call = embeddings_request_to_gemini(
            &json!({"model": "text-embedding-004", "input": ["abcdefgh", "xyz"]}),
        )
        .unwrap();
        let resp = json!({"embeddings": [{"values": [0.1, -0.2, 0.3]}, {"values": [1, 0]}]});
        let out = embeddings_response_to_openai(&resp, &call);
        assert_valid("CreateEmbeddingResponse", &out);
        assert_eq!(out["object"], "list");
        assert_eq!(out["model"], "text-embedding-004");
        assert_eq!(out["data"][0], json!({"object": "embedding", "index": 0, "embedding": [0.1, -0.2, 0.3]}));
        assert_eq!(out["data"][1]["index"], 1);
        assert_eq!(out["data"][1]["embedding"], json!([1.0, 0.0]));
        // 11 characters -> 3 estimated tokens.
        assert_eq!(out["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    }

    #[test]
    fn base64_response_is_little_endian_f32() {
        let call =
            embeddings_request_to_gemini(&json!({"model": "m", "input": "x", "encoding_format": "base64"}))
                .unwrap();
        let out = embeddings_response_to_openai(&json!({"embeddings": [{"values": [1.0, -2.5]}]}), &call);
        let b64 = out["data"][0]["embedding"].as_str().unwrap();
        let bytes = STANDARD.decode(b64).unwrap();
        assert_eq!(bytes.len(), 8);
        assert_eq!(f32::from_le_bytes(bytes[0..4].try_into().unwrap()), 1.0);
        assert_eq!(f32::from_le_bytes(bytes[4..8].try_into().unwrap()), -2.5);
        // The schema only knows float arrays: everything but the embedding itself must conform.
        let mut as_floats = out.clone();
        as_floats["data"][0]["embedding"] = json!([1.0, -2.5]);
        assert_valid("CreateEmbeddingResponse", &as_floats);
    }

    #[test]
    fn upstream_usage_wins_over_estimate_and_garbage_is_tolerated() {
        let call = embeddings_request_to_gemini(&json!({"model": "m", "input": "hello world"})).unwrap();
        let out = embeddings_response_to_openai(
            &json!({"embeddings": [{"values": [0.5]}], "usageMetadata": {"promptTokenCount": 2}}),
            &call,
        );
        assert_eq!(out["usage"]["prompt_tokens"], 2);
        let out = embeddings_response_to_openai(&json!({"embeddings": "nope"}), &call);
        assert_valid("CreateEmbeddingResponse", &out);
        assert_eq!(out["data"], json!([]));
    }

    #[test]
    fn malformed_requests() {
        err(json!([]), None);
        err(json!({"input": "x"}), Some("model"));
        err(json!({"model": 3, "input": "x"}), Some("model"));
        err(json!({"model": "m"}), Some("input"));
        err(json!({"model": "m", "input": []}), Some("input"));
        err(json!({"model": "m", "input": [1, 2, 3]}), Some("input"));
        let e = err(json!({"model": "m", "input": [[1, 2], [3]]}), Some("input"));
        assert!(e.message.contains("Token arrays"));
        err(json!({"model": "m", "input": ["a", {"text": "b"}]}), Some("input[1]"));
        err(json!({"model": "m", "input": ["a", ""]}), Some("input[1]"));
        err(json!({"model": "m", "input": ""}), Some("input"));
        err(json!({"model": "m", "input": "x", "dimensions": 0}), Some("dimensions"));
        err(json!({"model": "m", "input": "x", "dimensions": "256"}), Some("dimensions"));
        err(json!({"model": "m", "input": "x", "encoding_format": "int8"}), Some("encoding_format"));
    }
}
