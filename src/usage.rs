//! Token counting: how many tokens an answer used, from Gemini's `usageMetadata` (or the `usage`
//! block of Gemini's OpenAI layer), read from a whole body or followed through a stream.
//!
//! The one place that counts tokens; pure (no I/O, no locks, no clock). Whole bodies are read by
//! a typed serde reader that skips everything but the counts (a JSON tree per answer cost ~40
//! allocations); property tests check that it agrees with the tree reader.

use serde_json::Value;

/// Tokens used by an answer: `usageMetadata.totalTokenCount`, else prompt + candidates + thoughts
/// (+ tool-use prompt) counts; for an OpenAI-shaped body (the `/v1beta/openai/` pass-through)
/// `usage.total_tokens`, else `prompt_tokens + completion_tokens`. A JSON array (a non-SSE stream)
/// is read from its last element that has usage. `None` when the body says nothing about tokens.
pub fn tokens(body: &Value) -> Option<u64> {
    if let Value::Array(items) = body {
        return items.iter().rev().find_map(tokens);
    }
    if let Some(meta) = body.get("usageMetadata") {
        if let Some(total) = meta.get("totalTokenCount").and_then(Value::as_u64) {
            return Some(total);
        }
        return sum_fields(
            meta,
            &["promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "toolUsePromptTokenCount"],
        );
    }
    if let Some(usage) = body.get("usage").filter(|u| u.is_object()) {
        if let Some(total) = usage.get("total_tokens").and_then(Value::as_u64) {
            return Some(total);
        }
        return sum_fields(usage, &["prompt_tokens", "completion_tokens"]);
    }
    None
}

/// [`tokens`] of a raw body, without building a JSON tree for an object: the answers of
/// every request pass here, and a `Value` of a typical answer cost ~40 allocations. Arrays and
/// anything the typed reading cannot take fall back to `tokens`; both always agree
/// (tests/fuzz.rs checks it on arbitrary JSON).
pub fn tokens_of(body: &[u8]) -> Option<u64> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{')
        && let Ok(top) = serde_json::from_slice::<fast::Top>(body)
    {
        return top.tokens();
    }
    serde_json::from_slice::<Value>(body).ok().and_then(|v| tokens(&v))
}

/// The typed reading behind [`tokens_of`]: only the counts, every other field skipped.
mod fast {
    use serde::Deserialize;
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

    /// A field read only when it is an unsigned integer, skipped whatever else it is (as
    /// `Value::as_u64` reads it).
    #[derive(Default, Clone, Copy)]
    pub struct Count(pub Option<u64>);

    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
            d.deserialize_any(CountVisitor)
        }
    }

    struct CountVisitor;

    impl<'de> Visitor<'de> for CountVisitor {
        type Value = Count;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
            Ok(Count(Some(v)))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
            Ok(Count(u64::try_from(v).ok()))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Count, E> {
            Ok(Count(None))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Count, E> {
            Ok(Count(None))
        }
        fn visit_str<E>(self, _: &str) -> Result<Count, E> {
            Ok(Count(None))
        }
        fn visit_unit<E>(self) -> Result<Count, E> {
            Ok(Count(None))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Count(None))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Count, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Count(None))
        }
    }

    /// An object's counts; `present` tells an object from any other value.
    #[derive(Default)]
    pub struct Counts {
        pub present: bool,
        pub fields: [Count; 5],
    }

    const NAMES: [&str; 5] = [
        // usageMetadata: total, then the parts.
        "totalTokenCount",
        "promptTokenCount",
        "candidatesTokenCount",
        "thoughtsTokenCount",
        "toolUsePromptTokenCount",
    ];
    const OPENAI_NAMES: [&str; 3] = ["total_tokens", "prompt_tokens", "completion_tokens"];

    /// Reads the counts named in `names` (by position) from an object; anything else is skipped.
    struct CountsVisitor(&'static [&'static str]);

    impl<'de> Visitor<'de> for CountsVisitor {
        type Value = Counts;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Counts, A::Error> {
            let mut out = Counts { present: true, ..Counts::default() };
            while let Some(wanted) = map.next_key_seed(KeyIndex(self.0))? {
                match wanted {
                    // The last of duplicate keys wins, as in a `Value`.
                    Some(i) => out.fields[i] = map.next_value::<Count>()?,
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(out)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Counts, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Counts::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Counts, E> {
            Ok(Counts::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Counts, E> {
            Ok(Counts::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Counts, E> {
            Ok(Counts::default())
        }
        fn visit_bool<E>(self, _: bool) -> Result<Counts, E> {
            Ok(Counts::default())
        }
        fn visit_str<E>(self, _: &str) -> Result<Counts, E> {
            Ok(Counts::default())
        }
        fn visit_unit<E>(self) -> Result<Counts, E> {
            Ok(Counts::default())
        }
    }

    /// A key as its position in a list of names (None: not one of them), read without copying
    /// it (escaped keys are unescaped into serde_json's scratch buffer, not a new string).
    struct KeyIndex(&'static [&'static str]);

    impl<'de> serde::de::DeserializeSeed<'de> for KeyIndex {
        type Value = Option<usize>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIndex {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
            Ok(self.0.iter().position(|n| *n == key))
        }
    }

    pub struct GeminiCounts(pub Counts);
    pub struct OpenAiCounts(pub Counts);

    impl<'de> Deserialize<'de> for GeminiCounts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(CountsVisitor(&NAMES)).map(GeminiCounts)
        }
    }

    impl<'de> Deserialize<'de> for OpenAiCounts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(CountsVisitor(&OPENAI_NAMES)).map(OpenAiCounts)
        }
    }

    /// The top-level object: its usage blocks, nothing else. A key that is there is `Some`
    /// whatever its value, `null` included (as `Value::get` sees it).
    #[derive(Deserialize)]
    pub struct Top {
        #[serde(rename = "usageMetadata", default, deserialize_with = "present")]
        gemini: Option<GeminiCounts>,
        #[serde(default, deserialize_with = "present")]
        usage: Option<OpenAiCounts>,
    }

    fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }

    fn sum(parts: &[Count]) -> Option<u64> {
        let counts: Vec<u64> = parts.iter().filter_map(|c| c.0).collect();
        if counts.is_empty() { None } else { Some(counts.iter().fold(0u64, |a, b| a.saturating_add(*b))) }
    }

    impl Top {
        pub fn tokens(&self) -> Option<u64> {
            if let Some(GeminiCounts(c)) = &self.gemini {
                return c.fields[0].0.or_else(|| sum(&c.fields[1..]));
            }
            if let Some(OpenAiCounts(c)) = &self.usage
                && c.present
            {
                return c.fields[0].0.or_else(|| sum(&c.fields[1..3]));
            }
            None
        }
    }
}

fn sum_fields(obj: &Value, fields: &[&str]) -> Option<u64> {
    let counts: Vec<u64> = fields.iter().filter_map(|f| obj.get(*f).and_then(Value::as_u64)).collect();
    if counts.is_empty() { None } else { Some(counts.iter().fold(0u64, |a, b| a.saturating_add(*b))) }
}

/// Follows a stream and remembers the token count of the last chunk that carried one.
#[derive(Debug, Default)]
pub struct StreamUsage {
    framer: crate::sse::Framer,
    tokens: Option<u64>,
}

impl StreamUsage {
    pub fn feed(&mut self, data: &[u8]) {
        for payload in self.framer.feed(data) {
            // Cheap pre-check: most chunks carry no usage block.
            if payload.windows(13).any(|w| w == b"usageMetadata")
                && let Some(t) = tokens_of(&payload)
            {
                self.tokens = Some(t);
            }
        }
    }

    pub fn tokens(&self) -> Option<u64> {
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_tokens_table() {
        let cases: Vec<(&str, Value, Option<u64>)> = vec![
            (
                "total present",
                json!({"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20, "totalTokenCount": 35}}),
                Some(35),
            ),
            (
                "sum when no total",
                json!({"usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 20, "thoughtsTokenCount": 5}}),
                Some(35),
            ),
            (
                "prompt only (embeddings, countTokens-like)",
                json!({"usageMetadata": {"promptTokenCount": 7}}),
                Some(7),
            ),
            ("empty usageMetadata", json!({"usageMetadata": {}}), None),
            ("no usage at all", json!({"candidates": []}), None),
            ("not an object", json!("text"), None),
            ("negative is not a count", json!({"usageMetadata": {"totalTokenCount": -3}}), None),
            (
                "OpenAI usage",
                json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
                Some(7),
            ),
            (
                "OpenAI usage without total",
                json!({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}),
                Some(7),
            ),
            (
                "JSON-array stream: last chunk with usage",
                json!([{"usageMetadata": {"totalTokenCount": 5}}, {"candidates": []},
                       {"usageMetadata": {"totalTokenCount": 42}}]),
                Some(42),
            ),
            (
                "saturating sum",
                json!({"usageMetadata": {"promptTokenCount": u64::MAX, "candidatesTokenCount": 2}}),
                Some(u64::MAX),
            ),
        ];
        for (name, body, expected) in cases {
            assert_eq!(tokens(&body), expected, "case {name}");
            assert_eq!(tokens_of(&serde_json::to_vec(&body).unwrap()), expected, "raw case {name}");
        }
        let raw: &[(&str, &[u8], Option<u64>)] = &[
            ("null usageMetadata hides usage", br#"{"usageMetadata":null,"usage":{"total_tokens":5}}"#, None),
            ("null usage", br#"{"usage":null}"#, None),
            ("usage not an object", br#"{"usage":[1,2]}"#, None),
            (
                "float is not a count",
                br#"{"usageMetadata":{"totalTokenCount":5.0,"promptTokenCount":2}}"#,
                Some(2),
            ),
            ("huge is not a count", br#"{"usageMetadata":{"totalTokenCount":1e30}}"#, None),
            (
                "last duplicate key wins",
                br#"{"usageMetadata":{"totalTokenCount":1,"totalTokenCount":9}}"#,
                Some(9),
            ),
            (
                "duplicate top key falls back",
                br#"{"usageMetadata":{"totalTokenCount":1},"usageMetadata":{"totalTokenCount":3}}"#,
                Some(3),
            ),
            ("escaped key", br#"{"usage\u004detadata":{"total\u0054okenCount":4}}"#, Some(4)),
            ("truncated", br#"{"usageMetadata":{"totalTokenCount":4}"#, None),
            ("trailing garbage", br#"{"usageMetadata":{"totalTokenCount":4}} x"#, None),
            ("not JSON", b"\xff\xfe", None),
        ];
        for (name, body, expected) in raw {
            assert_eq!(tokens_of(body), *expected, "raw case {name}");
            let slow = serde_json::from_slice::<Value>(body).ok().and_then(|v| tokens(&v));
            assert_eq!(slow, *expected, "tree case {name}");
        }
    }

    #[test]
    fn usage_is_taken_from_the_last_chunk_that_has_it() {
        let mut s = StreamUsage::default();
        s.feed(b"data: {\"usageMetadata\":{\"totalTokenCount\":5}}\n\n");
        s.feed(b"data: {\"candidates\":[]}\n\ndata: {\"usageMetadata\":{\"totalTokenCount\":42}}\n\n");
        assert_eq!(s.tokens(), Some(42));
    }
}
