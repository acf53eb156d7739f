//! Wire types of the OpenAI surface: the calls the translators hand to the caller (`ChatCall`,
//! `EmbedCall`), the one error type (`TranslateError`), and the serde structs of every OpenAI object
//! this module emits (chat completion, chunk, model, embedding list, error body).
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness: values in, values out.
//! Gemini input is read as `serde_json::Value` by the translators themselves (upstream shapes vary
//! between model generations and a lenient walk is safer than a strict struct there).

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::error::openai_error_body;

/// A request the translator refused: always the client's fault (400), or an unknown thing (404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// HTTP status to answer with: 400 or 404.
    pub status: u16,
    /// Human-readable message, naming the rule that was broken.
    pub message: String,
    /// The offending field, in OpenAI's notation (`messages[2].content[0].image_url`).
    pub param: Option<String>,
    /// OpenAI-style machine code, when one applies.
    pub code: Option<String>,
}

impl TranslateError {
    /// A 400 naming `param`.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        TranslateError { status: 400, message: message.into(), param: param.map(str::to_owned), code: None }
    }

    /// A 400 for a field holding the wrong JSON type.
    pub fn wrong_type(param: &str, expected: &str, got: &Value) -> Self {
        TranslateError::bad_request(
            format!("Invalid type for '{param}': expected {expected}, but got {}.", json_kind(got)),
            Some(param),
        )
    }

    /// A 400 for a required field that is absent (or null).
    pub fn missing(param: &str) -> Self {
        TranslateError::bad_request(format!("Missing required parameter: '{param}'."), Some(param))
    }

    /// The OpenAI-shaped body `{"error":{"message","type","param","code"}}` for this error.
    pub fn to_openai_body(&self) -> Value {
        openai_error_body(self.status, &self.message, self.param.as_deref(), self.code.as_deref())
    }
}

impl fmt::Display for TranslateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.param {
            Some(p) => write!(f, "{} ({}; param {p})", self.message, self.status),
            None => write!(f, "{} ({})", self.message, self.status),
        }
    }
}

impl std::error::Error for TranslateError {}

/// Result of translating an OpenAI chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCall {
    /// Gemini model id, without the `models/` prefix.
    pub model: String,
    /// `stream: true` was asked for.
    pub stream: bool,
    /// `stream_options.include_usage: true` was asked for.
    pub include_usage: bool,
    /// The Gemini `generateContent` request body.
    pub body: Value,
}

/// Result of translating an OpenAI embeddings request.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedCall {
    /// Gemini model id, without the `models/` prefix.
    pub model: String,
    /// The Gemini `batchEmbedContents` request body.
    pub body: Value,
    /// `encoding_format: "base64"` was asked for.
    pub base64: bool,
    /// Number of inputs (one Gemini request each).
    pub count: usize,
}

/// The JSON type name of a value, for error messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Strips a leading `models/` from a Gemini model name.
pub fn strip_models_prefix(name: &str) -> &str {
    name.strip_prefix("models/").unwrap_or(name)
}

/// Serializes one of the wire structs below. They hold only strings, numbers, vectors and
/// `Value`s, so serialization cannot fail; should it ever, the result is an OpenAI error object
/// rather than a panic.
pub fn to_json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_else(|e| {
        openai_error_body(500, &format!("internal error: cannot serialize response: {e}"), None, None)
    })
}

// ---------------------------------------------------------------------------------------------
// OpenAI objects we emit.
// ---------------------------------------------------------------------------------------------

/// `chat.completion`
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One choice of a `chat.completion`.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub index: u64,
    pub message: AssistantMessage,
    /// Always `null`: Gemini log-probabilities are not requested.
    pub logprobs: Option<Value>,
    pub finish_reason: &'static str,
}

/// The assistant message of a choice.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: Option<String>,
    /// Non-standard (DeepSeek / vLLM convention): the model's thought summaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// A function tool call, complete (`chat.completion`) or as a stream delta (with `index`).
#[derive(Debug, Clone, Serialize)]
pub struct ToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
    /// Gemini's `thoughtSignature`, as Google's own OpenAI layer carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_content: Option<ExtraContent>,
}

/// Name and JSON-encoded arguments of a tool call.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// `extra_content` of a tool call: `{"google":{"thought_signature":"..."}}`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtraContent {
    pub google: GoogleExtra,
}

/// The Google part of `extra_content`.
#[derive(Debug, Clone, Serialize)]
pub struct GoogleExtra {
    pub thought_signature: String,
}

/// `CompletionUsage`
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    pub completion_tokens_details: CompletionTokensDetails,
}

/// `CompletionUsage.prompt_tokens_details`
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
}

/// `CompletionUsage.completion_tokens_details`
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
}

/// `chat.completion.chunk`
#[derive(Debug, Clone, Serialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    /// Absent without `include_usage`; `null` on every chunk but the last with it; the totals on
    /// the last one (OpenAI's documented behaviour).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// One choice of a chunk.
#[derive(Debug, Clone, Serialize)]
pub struct ChunkChoice {
    pub index: u64,
    pub delta: Delta,
    pub logprobs: Option<Value>,
    pub finish_reason: Option<&'static str>,
}

/// The delta of a chunk choice.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

/// `Model`
#[derive(Debug, Clone, Serialize)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    pub created: i64,
    pub owned_by: &'static str,
}

/// `ListModelsResponse`
#[derive(Debug, Clone, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<Model>,
}

/// `CreateEmbeddingResponse`
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingList {
    pub object: &'static str,
    pub data: Vec<Embedding>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

/// One `Embedding`.
#[derive(Debug, Clone, Serialize)]
pub struct Embedding {
    pub object: &'static str,
    pub index: u64,
    pub embedding: EmbeddingVector,
}

/// Floats, or base64 of little-endian f32 when `encoding_format: "base64"`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EmbeddingVector {
    Float(Vec<f64>),
    Base64(String),
}

/// `CreateEmbeddingResponse.usage`
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

/// `ErrorResponse`
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// `Error`: every field present, `param` and `code` null when not applicable.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn translate_error_renders_openai_body() {
        let e = TranslateError::missing("model");
        assert_eq!(e.status, 400);
        let body = e.to_openai_body();
        assert_eq!(body["error"]["param"], "model");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(body["error"]["code"].is_null());
        assert!(e.to_string().contains("param model"));
    }

    #[test]
    fn wrong_type_names_field_and_kinds() {
        let e = TranslateError::wrong_type("temperature", "a number", &json!("hot"));
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(e.message.contains("got a string"), "{}", e.message);
    }

    #[test]
    fn chunk_usage_tri_state_serializes_as_absent_null_or_object() {
        let mk = |usage| ChatCompletionChunk {
            id: "x".into(),
            object: "chat.completion.chunk",
            created: 1,
            model: "m".into(),
            choices: vec![],
            usage,
        };
        assert!(to_json(&mk(None)).get("usage").is_none());
        assert!(to_json(&mk(Some(None)))["usage"].is_null());
        assert_eq!(to_json(&mk(Some(Some(Usage::default()))))["usage"]["total_tokens"], 0);
    }
}
