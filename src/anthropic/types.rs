//! What the Anthropic translators hand to the caller: `MessagesCall`, the translation of a
//! `POST /v1/messages` body. Errors are the OpenAI core's `TranslateError` (status, message naming
//! the field, param), shaped for Anthropic clients by `error::translate_error_body`.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness.

use serde_json::Value;

/// Result of translating an Anthropic Messages request.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesCall {
    /// The model as the client named it (an alias such as `claude-sonnet-4-5` stays as it is).
    pub model: String,
    /// `stream: true` was asked for.
    pub stream: bool,
    /// The Gemini `generateContent` request body.
    pub body: Value,
    /// `max_tokens` after clamping to the output limit (the body's `maxOutputTokens`).
    pub max_tokens: u64,
}
