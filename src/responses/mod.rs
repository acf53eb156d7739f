//! The OpenAI Responses <-> Gemini translation core (SPEC §12): a `POST /v1/responses` body (with
//! the items of a stored previous response, if any) becomes a Gemini `generateContent` body, and a
//! Gemini answer, whole or streamed, becomes a `Response` object or Responses stream events.
//!
//! Everything here is a function from values to values: no I/O, no lock, no clock (ids and
//! timestamps are passed in), no randomness, no URL fetched. Gemini's `thoughtSignature` travels
//! as the `encrypted_content` of a `reasoning` item and inside the `call_id` of a `function_call`
//! item, so that a stateless client that sends the items back brings the signature back.
//! Shares the chat core's field readers, content parts, function declarations, schema cleaner,
//! thinking levels and tool-call ids (`crate::openai`).

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod builder;
mod items;
mod request;
mod tools;

#[cfg(test)]
mod conversation_tests;

pub use builder::{ResponseBuilder, sse};
pub use request::{ResponsesCall, previous_response_id, responses_request_to_gemini};
