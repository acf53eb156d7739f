//! The content-block builder shared by the whole-message and the streamed translation: pieces of a
//! Gemini answer (`parts::Piece`) in, Anthropic block events (`content_block_start`,
//! `content_block_delta`, `content_block_stop`) out. The stream sends these events as they come;
//! the whole message folds them into its `content` array, so both forms hold the same blocks.
//!
//! Rules: consecutive text joins one `text` block and consecutive thought text one `thinking`
//! block; a signature ends the open unsigned `thinking` block as its `signature_delta` (or, with no
//! such block open, comes as a `thinking` block of its own with empty text); a function call is one
//! complete `tool_use` block whose `input` is one `input_json_delta`; empty text makes no block.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness.

use serde_json::{Value, json};

use super::parts::{Piece, tool_use_id};

/// A server-sent event: its name and its `data`.
pub type Event = (String, Value);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text,
    /// A thinking block still waiting for its signature.
    Thinking,
}

#[derive(Debug, Clone)]
pub(super) struct BlockBuilder {
    message_id: String,
    /// Index of the next block.
    next: usize,
    open: Open,
    tool_uses: usize,
}

fn start(index: usize, block: Value) -> Event {
    (
        "content_block_start".into(),
        json!({"type": "content_block_start", "index": index, "content_block": block}),
    )
}

fn delta(index: usize, delta: Value) -> Event {
    ("content_block_delta".into(), json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

impl BlockBuilder {
    pub(super) fn new(message_id: &str) -> Self {
        BlockBuilder { message_id: message_id.to_owned(), next: 0, open: Open::None, tool_uses: 0 }
    }

    /// How many `tool_use` blocks were made.
    pub(super) fn tool_uses(&self) -> usize {
        self.tool_uses
    }

    /// Closes the open block, if any.
    pub(super) fn close(&mut self, out: &mut Vec<Event>) {
        if self.open != Open::None {
            let index = self.next - 1;
            out.push(("content_block_stop".into(), json!({"type": "content_block_stop", "index": index})));
            self.open = Open::None;
        }
    }

    fn open(&mut self, kind: Open, block: Value, out: &mut Vec<Event>) -> usize {
        self.close(out);
        let index = self.next;
        self.next += 1;
        self.open = kind;
        out.push(start(index, block));
        index
    }

    pub(super) fn push(&mut self, piece: Piece, out: &mut Vec<Event>) {
        match piece {
            Piece::Thought(text) if text.is_empty() => {}
            Piece::Thought(text) => {
                if self.open != Open::Thinking {
                    self.open(
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                out.push(delta(self.next - 1, json!({"type": "thinking_delta", "thinking": text})));
            }
            Piece::Signature(signature) => {
                if self.open != Open::Thinking {
                    self.open(
                        Open::Thinking,
                        json!({"type": "thinking", "thinking": "", "signature": ""}),
                        out,
                    );
                }
                out.push(delta(self.next - 1, json!({"type": "signature_delta", "signature": signature})));
                self.close(out);
            }
            Piece::Text(text) if text.is_empty() => {}
            Piece::Text(text) => {
                if self.open != Open::Text {
                    self.open(Open::Text, json!({"type": "text", "text": ""}), out);
                }
                out.push(delta(self.next - 1, json!({"type": "text_delta", "text": text})));
            }
            Piece::Call { name, input, signature } => {
                let id = tool_use_id(&self.message_id, self.tool_uses, signature.as_deref());
                self.tool_uses += 1;
                let index = self.open(
                    Open::None,
                    json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                    out,
                );
                let json = serde_json::to_string(&input).unwrap_or_else(|_| "{}".to_owned());
                out.push(delta(index, json!({"type": "input_json_delta", "partial_json": json})));
                out.push((
                    "content_block_stop".into(),
                    json!({"type": "content_block_stop", "index": index}),
                ));
            }
        }
    }
}

/// Folds block events into the blocks of a `message`'s `content`.
pub(super) fn fold(events: &[Event]) -> Vec<Value> {
    let mut blocks: Vec<Value> = Vec::new();
    // The accumulated `partial_json` of each tool_use block, parsed at its stop.
    let mut json_text: Vec<String> = Vec::new();
    for (name, data) in events {
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
        match name.as_str() {
            "content_block_start" => {
                blocks.push(data.get("content_block").cloned().unwrap_or_else(|| json!({})));
                json_text.push(String::new());
            }
            "content_block_delta" => {
                let (Some(block), Some(d)) = (blocks.get_mut(index), data.get("delta")) else { continue };
                let (key, value) = match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => ("text", d.get("text")),
                    Some("thinking_delta") => ("thinking", d.get("thinking")),
                    Some("signature_delta") => ("signature", d.get("signature")),
                    Some("input_json_delta") => {
                        if let (Some(buf), Some(s)) = (json_text.get_mut(index), d["partial_json"].as_str()) {
                            buf.push_str(s);
                        }
                        continue;
                    }
                    _ => continue,
                };
                let add = value.and_then(Value::as_str).unwrap_or_default();
                let old = block.get(key).and_then(Value::as_str).unwrap_or_default();
                block[key] = Value::String(format!("{old}{add}"));
            }
            "content_block_stop" => {
                let (Some(block), Some(text)) = (blocks.get_mut(index), json_text.get(index)) else {
                    continue;
                };
                if block.get("type").and_then(Value::as_str) == Some("tool_use") && !text.is_empty() {
                    block["input"] = serde_json::from_str(text).unwrap_or_else(|_| json!({}));
                }
            }
            _ => {}
        }
    }
    blocks
}
