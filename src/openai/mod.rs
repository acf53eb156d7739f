//! The OpenAI <-> Gemini translation core: OpenAI requests become Gemini request bodies, Gemini
//! answers (whole or streamed) become OpenAI objects, and errors take OpenAI's shape.
//!
//! Everything here is a function from values to values. It never does I/O, never takes a lock,
//! never reads the clock and never draws randomness: response ids and timestamps are passed in, so
//! JSON fixtures test it directly. It never fetches a URL a client names.
//!
//! No recursion over client-controlled depth: request and response walks are iterative; the JSON
//! schema cleaner is limited to `schema::MAX_SCHEMA_DEPTH` levels. (Values are assumed to come from
//! `serde_json`'s parser, whose own limit is 128 levels; cloning and dropping such values is safe.)

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod content;
pub mod embeddings;
pub mod error;
pub(crate) mod fields;
pub mod models;
#[doc(hidden)]
pub mod openapi;
pub mod request;
pub mod response;
pub mod schema;
pub mod stream;
pub(crate) mod tools;
pub mod types;

#[cfg(test)]
pub(crate) mod test_support;

pub use embeddings::{embeddings_request_to_gemini, embeddings_response_to_openai};
pub use error::{gemini_error_to_openai, openai_error_body};
pub use models::{model_to_openai, models_to_openai};
pub use request::chat_request_to_gemini;
pub use response::gemini_response_to_chat;
pub use stream::StreamTranslator;
pub use types::{ChatCall, EmbedCall, TranslateError};
