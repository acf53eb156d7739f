//! Gemini `models.list` / `models.get` -> OpenAI `GET /v1/models` and `GET /v1/models/{id}`.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness; paging (following
//! `nextPageToken`) is the caller's: it hands over every page it fetched.

use serde_json::Value;

use super::types::{Model, ModelList, strip_models_prefix, to_json};

/// `created` of every model: Gemini publishes no creation time, so a fixed 0 is reported.
pub const MODEL_CREATED: i64 = 0;

fn model(gemini_model: &Value) -> Option<Model> {
    let name = gemini_model.get("name").and_then(Value::as_str)?;
    let id = strip_models_prefix(name);
    (!id.is_empty()).then(|| Model {
        id: id.to_owned(),
        object: "model",
        created: MODEL_CREATED,
        owned_by: "google",
    })
}

/// One Gemini model resource -> OpenAI `Model` (`id` without `models/`, `owned_by: "google"`).
/// A resource without a `name` gives an empty `id`.
pub fn model_to_openai(gemini_model: &Value) -> Value {
    to_json(&model(gemini_model).unwrap_or(Model {
        id: String::new(),
        object: "model",
        created: MODEL_CREATED,
        owned_by: "google",
    }))
}

/// Gemini `models.list` pages (each `{"models":[...],"nextPageToken"?}`) -> OpenAI
/// `{"object":"list","data":[...]}`, in page order; entries without a name are skipped.
pub fn models_to_openai(pages: &[Value]) -> Value {
    let data = pages
        .iter()
        .filter_map(|page| page.get("models").and_then(Value::as_array))
        .flatten()
        .filter_map(model)
        .collect();
    to_json(&ModelList { object: "list", data })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::test_support::assert_valid;
    use super::*;

    fn gemini_model(name: &str) -> Value {
        json!({"name": name, "version": "001", "displayName": "Gemini", "inputTokenLimit": 1_048_576,
               "outputTokenLimit": 65_536, "supportedGenerationMethods": ["generateContent", "countTokens"]})
    }

    #[test]
    fn one_model() {
        let out = model_to_openai(&gemini_model("models/gemini-2.5-flash"));
        assert_valid("Model", &out);
        assert_eq!(
            out,
            json!({"id": "gemini-2.5-flash", "object": "model", "created": 0, "owned_by": "google"})
        );
    }

    #[test]
    fn pages_are_concatenated() {
        let pages = [
            json!({"models": [gemini_model("models/gemini-2.5-flash"), gemini_model("models/gemini-2.5-pro")],
                   "nextPageToken": "tok"}),
            json!({"models": [gemini_model("models/text-embedding-004"), {"displayName": "nameless"}]}),
            json!({}),
        ];
        let out = models_to_openai(&pages);
        assert_valid("ListModelsResponse", &out);
        let ids: Vec<&str> =
            out["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["gemini-2.5-flash", "gemini-2.5-pro", "text-embedding-004"]);
    }

    #[test]
    fn empty_and_odd_inputs() {
        let out = models_to_openai(&[]);
        assert_valid("ListModelsResponse", &out);
        assert_eq!(out, json!({"object": "list", "data": []}));
        let out = model_to_openai(&json!("models/x"));
        assert_valid("Model", &out);
    }
}
