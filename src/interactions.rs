//! The Interactions API's streams (`POST /{v}/interactions` with `stream: true`, `GET …?stream=true`):
//! the events pass byte for byte; they are read for the interaction's id and continuation token
//! (pinned to the key's project at once) and for the tokens of `interaction.completed`.
//!
//! Pure: values in, bytes out; no I/O, no locks, no clock.

use serde_json::Value;

use crate::relay::Transform;
use crate::resources::{self, Created};

/// Follows an Interactions stream. `count_tokens` is false for a replay of an interaction whose
/// usage is booked already (its tokens count once, however often it is read).
pub struct InteractionEvents {
    framer: crate::sse::Framer,
    count_tokens: bool,
    tokens: Option<u64>,
    created: Vec<Created>,
    id: Option<String>,
}

impl InteractionEvents {
    pub fn new(count_tokens: bool) -> InteractionEvents {
        InteractionEvents {
            framer: crate::sse::Framer::default(),
            count_tokens,
            tokens: None,
            created: Vec::new(),
            id: None,
        }
    }

    /// The interaction's id, once an event named it.
    pub fn interaction_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    fn event(&mut self, event: &Value) {
        if let Some(id) = event.pointer("/interaction/id").and_then(Value::as_str) {
            self.id.get_or_insert_with(|| id.to_string());
        }
        if event.get("event_type").and_then(Value::as_str) == Some("interaction.completed")
            && self.count_tokens
            && let Some(t) = event.get("interaction").and_then(crate::usage::tokens)
        {
            self.tokens = Some(t);
        }
        self.created.extend(resources::created_in(Some("interactions"), event));
    }
}

impl Transform for InteractionEvents {
    fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(data);
        for payload in self.framer.feed(data) {
            if let Ok(event) = serde_json::from_slice::<Value>(&payload) {
                self.event(&event);
            }
        }
        Ok(())
    }

    fn finish(&mut self, _out: &mut Vec<u8>) {}

    fn fail(&mut self, _message: &str, _out: &mut Vec<u8>) -> bool {
        false
    }

    fn tokens(&self) -> Option<u64> {
        self.tokens
    }

    fn take_created(&mut self) -> Vec<Created> {
        std::mem::take(&mut self.created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "event: interaction.created\ndata: {\"event_type\":\"interaction.created\",\"interaction\":{\"id\":\"v1_abc\",\"status\":\"in_progress\"}}\n\n\
        event: step.delta\ndata: {\"event_type\":\"step.delta\",\"index\":0,\"delta\":{\"type\":\"text\",\"text\":\"Hi\"},\"usage\":{\"total_tokens\":99}}\n\n\
        event: interaction.status_update\ndata: {\"event_type\":\"interaction.status_update\",\"interaction_id\":\"v1_abc\",\"status\":\"requires_continuation\",\"continuation_token\":\"ct1\"}\n\n\
        event: interaction.completed\ndata: {\"event_type\":\"interaction.completed\",\"interaction\":{\"id\":\"v1_abc\",\"status\":\"completed\",\"usage\":{\"total_tokens\":42,\"total_input_tokens\":30,\"total_output_tokens\":12}}}\n\n";

    #[test]
    fn bytes_pass_and_the_stream_is_read_at_any_split() {
        for split in [1, 7, 64, STREAM.len()] {
            let mut t = InteractionEvents::new(true);
            let mut out = Vec::new();
            let mut created = Vec::new();
            for piece in STREAM.as_bytes().chunks(split) {
                let mut o = Vec::new();
                t.feed(piece, &mut o).unwrap();
                out.extend(o);
                created.extend(t.take_created().into_iter().map(|c| c.name));
            }
            assert_eq!(out, STREAM.as_bytes());
            assert_eq!(t.tokens(), Some(42), "only interaction.completed counts");
            assert_eq!(t.interaction_id(), Some("v1_abc"));
            created.dedup();
            assert!(created.contains(&"interactions/v1_abc".to_string()), "{created:?}");
            assert!(created.contains(&"continuation:ct1".to_string()), "{created:?}");
        }
    }

    #[test]
    fn a_replay_of_a_booked_interaction_counts_nothing() {
        let mut t = InteractionEvents::new(false);
        t.feed(STREAM.as_bytes(), &mut Vec::new()).unwrap();
        assert_eq!(t.tokens(), None);
    }
}
