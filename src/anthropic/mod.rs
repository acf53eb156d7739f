//! The Anthropic Messages <-> Gemini translation core: Messages requests (and token counts) become
//! Gemini request bodies, Gemini answers (whole or streamed) become Anthropic `message` objects and
//! stream events, and errors take Anthropic's shape.
//!
//! Everything here is a function from values to values. It never does I/O, never takes a lock,
//! never reads the clock and never draws randomness: message ids are passed in, so JSON fixtures
//! test it directly. It never fetches a URL a client names. Fields and blocks it does not know are
//! dropped, never forwarded.
//!
//! Thought signatures: see `parts.rs` (answers) and `content.rs` (requests); the tool-use id
//! encoding is shared with the OpenAI core (`crate::openai::response::THOUGHT_SIGNATURE_MARKER`).
//!
//! No recursion over client-controlled depth: request and response walks are iterative (content
//! nests at most two levels: a tool result or document source holding blocks); tool schemas go
//! through the OpenAI core's depth-limited `clean_schema`.

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod blocks;
mod content;
pub mod count_tokens;
pub mod error;
mod parts;
pub mod request;
pub mod response;
pub mod stream;
mod tools;
pub mod types;

#[cfg(test)]
mod conversation_tests;

pub use blocks::Event;
pub use count_tokens::{
    count_tokens_request_to_gemini, count_tokens_request_to_gemini_for_model, count_tokens_response,
};
pub use error::{
    anthropic_error_body, anthropic_error_type, gemini_error_to_anthropic, translate_error_body,
};
pub use parts::tool_use_id;
pub use request::{messages_request_to_gemini, messages_request_to_gemini_for_model};
pub use response::gemini_response_to_message;
pub use stream::{MessagesStream, sse};
pub use types::MessagesCall;
