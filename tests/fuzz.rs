//! Property-based fuzzing of every parser that reads bytes from outside the process: the OpenAI
//! request and Gemini response translators, the SSE / JSON-array stream framer, the upstream
//! error classifier, the key file, the usage file (ours and the seed proxy's), routing and file
//! affinity.
//!
//! # Why proptest and not cargo-fuzz
//!
//! cargo-fuzz (libFuzzer) needs a nightly toolchain for its sanitizer flags, and the machines
//! this project builds on have stable Rust only. So the fuzzing is done with `proptest`:
//! structured generators (a bounded recursive generator of `serde_json::Value` biased towards
//! OpenAI- and Gemini-shaped objects, byte mutators seeded from `tests/fuzz-corpus/`, arbitrary
//! splits of valid streams) plus properties that must hold for every input. A panic anywhere in
//! the code under test fails the property and proptest shrinks the input to a small case.
//!
//! # Running
//!
//! * `cargo test --test fuzz` runs a modest number of cases per property (well under a minute in
//!   debug mode on two cores).
//! * `FUZZ_CASES=20000 cargo test --release --test fuzz` runs that many cases for every
//!   property, for a longer local run.
//! * Failing seeds are saved to `tests/fuzz-corpus/proptest-regressions/fuzz.txt` (relative to
//!   the crate root, which is where `cargo test` runs integration tests) and replayed first on
//!   the next run; commit that file when a failure is found, delete it once the cause is fixed.
//!
//! The seed inputs in `tests/fuzz-corpus/` are compiled in with `include_bytes!`, so the suite
//! reads no file at run time.
//!
//! The `regression_*` tests at the end are minimal reproducers of bugs the fuzzing found; each is
//! written to pass once its bug is fixed, and until then it fails, as does the property that
//! found it. Two of them bound running time (a quadratic scan): they give the code one second
//! for an input that a linear scan handles in milliseconds in a debug build.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use gemini_key_manager::keyfile::KeySpec;
use gemini_key_manager::openai::{self, StreamTranslator, TranslateError};
use gemini_key_manager::pool::KeyState;
use gemini_key_manager::quota::{self, Outcome};
use gemini_key_manager::store_format::{self, UsageFile};
use gemini_key_manager::{keyfile, resources, router, sse, usage};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Where proptest appends the seeds of failing cases (relative to the crate root).
const REGRESSIONS: &str = "tests/fuzz-corpus/proptest-regressions/fuzz.txt";

/// Cases per property: `FUZZ_CASES` when set, else the property's own default.
fn cases(default: u32) -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|s| s.trim().parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn config(default_cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default_cases),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        // Shrinking a large structured input can take long; a bounded shrink still gives a
        // readable case and keeps a failing run short.
        max_shrink_iters: 4096,
        max_shrink_time: 10_000,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------------------------

const SSE_1: &[u8] = include_bytes!("fuzz-corpus/sse-1.txt");
const SSE_2_CRLF: &[u8] = include_bytes!("fuzz-corpus/sse-2-crlf.txt");
const JSON_ARRAY_1: &[u8] = include_bytes!("fuzz-corpus/json-array-1.json");
const CHAT_1: &[u8] = include_bytes!("fuzz-corpus/chat-1.json");
const CHAT_2: &[u8] = include_bytes!("fuzz-corpus/chat-2.json");
const EMBEDDINGS_1: &[u8] = include_bytes!("fuzz-corpus/embeddings-1.json");
const GEMINI_RESPONSE_1: &[u8] = include_bytes!("fuzz-corpus/gemini-response-1.json");
const ERROR_429_PER_DAY: &[u8] = include_bytes!("fuzz-corpus/error-429-per-day.json");
const ERROR_429_PER_MINUTE: &[u8] = include_bytes!("fuzz-corpus/error-429-per-minute.json");
const ERROR_403_KEY: &[u8] = include_bytes!("fuzz-corpus/error-403-key.json");
const USAGE_OWN: &[u8] = include_bytes!("fuzz-corpus/usage-own.json");
const USAGE_SEED_FLAT: &[u8] = include_bytes!("fuzz-corpus/usage-seed-flat.json");
const USAGE_SEED_MODEL: &[u8] = include_bytes!("fuzz-corpus/usage-seed-model.json");
const KEYS_TXT: &str = include_str!("fuzz-corpus/keys.txt");
const KEYS_BYTES: &[u8] = include_bytes!("fuzz-corpus/keys.txt");

const STREAM_SEEDS: &[&[u8]] = &[SSE_1, SSE_2_CRLF, JSON_ARRAY_1];
const REQUEST_SEEDS: &[&[u8]] = &[CHAT_1, CHAT_2, EMBEDDINGS_1];
const ERROR_SEEDS: &[&[u8]] = &[ERROR_429_PER_DAY, ERROR_429_PER_MINUTE, ERROR_403_KEY, GEMINI_RESPONSE_1];
const USAGE_SEEDS: &[&[u8]] = &[USAGE_OWN, USAGE_SEED_FLAT, USAGE_SEED_MODEL];

const LA: Tz = chrono_tz::America::Los_Angeles;

// ---------------------------------------------------------------------------------------------
// Byte mutation
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    /// Copy `len` bytes from `from` to `to` (duplicates structure: brackets, keys, values).
    Duplicate {
        from: usize,
        len: usize,
        to: usize,
    },
}

/// Bytes that matter to JSON and SSE, so that insertions often change structure.
const SIGNIFICANT: &[u8] = b"{}[]\",:0123456789-+.eE \\/\n\r\t#data:truefalsenull\xff\xc3";

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![3 => select(SIGNIFICANT), 1 => any::<u8>()];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::Flip(p, b)),
        (any::<usize>(), prop::collection::vec(byte, 1..4)).prop_map(|(p, b)| Mutation::Insert(p, b)),
        (any::<usize>(), 1..16usize).prop_map(|(p, n)| Mutation::Delete(p, n)),
        (any::<usize>(), 1..32usize, any::<usize>()).prop_map(|(from, len, to)| Mutation::Duplicate {
            from,
            len,
            to
        }),
    ]
}

fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for m in mutations {
        let n = v.len();
        match m {
            Mutation::Flip(p, b) if n > 0 => v[p % n] ^= b | 1,
            Mutation::Flip(..) => {}
            Mutation::Insert(p, bytes) => {
                let at = p % (n + 1);
                v.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(p, len) if n > 0 => {
                let at = p % n;
                let end = (at + len).min(n);
                v.drain(at..end);
            }
            Mutation::Delete(..) => {}
            Mutation::Duplicate { from, len, to } if n > 0 => {
                let from = from % n;
                let piece = v[from..(from + len).min(n)].to_vec();
                let to = to % (n + 1);
                v.splice(to..to, piece);
            }
            Mutation::Duplicate { .. } => {}
        }
    }
    v
}

/// One of `seeds`, mutated a few times (sometimes not at all).
fn mutated(seeds: &'static [&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    (select(seeds), prop::collection::vec(mutation(), 0..6)).prop_map(|(s, m)| apply(s, &m)).boxed()
}

// ---------------------------------------------------------------------------------------------
// JSON generators
// ---------------------------------------------------------------------------------------------

/// Words the parsers look for: OpenAI and Gemini field names, enum values, `$ref` targets.
const VOCAB: &[&str] = &[
    "model",
    "messages",
    "role",
    "content",
    "tool_calls",
    "tool_call_id",
    "tools",
    "function",
    "parameters",
    "type",
    "text",
    "image_url",
    "url",
    "name",
    "arguments",
    "id",
    "extra_content",
    "google",
    "thought_signature",
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "refusal",
    "function_call",
    "input_audio",
    "data",
    "format",
    "file",
    "file_data",
    "file_id",
    "filename",
    "response_format",
    "json_schema",
    "json_object",
    "schema",
    "stop",
    "n",
    "stream",
    "stream_options",
    "include_usage",
    "tool_choice",
    "reasoning_effort",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "input",
    "dimensions",
    "encoding_format",
    "base64",
    "float",
    "$ref",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
    "properties",
    "items",
    "required",
    "enum",
    "const",
    "nullable",
    "description",
    "default",
    "example",
    "examples",
    "propertyOrdering",
    "minimum",
    "maxItems",
    "string",
    "object",
    "array",
    "integer",
    "number",
    "boolean",
    "null",
    "none",
    "auto",
    "minimal",
    "low",
    "medium",
    "high",
    "xhigh",
    "candidates",
    "parts",
    "functionCall",
    "args",
    "thought",
    "thoughtSignature",
    "finishReason",
    "index",
    "usageMetadata",
    "totalTokenCount",
    "promptTokenCount",
    "candidatesTokenCount",
    "thoughtsTokenCount",
    "promptFeedback",
    "blockReason",
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "error",
    "details",
    "@type",
    "message",
    "status",
    "#/$defs/A",
    "#/$defs/B",
    "#",
    "#/properties/a",
    "files/abc",
    "cachedContents/c-1",
    "gemini-2.5-flash",
    "gemini-3-pro-preview",
    "models/gemini-2.5-pro",
    "text-embedding-004",
    "",
];

fn word() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(VOCAB).prop_map(str::to_string),
        2 => "[a-zA-Z0-9_ -]{0,12}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        (0u64..8).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1.0)),
        Just(json!(-0.0)),
    ]
    .boxed()
}

fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        word().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value, at most 4 levels deep and a few dozen nodes big.
fn any_json() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((word(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// An object from `(name, presence probability, value)` specs.
fn fields(spec: Vec<(&'static str, f64, BoxedStrategy<Value>)>) -> BoxedStrategy<Value> {
    let parts: Vec<BoxedStrategy<Option<(String, Value)>>> = spec
        .into_iter()
        .map(|(k, p, s)| {
            prop::option::weighted(p, s).prop_map(move |v| v.map(|v| (k.to_string(), v))).boxed()
        })
        .collect();
    parts.prop_map(|kvs| Value::Object(kvs.into_iter().flatten().collect())).boxed()
}

/// Sometimes overwrites or adds one field of an object with an arbitrary value.
fn corrupt(s: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    (s, prop::option::weighted(0.15, (word(), any_json())))
        .prop_map(|(mut v, extra)| {
            if let (Some((k, x)), Some(o)) = (extra, v.as_object_mut()) {
                o.insert(k, x);
            }
            v
        })
        .boxed()
}

fn s(choices: &'static [&'static str]) -> BoxedStrategy<Value> {
    select(choices).prop_map(|x| Value::String(x.to_string())).boxed()
}

fn string_or_any(choices: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![6 => s(choices), 1 => word().prop_map(Value::String), 1 => any_json()].boxed()
}

// --- JSON Schema (tool parameters, response_format) -------------------------------------------

const REFS: &[&str] = &[
    "#/$defs/A",
    "#/$defs/B",
    "#/$defs/Node",
    "#/definitions/A",
    "#",
    "#/properties/a",
    "#/properties/a/items",
    "#/$defs/Missing",
    "#/$defs",
    "https://example.com/schema.json",
    "A",
    "",
];
const TYPES: &[&str] = &["string", "number", "integer", "boolean", "object", "array", "null", "Weird"];

fn schema_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => s(TYPES).prop_map(|t| json!({ "type": t })),
        3 => s(REFS).prop_map(|r| json!({ "$ref": r })),
        1 => prop::collection::vec(s(TYPES), 0..3).prop_map(|t| json!({ "type": t })),
        1 => prop::collection::vec(prop_oneof![word().prop_map(Value::String), Just(Value::Null), number()], 0..4)
            .prop_map(|e| json!({ "enum": e })),
        1 => json_leaf().prop_map(|c| json!({ "const": c })),
        1 => fields(vec![
            ("type", 0.8, s(TYPES)),
            ("format", 0.6, s(&["date-time", "enum", "float", "int64", "uuid"])),
            ("description", 0.5, word().prop_map(Value::String).boxed()),
            ("nullable", 0.3, any::<bool>().prop_map(Value::Bool).boxed()),
            ("default", 0.2, json_leaf()),
            ("minimum", 0.2, number()),
            ("maxItems", 0.2, number()),
            ("examples", 0.2, any_json()),
        ]),
        1 => Just(json!(true)),
        1 => json_leaf(),
    ]
    .boxed()
}

fn schema() -> BoxedStrategy<Value> {
    schema_leaf()
        .prop_recursive(4, 32, 4, |inner| {
            let props = prop::collection::vec((select(&["a", "b", "c", "next"][..]), inner.clone()), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
            let required = prop::collection::vec(s(&["a", "b", "c", "ghost"]), 0..4).prop_map(Value::Array);
            prop_oneof![
                4 => fields(vec![
                    ("type", 0.8, s(&["object"])),
                    ("properties", 0.9, props.boxed()),
                    ("required", 0.5, required.boxed()),
                    ("nullable", 0.2, any::<bool>().prop_map(Value::Bool).boxed()),
                    ("$ref", 0.1, s(REFS)),
                ]),
                2 => (select(&["anyOf", "oneOf", "allOf"][..]), prop::collection::vec(inner.clone(), 0..4))
                    .prop_map(|(k, v)| json!({ k: v })),
                2 => inner.clone().prop_map(|i| json!({"type": "array", "items": i})),
                1 => prop::collection::vec(inner.clone(), 0..3).prop_map(|i| json!({ "items": i })),
                1 => (inner, s(REFS)).prop_map(|(mut i, r)| {
                    if let Some(o) = i.as_object_mut() {
                        o.insert("$ref".into(), r);
                    }
                    i
                }),
            ]
        })
        .boxed()
}

/// A schema with `$defs` (or `definitions`) that refer to each other and to themselves.
fn schema_with_defs() -> BoxedStrategy<Value> {
    let self_ref = Just(json!({"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}));
    (schema(), schema(), schema(), prop::option::weighted(0.5, self_ref), any::<bool>())
        .prop_map(|(root, a, b, node, legacy)| {
            let mut root = match root {
                Value::Object(o) => o,
                other => return other,
            };
            let mut defs = Map::new();
            defs.insert("A".into(), a);
            defs.insert("B".into(), b);
            if let Some(node) = node {
                defs.insert("Node".into(), node);
            }
            root.insert(if legacy { "definitions" } else { "$defs" }.into(), Value::Object(defs));
            Value::Object(root)
        })
        .boxed()
}

// --- OpenAI requests ----------------------------------------------------------------------

const URLS: &[&str] = &[
    "data:image/png;base64,iVBORw0KGgo=",
    "DATA:image/jpeg;charset=x;BASE64,/9j/",
    "data:;base64,AAAA",
    "data:image/png,plain",
    "data:image/png;base64,",
    "https://generativelanguage.googleapis.com/v1beta/files/abc-1.pdf?x#y",
    "gs://bucket/object.mp3",
    "https://example.com/cat.png",
    "file:///etc/passwd",
    "",
];

fn content_part() -> BoxedStrategy<Value> {
    corrupt(prop_oneof![
        3 => fields(vec![("type", 0.95, s(&["text"])), ("text", 0.9, string_or_any(&["hi", ""]))]),
        2 => fields(vec![
            ("type", 0.95, s(&["image_url"])),
            ("image_url", 0.9, prop_oneof![
                s(URLS).prop_map(|u| json!({ "url": u })),
                s(URLS),
                any_json(),
            ].boxed()),
        ]),
        1 => fields(vec![
            ("type", 0.95, s(&["input_audio"])),
            ("input_audio", 0.9, fields(vec![
                ("data", 0.9, string_or_any(&["UklGRg==", ""])),
                ("format", 0.9, string_or_any(&["wav", "MP3", "", "x/y", "ogg+opus"])),
            ])),
        ]),
        1 => fields(vec![
            ("type", 0.95, s(&["file"])),
            ("file", 0.9, fields(vec![
                ("file_data", 0.5, string_or_any(URLS)),
                ("filename", 0.5, string_or_any(&["a.pdf", "noext", ".PNG"])),
                ("file_id", 0.5, string_or_any(URLS)),
            ])),
        ]),
        1 => fields(vec![("type", 0.95, s(&["refusal", "video", ""])), ("refusal", 0.8, word().prop_map(Value::String).boxed())]),
        1 => any_json(),
    ]
    .boxed())
}

fn content() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => word().prop_map(Value::String),
        3 => prop::collection::vec(content_part(), 0..4).prop_map(Value::Array),
        1 => Just(Value::Null),
        1 => any_json(),
    ]
    .boxed()
}

const TOOL_CALL_IDS: &[&str] = &[
    "call_1",
    "call_00000000000000ab_0_0__ts__c2lnbmF0dXJl",
    "call_x__ts__!!!",
    "call_x__ts__",
    "__ts__AAEC__ts__AA",
    "",
];

fn tool_call() -> BoxedStrategy<Value> {
    corrupt(fields(vec![
        ("id", 0.9, string_or_any(TOOL_CALL_IDS)),
        ("type", 0.7, string_or_any(&["function", "code_interpreter"])),
        (
            "function",
            0.9,
            fields(vec![
                ("name", 0.9, string_or_any(&["get_weather", "f", ""])),
                (
                    "arguments",
                    0.8,
                    prop_oneof![
                        s(&[
                            "{\"city\":\"Paris\"}",
                            "",
                            "  ",
                            "[1]",
                            "{",
                            "null",
                            "\"x\"",
                            "{\"a\":{\"b\":[]}}"
                        ]),
                        any_json().prop_map(|v| Value::String(v.to_string())),
                        any_json(),
                    ]
                    .boxed(),
                ),
            ]),
        ),
        (
            "extra_content",
            0.3,
            prop_oneof![
                string_or_any(&["c2ln", "", "not base64"])
                    .prop_map(|s| json!({"google": {"thought_signature": s}})),
                any_json(),
            ]
            .boxed(),
        ),
    ]))
}

fn message() -> BoxedStrategy<Value> {
    corrupt(fields(vec![
        (
            "role",
            0.95,
            string_or_any(&["system", "developer", "user", "user", "assistant", "tool", "function", "bot"]),
        ),
        ("content", 0.85, content()),
        (
            "tool_calls",
            0.25,
            prop_oneof![prop::collection::vec(tool_call(), 0..3).prop_map(Value::Array), any_json()].boxed(),
        ),
        ("tool_call_id", 0.25, string_or_any(TOOL_CALL_IDS)),
        ("name", 0.2, string_or_any(&["get_weather", "f", ""])),
        (
            "function_call",
            0.1,
            fields(vec![
                ("name", 0.9, string_or_any(&["f"])),
                ("arguments", 0.7, string_or_any(&["{}", "", "[]"])),
            ]),
        ),
    ]))
}

fn tool() -> BoxedStrategy<Value> {
    corrupt(fields(vec![
        ("type", 0.95, string_or_any(&["function", "function", "retrieval"])),
        (
            "function",
            0.9,
            fields(vec![
                ("name", 0.95, string_or_any(&["get_weather", "f", ""])),
                ("description", 0.4, word().prop_map(Value::String).boxed()),
                (
                    "parameters",
                    0.85,
                    prop_oneof![4 => schema_with_defs(), 2 => schema(), 1 => any_json()].boxed(),
                ),
            ]),
        ),
    ]))
}

fn response_format() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => fields(vec![
            ("type", 0.95, string_or_any(&["json_schema", "json_schema", "json_object", "text", "yaml"])),
            ("json_schema", 0.8, fields(vec![
                ("name", 0.8, s(&["r"])),
                ("strict", 0.3, any::<bool>().prop_map(Value::Bool).boxed()),
                ("schema", 0.9, prop_oneof![3 => schema_with_defs(), 1 => any_json()].boxed()),
            ])),
        ]),
        1 => any_json(),
    ]
    .boxed()
}

/// An OpenAI chat request, mostly well-formed, often subtly wrong, sometimes anything at all.
fn chat_request() -> BoxedStrategy<Value> {
    let shaped = fields(vec![
        (
            "model",
            0.95,
            string_or_any(&[
                "gemini-2.5-flash",
                "gemini-3-pro-preview",
                "gemini-2.5-pro",
                "models/gemini-3-flash",
                " ",
                "models/",
            ]),
        ),
        (
            "messages",
            0.95,
            prop_oneof![8 => prop::collection::vec(message(), 0..5).prop_map(Value::Array), 1 => any_json()]
                .boxed(),
        ),
        (
            "tools",
            0.4,
            prop_oneof![4 => prop::collection::vec(tool(), 0..3).prop_map(Value::Array), 1 => any_json()]
                .boxed(),
        ),
        (
            "tool_choice",
            0.2,
            prop_oneof![
                s(&["none", "auto", "required", "any"]),
                string_or_any(&["f", "get_weather"])
                    .prop_map(|n| json!({"type": "function", "function": {"name": n}})),
                any_json(),
            ]
            .boxed(),
        ),
        ("response_format", 0.3, response_format()),
        (
            "stop",
            0.2,
            prop_oneof![
                word().prop_map(Value::String),
                prop::collection::vec(json_leaf(), 0..4).prop_map(Value::Array),
                any_json()
            ]
            .boxed(),
        ),
        ("n", 0.2, prop_oneof![number(), any_json()].boxed()),
        ("stream", 0.3, prop_oneof![any::<bool>().prop_map(Value::Bool), json_leaf()].boxed()),
        (
            "stream_options",
            0.2,
            prop_oneof![json_leaf().prop_map(|v| json!({ "include_usage": v })), any_json(),].boxed(),
        ),
        (
            "reasoning_effort",
            0.2,
            string_or_any(&["none", "minimal", "low", "medium", "high", "xhigh", "max"]),
        ),
        ("temperature", 0.2, prop_oneof![number(), json_leaf()].boxed()),
        ("max_tokens", 0.2, number()),
        ("max_completion_tokens", 0.1, number()),
        ("seed", 0.1, prop_oneof![number(), json_leaf()].boxed()),
    ]);
    prop_oneof![12 => corrupt(shaped), 1 => any_json()].boxed()
}

fn embeddings_request() -> BoxedStrategy<Value> {
    let shaped = fields(vec![
        ("model", 0.95, string_or_any(&["text-embedding-004", "models/gemini-embedding-001", "", "  "])),
        (
            "input",
            0.95,
            prop_oneof![
                word().prop_map(Value::String),
                prop::collection::vec(
                    prop_oneof![4 => word().prop_map(Value::String), 1 => json_leaf(), 1 => any_json()],
                    0..5
                )
                .prop_map(Value::Array),
                any_json(),
            ]
            .boxed(),
        ),
        ("dimensions", 0.3, prop_oneof![number(), json_leaf()].boxed()),
        ("encoding_format", 0.3, string_or_any(&["float", "base64", "hex"])),
        ("user", 0.1, word().prop_map(Value::String).boxed()),
    ]);
    prop_oneof![8 => corrupt(shaped), 1 => any_json()].boxed()
}

// --- Gemini responses -----------------------------------------------------------------------

const SIGNATURES: &[&str] = &["c2lnbmF0dXJl", "AAEC", "AAE", "a-_b", "not base64!", "", "===="];
const FINISH: &[&str] =
    &["STOP", "MAX_TOKENS", "SAFETY", "RECITATION", "OTHER", "MALFORMED_FUNCTION_CALL", ""];

fn gemini_part() -> BoxedStrategy<Value> {
    corrupt(prop_oneof![
        4 => fields(vec![
            ("text", 0.95, string_or_any(&["Hello", "", "}{][\"\\"])),
            ("thought", 0.3, prop_oneof![any::<bool>().prop_map(Value::Bool), json_leaf()].boxed()),
            ("thoughtSignature", 0.1, string_or_any(SIGNATURES)),
        ]),
        2 => fields(vec![
            ("functionCall", 0.95, prop_oneof![
                fields(vec![("name", 0.9, string_or_any(&["get_weather", ""])), ("args", 0.8, any_json())]),
                any_json(),
            ].boxed()),
            ("thoughtSignature", 0.5, string_or_any(SIGNATURES)),
        ]),
        1 => Just(json!({"inlineData": {"mimeType": "image/png", "data": "AAAA"}})),
        1 => any_json(),
    ]
    .boxed())
}

fn gemini_candidate() -> BoxedStrategy<Value> {
    corrupt(fields(vec![
        ("content", 0.9, fields(vec![
            ("role", 0.8, s(&["model"])),
            ("parts", 0.9, prop_oneof![6 => prop::collection::vec(gemini_part(), 0..4).prop_map(Value::Array), 1 => any_json()].boxed()),
        ])),
        ("finishReason", 0.5, string_or_any(FINISH)),
        ("index", 0.6, prop_oneof![4 => (0u64..3).prop_map(Value::from), 1 => number(), 1 => json_leaf()].boxed()),
    ]))
}

fn usage_metadata() -> BoxedStrategy<Value> {
    let count =
        || prop_oneof![4 => (0u64..100_000).prop_map(Value::from), 1 => number(), 1 => json_leaf()].boxed();
    fields(vec![
        ("promptTokenCount", 0.8, count()),
        ("candidatesTokenCount", 0.6, count()),
        ("thoughtsTokenCount", 0.3, count()),
        ("cachedContentTokenCount", 0.2, count()),
        ("totalTokenCount", 0.6, count()),
    ])
}

/// A `GenerateContentResponse` (whole, or one stream event).
fn gemini_response() -> BoxedStrategy<Value> {
    let shaped = fields(vec![
        ("candidates", 0.85, prop_oneof![6 => prop::collection::vec(gemini_candidate(), 0..3).prop_map(Value::Array), 1 => any_json()].boxed()),
        ("usageMetadata", 0.4, prop_oneof![4 => usage_metadata(), 1 => any_json()].boxed()),
        ("promptFeedback", 0.1, prop_oneof![
            string_or_any(&["SAFETY", "OTHER"]).prop_map(|r| json!({ "blockReason": r })),
            any_json(),
        ].boxed()),
        ("modelVersion", 0.3, s(&["gemini-2.5-flash"])),
    ]);
    prop_oneof![10 => corrupt(shaped), 1 => any_json()].boxed()
}

// --- Google error bodies --------------------------------------------------------------------

const TYPE_PREFIXES: &[&str] = &["type.googleapis.com/", "", "x/y/", "type.googleapis.com/x/"];

fn typed(name: &'static str) -> BoxedStrategy<Value> {
    select(TYPE_PREFIXES).prop_map(move |p| Value::String(format!("{p}{name}"))).boxed()
}

fn quota_id(per_day: bool) -> BoxedStrategy<String> {
    ("[A-Za-z-]{0,12}", "[A-Za-z-]{0,12}")
        .prop_map(move |(a, b)| if per_day { format!("{a}PerDay{b}") } else { format!("{a}PerMinute{b}") })
        .prop_filter("no PerDay in a per-minute id", move |id| per_day || !id.contains("PerDay"))
        .boxed()
}

fn quota_failure(per_day: bool) -> BoxedStrategy<Value> {
    let others = prop::collection::vec(quota_id(false), 0..3);
    (typed("google.rpc.QuotaFailure"), quota_id(per_day), others, any::<usize>())
        .prop_map(move |(ty, id, others, at)| {
            let mut violations: Vec<Value> = others.into_iter().map(|q| json!({ "quotaId": q })).collect();
            if per_day {
                let at = at % (violations.len() + 1);
                violations.insert(at, json!({"quotaMetric": "m", "quotaId": id}));
            }
            json!({"@type": ty, "violations": violations})
        })
        .boxed()
}

fn retry_delay() -> BoxedStrategy<Value> {
    prop_oneof![
        (0u64..200_000).prop_map(|n| Value::String(format!("{n}s"))),
        (0u64..100, 0u32..1_000_000_000).prop_map(|(s, n)| Value::String(format!("{s}.{n:09}s"))),
        (any::<u64>(), any::<u32>()).prop_map(|(s, n)| json!({"seconds": s, "nanos": n})),
        (0u64..100).prop_map(|s| json!({"seconds": s.to_string()})),
        "[-0-9.smh ]{0,8}".prop_map(Value::String),
        json_leaf(),
    ]
    .boxed()
}

/// A detail that is neither a `QuotaFailure` nor a `RetryInfo`.
fn neutral_detail() -> BoxedStrategy<Value> {
    prop_oneof![
        typed("google.rpc.Help").prop_map(|t| json!({"@type": t, "links": []})),
        (
            typed("google.rpc.ErrorInfo"),
            string_or_any(quota::KEY_REASONS),
            string_or_any(&["generativelanguage.googleapis.com", "other.googleapis.com"])
        )
            .prop_map(|(t, r, svc)| json!({"@type": t, "reason": r, "metadata": {"service": svc}})),
        typed("google.rpc.LocalizedMessage").prop_map(|t| json!({"@type": t, "message": "m"})),
        ("[a-zA-Z./]{0,20}", any_json()).prop_map(|(t, v)| json!({"@type": t, "x": v})),
        json_leaf(),
    ]
    .boxed()
}

fn any_detail() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => neutral_detail(),
        1 => quota_failure(false),
        1 => quota_failure(true),
        1 => typed("google.rpc.RetryInfo").prop_flat_map(|t| retry_delay().prop_map(move |d| json!({"@type": t.clone(), "retryDelay": d}))),
        1 => any_json(),
    ]
    .boxed()
}

/// Wraps details as Gemini does (`{"error": ...}`) or as the OpenAI layer does (`[{"error": ...}]`).
fn error_body(status: u16, message: &str, details: Vec<Value>, as_array: bool) -> Vec<u8> {
    let error = json!({"error": {"code": status, "message": message, "status": "RESOURCE_EXHAUSTED", "details": details}});
    let v = if as_array { json!([error]) } else { error };
    serde_json::to_vec(&v).unwrap()
}

/// A structured error body with random details in random order, random messages and status.
fn structured_error() -> BoxedStrategy<Vec<u8>> {
    (
        any::<u16>(),
        string_or_any(&["API key not valid.", "reported as leaked", "quota"]),
        prop::collection::vec(any_detail(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(st, msg, details, arr)| error_body(st, msg.as_str().unwrap_or(""), details, arr))
        .boxed()
}

fn any_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        3 => mutated(ERROR_SEEDS),
        3 => structured_error(),
        1 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Checks shared by several properties
// ---------------------------------------------------------------------------------------------

fn check_translate_error(e: &TranslateError) -> Result<(), TestCaseError> {
    prop_assert!(e.status == 400 || e.status == 404, "status {} for {e}", e.status);
    prop_assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
    let body = e.to_openai_body();
    prop_assert!(
        body.pointer("/error/message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    Ok(())
}

fn check_chat(req: &Value) -> Result<(), TestCaseError> {
    match openai::chat_request_to_gemini(req) {
        Ok(call) => {
            prop_assert!(!call.model.is_empty());
            prop_assert!(
                !call.model.starts_with("models/") || call.model.len() > 7,
                "model {:?}",
                call.model
            );
            let contents = call.body.get("contents").and_then(Value::as_array);
            prop_assert!(contents.is_some_and(|c| !c.is_empty()), "no contents: {}", call.body);
            for turn in contents.unwrap() {
                let role = turn.get("role").and_then(Value::as_str);
                prop_assert!(matches!(role, Some("user" | "model")), "role {turn}");
                prop_assert!(
                    turn.get("parts").and_then(Value::as_array).is_some_and(|p| !p.is_empty()),
                    "{turn}"
                );
            }
            // The body is sent upstream: it must serialize.
            prop_assert!(serde_json::to_vec(&call.body).is_ok());
        }
        Err(e) => check_translate_error(&e)?,
    }
    Ok(())
}

fn check_embeddings(req: &Value) -> Result<(), TestCaseError> {
    match openai::embeddings_request_to_gemini(req) {
        Ok(call) => {
            prop_assert!(!call.model.is_empty());
            let n = call.body.get("requests").and_then(Value::as_array).map(Vec::len);
            prop_assert_eq!(n, Some(call.count));
            prop_assert!(call.count > 0);
        }
        Err(e) => check_translate_error(&e)?,
    }
    Ok(())
}

const FINISH_REASONS: &[&str] = &["stop", "length", "content_filter", "tool_calls"];

fn check_completion(resp: &Value) -> Result<(), TestCaseError> {
    let out = openai::gemini_response_to_chat(resp, "gemini-2.5-flash", "chatcmpl-fuzz", 1_700_000_000);
    prop_assert_eq!(out.get("object").and_then(Value::as_str), Some("chat.completion"), "{}", out);
    let choices = out.get("choices").and_then(Value::as_array);
    prop_assert!(choices.is_some_and(|c| !c.is_empty()), "{out}");
    for c in choices.unwrap() {
        prop_assert_eq!(c.pointer("/message/role").and_then(Value::as_str), Some("assistant"));
        let finish = c.get("finish_reason").and_then(Value::as_str).unwrap_or("<none>");
        prop_assert!(FINISH_REASONS.contains(&finish), "finish_reason {finish}");
    }
    prop_assert!(out.pointer("/usage/total_tokens").and_then(Value::as_u64).is_some(), "{out}");
    Ok(())
}

/// Feeds `events` to a stream translator and checks every chunk, then the closing rules.
fn check_stream(events: &[Value], include_usage: bool) -> Result<(), TestCaseError> {
    let mut t = StreamTranslator::new("gemini-2.5-flash", "chatcmpl-fuzz", 1_700_000_000, include_usage);
    let mut chunks = Vec::new();
    for e in events {
        chunks.extend(t.feed(e));
    }
    let closing = t.finish();
    prop_assert!(
        !closing.is_empty()
            || chunks.iter().any(|c| c.pointer("/choices/0/finish_reason").is_some_and(|f| !f.is_null()))
    );
    chunks.extend(closing);
    prop_assert!(t.finish().is_empty(), "a second finish() must add nothing");
    prop_assert!(events.iter().all(|e| t.feed(e).is_empty()), "feed() after finish() must add nothing");

    let mut finished: BTreeMap<u64, usize> = BTreeMap::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut ids = HashSet::new();
    for c in &chunks {
        prop_assert!(c.is_object(), "chunk is not an object: {c}");
        prop_assert_eq!(c.get("object").and_then(Value::as_str), Some("chat.completion.chunk"), "{}", c);
        prop_assert_eq!(c.get("id").and_then(Value::as_str), Some("chatcmpl-fuzz"));
        let choices = c.get("choices").and_then(Value::as_array);
        prop_assert!(choices.is_some(), "{c}");
        for ch in choices.unwrap() {
            let index = ch.get("index").and_then(Value::as_u64);
            prop_assert!(index.is_some(), "{ch}");
            let index = index.unwrap();
            seen.insert(index);
            if let Some(f) = ch.get("finish_reason").filter(|f| !f.is_null()) {
                prop_assert!(f.as_str().is_some_and(|f| FINISH_REASONS.contains(&f)), "{f}");
                *finished.entry(index).or_default() += 1;
            }
            for call in ch.pointer("/delta/tool_calls").and_then(Value::as_array).into_iter().flatten() {
                let id = call.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
                prop_assert!(id.starts_with("call_"), "{id}");
                prop_assert!(ids.insert(id.clone()), "tool call id {id} sent twice");
            }
        }
    }
    // Every choice that appeared is closed exactly once.
    for index in &seen {
        prop_assert_eq!(finished.get(index).copied(), Some(1), "choice {} finish count", index);
    }
    if include_usage {
        let last = chunks.last().unwrap();
        prop_assert_eq!(last.get("choices"), Some(&json!([])), "{}", last);
        prop_assert!(last.pointer("/usage/total_tokens").is_some(), "{last}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. OpenAI <-> Gemini translators
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn chat_request_translation_never_panics(req in chat_request()) {
        check_chat(&req)?;
    }

    #[test]
    fn embeddings_request_translation_never_panics(req in embeddings_request()) {
        check_embeddings(&req)?;
    }
}

proptest! {
    #![proptest_config(config(768))]

    /// Raw request bytes (mutated seeds, or random bytes) go through serde_json first, as the
    /// server does; whatever parses is fed to both translators.
    #[test]
    fn raw_request_bytes_never_panic(
        bytes in prop_oneof![4 => mutated(REQUEST_SEEDS), 1 => prop::collection::vec(any::<u8>(), 0..64)],
    ) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            check_chat(&v)?;
            check_embeddings(&v)?;
        }
    }

    /// Embedding answers and model lists: never panic, one OpenAI embedding per Gemini one.
    #[test]
    fn embeddings_and_models_responses_never_panic(
        req in embeddings_request(),
        resp in prop_oneof![
            3 => prop::collection::vec(
                prop_oneof![
                    4 => prop::collection::vec(prop_oneof![4 => number(), 1 => json_leaf()], 0..6)
                        .prop_map(|v| json!({ "values": v })),
                    1 => any_json(),
                ],
                0..4,
            )
            .prop_map(|e| json!({ "embeddings": e, "usageMetadata": {"promptTokenCount": 3} })),
            1 => any_json(),
        ],
        pages in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(fields(vec![("name", 0.9, string_or_any(&["models/gemini-2.5-flash", "", "x"]))]), 0..3)
                    .prop_map(|m| json!({ "models": m })),
                any_json(),
            ],
            0..3,
        ),
    ) {
        if let Ok(call) = openai::embeddings_request_to_gemini(&req) {
            let out = openai::embeddings_response_to_openai(&resp, &call);
            prop_assert_eq!(out.get("object").and_then(Value::as_str), Some("list"), "{}", out);
            let want = resp.get("embeddings").and_then(Value::as_array).map_or(0, Vec::len);
            prop_assert_eq!(out.get("data").and_then(Value::as_array).map(Vec::len), Some(want), "{}", out);
        }
        let list = openai::models_to_openai(&pages);
        prop_assert_eq!(list.get("object").and_then(Value::as_str), Some("list"));
        for page in &pages {
            let m = openai::model_to_openai(page);
            prop_assert!(m.get("id").and_then(Value::as_str).is_some(), "{m}");
        }
    }

    #[test]
    fn gemini_response_translation_never_panics(resp in gemini_response()) {
        check_completion(&resp)?;
    }

    #[test]
    fn stream_translation_emits_only_well_formed_chunks(
        events in prop::collection::vec(gemini_response(), 0..6),
        include_usage in any::<bool>(),
    ) {
        check_stream(&events, include_usage)?;
    }

    /// Mutated real responses and streams: whatever serde_json accepts is a response or an event.
    #[test]
    fn raw_response_bytes_never_panic(bytes in mutated(&[GEMINI_RESPONSE_1, JSON_ARRAY_1, ERROR_429_PER_DAY])) {
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            check_completion(&v)?;
            let events = match &v {
                Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            check_stream(&events, true)?;
            let err = openai::gemini_error_to_openai(429, &bytes);
            prop_assert!(err.pointer("/error/message").is_some(), "{err}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. SSE / JSON-array framing
// ---------------------------------------------------------------------------------------------

/// Cuts `data` at the given points (taken modulo its length, sorted) into chunks.
fn split_at(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(data[last..p].to_vec());
        last = p;
    }
    out.push(data[last..].to_vec());
    out
}

fn frame_all(framer: &mut sse::Framer, chunks: &[Vec<u8>]) -> Vec<Vec<u8>> {
    chunks.iter().flat_map(|c| framer.feed(c)).collect()
}

/// How one SSE event is written.
#[derive(Debug, Clone)]
struct SseStyle {
    crlf: bool,
    comment: bool,
    event_line: bool,
    space_after_colon: bool,
    /// Split the payload over two `data:` lines at this point (the framer joins them with `\n`).
    split_data: Option<usize>,
}

fn sse_style() -> impl Strategy<Value = SseStyle> {
    (
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.2, any::<usize>()),
    )
        .prop_map(|(crlf, comment, event_line, space_after_colon, split_data)| SseStyle {
            crlf,
            comment,
            event_line,
            space_after_colon,
            split_data,
        })
}

/// Writes one event; returns its bytes and the payload the framer must yield for it.
fn sse_event(payload: &str, style: &SseStyle) -> (Vec<u8>, Vec<u8>) {
    let nl = if style.crlf { "\r\n" } else { "\n" };
    let sp = if style.space_after_colon { " " } else { "" };
    let mut out = String::new();
    if style.comment {
        out.push_str(&format!(": keep-alive{nl}"));
    }
    if style.event_line {
        out.push_str(&format!("event: message{nl}id: 7{nl}"));
    }
    // A first `data:` line that is empty is left out: the framer drops it (the SSE spec would
    // give a leading "\n"), a difference no Gemini stream exercises.
    let split = style.split_data.filter(|_| !payload.is_empty()).map(|p| 1 + p % payload.len());
    let expected = match split.filter(|p| payload.is_char_boundary(*p)) {
        Some(p) => {
            let (a, b) = payload.split_at(p);
            out.push_str(&format!("data:{sp}{a}{nl}data:{sp}{b}{nl}"));
            // One space after the colon is part of the field syntax, not of the value.
            let b = if sp.is_empty() { b.strip_prefix(' ').unwrap_or(b) } else { b };
            format!("{a}\n{b}")
        }
        None => {
            out.push_str(&format!("data:{sp}{payload}{nl}"));
            payload.to_string()
        }
    };
    out.push_str(nl);
    (out.into_bytes(), expected.into_bytes())
}

/// A compact JSON text (one line, no leading space), as Gemini sends per event.
fn payload() -> BoxedStrategy<String> {
    prop_oneof![
        3 => gemini_response().prop_map(|v| v.to_string()),
        1 => any_json().prop_map(|v| v.to_string()),
        1 => Just("[DONE]".to_string()),
    ]
    .boxed()
}

fn payload_object() -> BoxedStrategy<String> {
    prop_oneof![
        3 => gemini_response(),
        1 => prop::collection::vec((word(), any_json()), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        1 => prop::collection::vec(any_json(), 0..3).prop_map(Value::Array),
    ]
    .prop_map(|v| if v.is_object() || v.is_array() { v.to_string() } else { json!({ "v": v }).to_string() })
    .boxed()
}

const ARRAY_SEPARATORS: &[&str] = &[",", ",\r\n", "\r\n,", " , ", ",\n\n"];

proptest! {
    #![proptest_config(config(1024))]

    /// Framing never panics and does not depend on how the bytes were chunked. Leading blanks
    /// are cut first: a first chunk of blanks only is dropped before the mode is known, so
    /// `"  data: x\n\n"` yields `x` when split after the blanks and nothing when whole (the
    /// whole form is right: `"  data"` is no SSE field), a difference no real stream shows.
    #[test]
    fn framer_is_split_invariant_on_any_bytes(
        data in prop_oneof![
            2 => prop::collection::vec(any::<u8>(), 0..512),
            3 => mutated(STREAM_SEEDS),
            1 => prop::collection::vec(select(&b"data: {}[]\"\\\n\r,x"[..]), 0..256),
        ],
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max in prop_oneof![Just(sse::MAX_EVENT_BYTES), 8usize..128],
    ) {
        let start = data.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(data.len());
        let data = &data[start..];
        let mut whole = sse::Framer::new(max);
        let expected = whole.feed(data);
        let mut pieces = sse::Framer::new(max);
        let got = frame_all(&mut pieces, &split_at(data, &cuts));
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(pieces.oversized, whole.oversized);
        for p in &got {
            prop_assert!(p.len() <= max, "payload of {} bytes past the limit {}", p.len(), max);
        }
    }

    /// A valid SSE stream of N events, cut anywhere, yields exactly its N payloads.
    #[test]
    fn framer_yields_every_sse_event(
        events in prop::collection::vec((payload(), sse_style()), 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
        leading_newlines in 0usize..3,
    ) {
        let mut stream = "\n".repeat(leading_newlines).into_bytes();
        let mut expected = Vec::new();
        for (p, style) in &events {
            let (bytes, want) = sse_event(p, style);
            stream.extend(bytes);
            expected.push(want);
        }
        let mut f = sse::Framer::default();
        let got = frame_all(&mut f, &split_at(&stream, &cuts));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(f.oversized, 0);
    }

    /// A valid `streamGenerateContent` JSON array of N elements, cut anywhere, yields exactly the
    /// N element texts.
    #[test]
    fn framer_yields_every_json_array_element(
        elements in prop::collection::vec(payload_object(), 0..6),
        sep in select(ARRAY_SEPARATORS),
        leading in select(&["", "\r\n", "  "][..]),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream = format!("{leading}[{}]", elements.join(sep));
        let mut f = sse::Framer::default();
        let got = frame_all(&mut f, &split_at(stream.as_bytes(), &cuts));
        let expected: Vec<Vec<u8>> = elements.iter().map(|e| e.as_bytes().to_vec()).collect();
        prop_assert_eq!(got, expected);
    }

    /// With a 64-byte limit: an event that fits is always delivered, whatever came before it; an
    /// event clearly past the limit never is; nothing delivered is past the limit.
    #[test]
    fn framer_limit_drops_only_oversized_events(
        sizes in prop::collection::vec(0usize..140, 1..14),
        crlf in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        const MAX: usize = 64;
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut stream = Vec::new();
        let mut events = Vec::new();
        for (i, n) in sizes.iter().enumerate() {
            let payload = format!("{i:03}{}", "x".repeat(*n));
            let event = format!("data: {payload}{nl}{nl}");
            stream.extend_from_slice(event.as_bytes());
            events.push((event.len(), payload.into_bytes()));
        }
        let mut f = sse::Framer::new(MAX);
        let got = frame_all(&mut f, &split_at(&stream, &cuts));
        let mut rest = got.iter().peekable();
        for (len, payload) in &events {
            if *len <= MAX {
                prop_assert_eq!(rest.next(), Some(payload), "event of {} bytes lost; got {:?}", len, got);
            } else if *len > MAX + 2 {
                prop_assert!(rest.peek() != Some(&payload), "event of {len} bytes past the limit delivered");
            } else if rest.peek() == Some(&payload) {
                rest.next();
            }
        }
        prop_assert!(rest.next().is_none(), "unexpected payloads: {got:?}");
    }

    /// The usage scanner remembers the last usage block, in either stream form, cut anywhere.
    #[test]
    fn usage_scanner_takes_the_last_usage(
        usages in prop::collection::vec(prop::option::of(0u64..1_000_000), 0..8),
        json_array in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
        garbage in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let events: Vec<String> = usages
            .iter()
            .map(|u| match u {
                Some(t) => json!({"candidates": [], "usageMetadata": {"promptTokenCount": 1, "totalTokenCount": t}}).to_string(),
                None => json!({"candidates": [{"content": {"parts": [{"text": "usageMetadata"}]}}]}).to_string(),
            })
            .collect();
        let stream = if json_array {
            format!("[{}]", events.join(",\r\n"))
        } else {
            events.iter().map(|e| format!("data: {e}\r\n\r\n")).collect()
        };
        let mut scanner = usage::StreamUsage::default();
        for chunk in split_at(stream.as_bytes(), &cuts) {
            scanner.feed(&chunk);
        }
        prop_assert_eq!(scanner.tokens(), usages.iter().rev().find_map(|u| *u));
        // Trailing garbage never panics.
        scanner.feed(&garbage);
        let mut fresh = usage::StreamUsage::default();
        fresh.feed(&garbage);
    }
}

/// Size of the framer's state as its `Debug` form shows it (the buffer is printed byte by byte).
fn debug_size(f: &sse::Framer) -> usize {
    format!("{f:?}").len()
}

#[test]
fn framer_memory_is_bounded_on_huge_events_and_garbage() {
    const MAX: usize = 64;
    // At most 64 buffered bytes, each printed as up to 3 digits and ", ", plus the other fields.
    let bound = MAX * 5 + 300;
    let chunk_size = 64 * 1024;
    let ten_mb = 10 * 1024 * 1024;
    let huge_data_line: Vec<u8> =
        b"data: ".iter().copied().chain(std::iter::repeat_n(b'x', ten_mb)).collect();
    let deep_array: Vec<u8> = b"[{".iter().copied().chain(std::iter::repeat_n(b'{', ten_mb)).collect();
    let open_string: Vec<u8> = b"[{\"".iter().copied().chain(std::iter::repeat_n(b'a', ten_mb)).collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..ten_mb)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    for (name, stream) in [
        ("huge data line", huge_data_line),
        ("deep array", deep_array),
        ("open string", open_string),
        ("random", random),
    ] {
        let started = Instant::now();
        let mut f = sse::Framer::new(MAX);
        let mut outputs = 0usize;
        for chunk in stream.chunks(chunk_size) {
            for p in f.feed(chunk) {
                assert!(p.len() <= MAX, "{name}: payload of {} bytes", p.len());
                outputs += 1;
            }
            assert!(debug_size(&f) <= bound, "{name}: framer state grew to {} (Debug bytes)", debug_size(&f));
        }
        assert!(outputs <= stream.len() / 8, "{name}: {outputs} payloads");
        // Then a normal event still comes through (after the oversized one is closed).
        let tail = f.feed(b"\n\ndata: ok\n\n");
        if name == "huge data line" {
            assert_eq!(tail, vec![b"ok".to_vec()], "{name}");
            assert_eq!(f.oversized, 1, "{name}");
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{name}: took {:?}", started.elapsed());
    }
}

#[test]
fn framer_drops_a_huge_event_and_keeps_the_next_ones() {
    for nl in ["\n", "\r\n"] {
        let mut f = sse::Framer::new(64);
        let mut got = f.feed(format!("data: first{nl}{nl}data: ").as_bytes());
        for _ in 0..1024 {
            got.extend(f.feed(&[b'y'; 1024]));
            assert!(debug_size(&f) <= 64 * 5 + 300);
        }
        got.extend(f.feed(format!("{nl}{nl}data: second{nl}{nl}").as_bytes()));
        assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()], "line ending {nl:?}");
        assert_eq!(f.oversized, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Upstream answers: quota::classify and parse_duration
// ---------------------------------------------------------------------------------------------

/// Reasons `classify` may put in `KeyInvalid`: fixed codes only, never upstream text.
fn allowed_reason(r: &str) -> bool {
    quota::KEY_REASONS.contains(&r) || r == "API_KEY_LEAKED"
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn classify_never_panics_and_respects_status_families(
        status in prop_oneof![3 => select(&[200u16, 204, 400, 401, 403, 404, 429, 500, 502, 503, 504][..]), 1 => any::<u16>()],
        body in any_body(),
    ) {
        let outcome = quota::classify(status, &body);
        prop_assert!(!gemini_key_manager::metrics::outcome_label(&outcome).is_empty());
        match status {
            200..=299 => prop_assert_eq!(&outcome, &Outcome::Success),
            500 | 502 | 503 | 504 => prop_assert_eq!(&outcome, &Outcome::Transient),
            429 => match &outcome {
                Outcome::QuotaPerDay | Outcome::RateLimited => {}
                Outcome::QuotaPerMinute { retry } => {
                    prop_assert!(*retry >= quota::MIN_RETRY && *retry <= quota::MAX_RETRY, "retry {retry:?}");
                }
                other => prop_assert!(false, "429 classified as {other:?}"),
            },
            400 | 401 | 403 => match &outcome {
                Outcome::ClientError => {}
                Outcome::KeyInvalid { reason } => prop_assert!(allowed_reason(reason), "reason {reason:?}"),
                other => prop_assert!(false, "{status} classified as {other:?}"),
            },
            _ => prop_assert_eq!(&outcome, &Outcome::ClientError),
        }
        prop_assert_eq!(outcome.retry_on_next_key(), !matches!(outcome, Outcome::Success | Outcome::ClientError));
        // The OpenAI rendering of the same answer never panics either.
        let err = openai::gemini_error_to_openai(status, &body);
        prop_assert!(err.pointer("/error/message").and_then(Value::as_str).is_some(), "{err}");
        if let Ok(v) = serde_json::from_slice::<Value>(&body) {
            let _ = usage::tokens(&v);
        }
    }

    /// A 429 with a per-day `QuotaFailure` is per-day, wherever it sits among other details.
    #[test]
    fn classify_per_day_wins_in_any_order(
        mut details in prop::collection::vec(any_detail(), 0..5),
        per_day in quota_failure(true),
        at in any::<usize>(),
        as_array in any::<bool>(),
        message in word(),
    ) {
        let at = at % (details.len() + 1);
        details.insert(at, per_day);
        let body = error_body(429, &message, details, as_array);
        prop_assert_eq!(quota::classify(429, &body), Outcome::QuotaPerDay);
    }

    /// A 429 with a `RetryInfo` of N seconds (and no per-day violation) cools down for N seconds,
    /// clamped to 1 s ..= 24 h, wherever the detail sits.
    #[test]
    fn classify_per_minute_takes_the_retry_delay(
        mut details in prop::collection::vec(prop_oneof![3 => neutral_detail(), 1 => quota_failure(false)], 0..5),
        secs in prop_oneof![0u64..100, 0u64..200_000],
        at in any::<usize>(),
        as_array in any::<bool>(),
    ) {
        let at = at % (details.len() + 1);
        details.insert(at, json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{secs}s")}));
        let body = error_body(429, "Resource has been exhausted", details, as_array);
        let want = Duration::from_secs(secs).clamp(quota::MIN_RETRY, quota::MAX_RETRY);
        prop_assert_eq!(quota::classify(429, &body), Outcome::QuotaPerMinute { retry: want });
    }

    #[test]
    fn parse_duration_never_panics(s in prop_oneof![any::<String>(), "[0-9.s +-]{0,24}", "[0-9]{0,25}\\.[0-9]{0,15}s"]) {
        if let Some(d) = quota::parse_duration(&s) {
            let t = s.trim();
            prop_assert!(t.ends_with('s') && t.as_bytes()[0].is_ascii_digit(), "{s:?} -> {d:?}");
        }
    }

    #[test]
    fn parse_duration_round_trips_whole_seconds(n in any::<u64>(), pad_left in " {0,2}", pad_right in " {0,2}") {
        prop_assert_eq!(quota::parse_duration(&format!("{pad_left}{n}s{pad_right}")), Some(Duration::from_secs(n)));
        prop_assert_eq!(quota::parse_duration(&format!("{n}")), None);
        prop_assert_eq!(quota::parse_duration(&format!("-{n}s")), None);
    }

    #[test]
    fn parse_duration_reads_fractions(n in 0u64..1_000_000, frac in "[0-9]{1,15}") {
        let digits: String = frac.chars().take(9).collect();
        let nanos: u32 = format!("{digits:0<9}").parse().unwrap();
        prop_assert_eq!(quota::parse_duration(&format!("{n}.{frac}s")), Some(Duration::new(n, nanos)));
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Key file
// ---------------------------------------------------------------------------------------------

/// Pieces of key-file lines, the tricky characters included.
const KEY_PIECES: &[&str] = &[
    "AIzaSyA1",
    "AIzaSyB2",
    "AIzaSyA1",
    "proj-a",
    "#",
    "# comment",
    " ",
    "\t",
    "\u{feff}",
    "\r",
    "\u{a0}",
    "\u{2028}",
    "\u{3000}",
    "#AIzaSyC3",
    "x#y",
    "\u{200b}",
    "é",
];

fn keyfile_text() -> BoxedStrategy<String> {
    let line = prop::collection::vec(select(KEY_PIECES), 0..6).prop_map(|p| p.concat());
    prop_oneof![
        4 => prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n")),
        1 => any::<String>(),
        1 => mutated(&[KEYS_BYTES]).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// An answer body that may carry usage blocks of any shape, among other fields.
fn usage_body() -> BoxedStrategy<Value> {
    let count = prop_oneof![
        3 => (0u64..1_000_000).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any_json(),
    ];
    let counts = |names: &'static [&'static str]| {
        let spec = names.iter().map(|n| (*n, 0.6, count.clone().boxed())).collect();
        prop_oneof![4 => fields(spec), 1 => any_json()].boxed()
    };
    let object = fields(vec![
        ("candidates", 0.5, any_json()),
        (
            "usageMetadata",
            0.6,
            counts(&[
                "totalTokenCount",
                "promptTokenCount",
                "candidatesTokenCount",
                "thoughtsTokenCount",
                "toolUsePromptTokenCount",
            ]),
        ),
        ("usage", 0.4, counts(&["total_tokens", "prompt_tokens", "completion_tokens"])),
        ("modelVersion", 0.3, any_json()),
    ]);
    prop_oneof![
        6 => object.clone(),
        1 => prop::collection::vec(object, 0..4).prop_map(Value::Array),
        1 => any_json(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(2048))]

    /// The raw-bytes token reader (every answer passes through it) agrees with the tree reader,
    /// on whole bodies and on truncated ones.
    #[test]
    fn usage_tokens_of_raw_bytes_agrees_with_the_tree(body in usage_body(), cut in any::<usize>(), pretty in any::<bool>()) {
        let raw = if pretty { serde_json::to_vec_pretty(&body) } else { serde_json::to_vec(&body) }.unwrap();
        prop_assert_eq!(usage::tokens_of(&raw), usage::tokens(&body), "{}", String::from_utf8_lossy(&raw));
        let cut = &raw[..cut % (raw.len() + 1)];
        let tree = serde_json::from_slice::<Value>(cut).ok().and_then(|v| usage::tokens(&v));
        prop_assert_eq!(usage::tokens_of(cut), tree);
    }

    #[test]
    fn keyfile_keys_are_clean_and_unique(text in keyfile_text()) {
        let parsed = keyfile::parse(&text);
        let mut seen = HashSet::new();
        for k in &parsed.keys {
            prop_assert!(!k.key.is_empty(), "empty key from {text:?}");
            prop_assert!(!k.key.chars().any(char::is_whitespace), "whitespace in key {:?} from {text:?}", k.key);
            prop_assert!(!k.key.starts_with('#'), "comment taken as key {:?} from {text:?}", k.key);
            prop_assert!(text.contains(k.key.as_str()));
            prop_assert!(seen.insert(k.key.clone()), "duplicate key {:?} from {text:?}", k.key);
            if let Some(p) = &k.project {
                prop_assert!(!p.is_empty() && !p.starts_with('#') && !p.chars().any(char::is_whitespace), "project {p:?}");
            }
        }
        // Warnings name line numbers, never keys.
        for w in &parsed.warnings {
            let named = parsed.keys.iter().any(|k| k.key.starts_with("AIza") && w.contains(k.key.as_str()));
            prop_assert!(!named, "warning names a key: {w}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Usage file
// ---------------------------------------------------------------------------------------------

/// Equality up to `converted_from_seed`, which is never serialized.
fn same_file(a: &UsageFile, b: &UsageFile) -> bool {
    let (mut a, mut b) = (a.clone(), b.clone());
    a.converted_from_seed = false;
    b.converted_from_seed = false;
    a == b
}

fn check_round_trip(file: &UsageFile) -> Result<(), TestCaseError> {
    let text = serde_json::to_vec(file).unwrap();
    let again = store_format::parse_usage(&text, LA);
    prop_assert!(again.is_ok(), "re-parse failed: {:?} for {}", again, String::from_utf8_lossy(&text));
    let again = again.unwrap();
    prop_assert!(!again.converted_from_seed);
    prop_assert!(same_file(file, &again), "round trip changed the file:\n{:?}\n{:?}", file, again);
    Ok(())
}

const ZONES: &[Tz] = &[
    chrono_tz::America::Los_Angeles,
    chrono_tz::UTC,
    chrono_tz::Asia::Tokyo,
    chrono_tz::Pacific::Kiritimati,
    chrono_tz::Etc::GMTPlus12,
    chrono_tz::America::Santiago,
    chrono_tz::Asia::Tehran,
];

/// A realistic raw key: long enough that its mask cannot contain it.
fn raw_key() -> BoxedStrategy<String> {
    "AIza[A-Za-z0-9_-]{8,35}".boxed()
}

const DATES: &[&str] = &[
    "2026-11-22",
    "2026-03-08",
    "2024-02-29",
    " 2026-11-01 ",
    "0000-01-01",
    "9999-12-31",
    "+10000-01-01",
    "2026-13-01",
    "26-1-1",
    "",
];

/// A seed-format file over `keys`; sometimes with a wrongly typed value somewhere.
fn seed_file() -> BoxedStrategy<(Value, Vec<String>)> {
    let count = || {
        prop_oneof![8 => (0u64..1000).prop_map(Value::from), 1 => Just(json!(3.0)), 1 => json_leaf()].boxed()
    };
    let models = || {
        prop::collection::vec(select(&["gemini-2.5-flash", "gemini-2.5-pro", "*", "unknown", ""][..]), 0..3)
    };
    (
        prop::collection::vec(raw_key(), 1..5),
        string_or_any(DATES),
        prop::collection::vec((any::<usize>(), count()), 0..5),
        prop::collection::vec(
            (
                any::<usize>(),
                prop::collection::vec((select(&["gemini-2.5-flash", "gemini-2.5-pro"][..]), count()), 0..3),
            ),
            0..4,
        ),
        prop::collection::vec(any::<usize>(), 0..4),
        prop::collection::vec((any::<usize>(), models()), 0..4),
        0u8..3,
    )
        .prop_map(move |(keys, date, counts, model_counts, flat_exhausted, per_model_exhausted, form)| {
            let k = |i: usize| keys[i % keys.len()].clone();
            let mut root = Map::new();
            root.insert("date".into(), date);
            let counts: Map<String, Value> = counts.into_iter().map(|(i, n)| (k(i), n)).collect();
            root.insert("counts".into(), Value::Object(counts));
            if form > 0 {
                let mc: Map<String, Value> = model_counts
                    .into_iter()
                    .map(|(i, per)| {
                        (k(i), Value::Object(per.into_iter().map(|(m, n)| (m.to_string(), n)).collect()))
                    })
                    .collect();
                root.insert("model_counts".into(), Value::Object(mc));
            }
            let exhausted = if form == 2 {
                Value::Object(per_model_exhausted.into_iter().map(|(i, ms)| (k(i), json!(ms))).collect())
            } else {
                Value::Array(flat_exhausted.into_iter().map(|i| Value::String(k(i))).collect())
            };
            root.insert("exhausted_keys".into(), exhausted);
            (Value::Object(root), keys)
        })
        .boxed()
}

/// A pool that has lived through some outcomes, and its snapshot.
fn pool_snapshot() -> BoxedStrategy<UsageFile> {
    let outcome = prop_oneof![
        4 => Just(Outcome::Success),
        1 => Just(Outcome::QuotaPerDay),
        1 => (0u64..100_000).prop_map(|s| Outcome::QuotaPerMinute { retry: Duration::from_secs(s) }),
        1 => Just(Outcome::RateLimited),
        1 => select(quota::KEY_REASONS).prop_map(|r| Outcome::KeyInvalid { reason: r.to_string() }),
        1 => Just(Outcome::Transient),
    ];
    let model = prop::option::of(select(&["gemini-2.5-flash", "gemini-2.5-pro", "text-embedding-004"][..]));
    (
        prop::collection::vec((raw_key(), prop::option::of(select(&["proj-a", "proj-b", "p c"][..]))), 0..4),
        select(ZONES),
        0i64..4_000_000_000,
        prop::collection::vec((any::<usize>(), model, outcome, any::<u64>(), 0i64..200_000), 0..12),
    )
        .prop_map(|(keys, tz, start, events)| {
            let specs: Vec<KeySpec> = keys.iter().map(|(k, p)| KeySpec::new(k, *p)).collect();
            let mut now: DateTime<Utc> = DateTime::from_timestamp(start, 0).unwrap();
            let mut pool = KeyState::new(specs.clone(), tz, now);
            for (i, model, outcome, tokens, dt) in events {
                now += chrono::Duration::seconds(dt);
                if specs.is_empty() {
                    continue;
                }
                let idx = i % specs.len();
                let fp = keyfile::fingerprint(&specs[idx].key);
                pool.record(idx, &fp, model, &outcome, tokens, now);
            }
            pool.snapshot(now)
        })
        .boxed()
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn usage_file_parse_never_panics_and_round_trips(
        bytes in prop_oneof![
            5 => mutated(USAGE_SEEDS),
            1 => prop::collection::vec(any::<u8>(), 0..128),
            1 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
        tz in select(ZONES),
    ) {
        if let Ok(file) = store_format::parse_usage(&bytes, tz) {
            check_round_trip(&file)?;
        }
    }

    /// What the pool saves, the parser reads back unchanged.
    #[test]
    fn usage_file_snapshots_round_trip(file in pool_snapshot()) {
        check_round_trip(&file)?;
    }

    /// Seed files convert without a trace of a raw key (in the value, in its serialization or in
    /// an error message), and every count lands somewhere.
    #[test]
    fn usage_file_seed_conversion_never_leaks_a_key((seed, keys) in seed_file(), tz in select(ZONES)) {
        let text = serde_json::to_vec(&seed).unwrap();
        match store_format::parse_usage(&text, tz) {
            Ok(file) => {
                prop_assert!(file.converted_from_seed);
                let out = serde_json::to_string(&file).unwrap();
                let debug = format!("{file:?}");
                for k in &keys {
                    prop_assert!(!out.contains(k.as_str()), "raw key {k} in {out}");
                    prop_assert!(!debug.contains(k.as_str()), "raw key {k} in {debug}");
                }
                for fp in file.keys.keys() {
                    prop_assert!(keys.iter().any(|k| keyfile::fingerprint(k) == *fp), "unknown fingerprint {fp}");
                }
                // Request totals: model_counts, plus flat counts of keys model_counts does not cover.
                let model_counts = seed.get("model_counts").and_then(Value::as_object);
                let n = |v: &Value| u128::from(v.as_u64().unwrap_or_else(|| v.as_f64().unwrap() as u64));
                let mut want = 0u128;
                for per in model_counts.into_iter().flat_map(|m| m.values()) {
                    want += per.as_object().unwrap().values().map(n).sum::<u128>();
                }
                for (k, c) in seed["counts"].as_object().unwrap() {
                    if model_counts.is_none_or(|m| !m.contains_key(k)) {
                        want += n(c);
                    }
                }
                let got: u128 =
                    file.keys.values().flat_map(|r| r.models.values()).map(|m| u128::from(m.requests)).sum();
                prop_assert_eq!(got, want);
                check_round_trip(&file)?;
            }
            Err(e) => {
                prop_assert!(!e.is_empty());
                for k in &keys {
                    prop_assert!(!e.contains(k.as_str()), "raw key {k} in error {e}");
                }
            }
        }
    }
}

#[test]
fn usage_file_seeds_parse() {
    for seed in USAGE_SEEDS {
        let file = store_format::parse_usage(seed, LA).unwrap();
        let text = serde_json::to_string(&file).unwrap();
        assert!(!text.contains("AIzaKEY"), "{text}");
        assert!(same_file(&store_format::parse_usage(text.as_bytes(), LA).unwrap(), &file));
    }
    let day = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
    let now = LA.from_local_datetime(&day.and_hms_opt(10, 0, 0).unwrap()).unwrap().with_timezone(&Utc);
    let snapshot = KeyState::new(vec![KeySpec::new("AIzaSyFUZZFUZZFUZZ", None)], LA, now).snapshot(now);
    assert_eq!(snapshot.quota_day, day);
}

#[test]
fn usage_file_deep_nesting_is_refused_quickly() {
    let inputs: Vec<Vec<u8>> = vec![
        "[".repeat(100_000).into_bytes(),
        "{\"a\":".repeat(100_000).into_bytes(),
        format!("{{\"version\":1,\"keys\":{}", "{\"k\":".repeat(100_000)).into_bytes(),
        format!("{{\"date\":\"2026-11-22\",\"counts\":{}", "[".repeat(100_000)).into_bytes(),
    ];
    for input in inputs {
        let started = Instant::now();
        assert!(store_format::parse_usage(&input, LA).is_err());
        // The same input through the other parsers.
        let _ = quota::classify(429, &input);
        let _ = resources::referenced("/v1beta/files/a", None, &input);
        let _ = resources::referenced("/v1beta/interactions", None, &input);
        let _ = resources::created("/v1beta/files", &input);
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// 6. Routing and the resources a request names
// ---------------------------------------------------------------------------------------------

fn base64_encode(bytes: &[u8], pad: bool) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

const TARGET_PIECES: &[&str] = &[
    "/",
    "v1beta",
    "v1",
    "upload",
    "openai",
    "models",
    "files",
    "cachedContents",
    "gemini-2.5-flash",
    ":generateContent",
    "?",
    "&",
    "=",
    "key",
    "upload_id",
    "#",
    "%",
    "%2F",
    "%zz",
    "+",
    "http://",
    "://",
    "evil.example",
    "é",
    " ",
    "\u{0}",
    "..",
    "chat",
    "completions",
    "embeddings",
    "status",
    "abc-1_2",
];

fn target_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::collection::vec(select(TARGET_PIECES), 0..12).prop_map(|p| p.concat()),
        1 => any::<String>(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn router_never_panics(
        target in target_text(),
        method in string_or_any(&["GET", "POST", "PUT", "DELETE", "get", ""]),
        bearer in any::<bool>(),
        name in select(&["key", "upload_id", "alt", ""][..]),
    ) {
        let t = router::Target::parse(&target);
        prop_assert!(!t.path.contains(['?', '#']), "{t:?}");
        prop_assert!(!t.query.contains('#'), "{t:?}");
        if !target.contains("://") && !target.contains('#') {
            let rebuilt = if target.contains('?') { format!("{}?{}", t.path, t.query) } else { t.path.clone() };
            prop_assert_eq!(rebuilt, target.clone());
        }
        let _ = t.query_param(name);
        let method = method.as_str().unwrap_or("GET");
        let r = router::route(method, &t.path, bearer);
        prop_assert_eq!(&r, &router::route(method, &t.path, bearer));
        prop_assert!(!r.name().is_empty());
        let _ = r.surface();
        let _ = quota::model_from_path(&target);
    }

    #[test]
    fn base64_decode_never_panics_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64), junk in any::<String>()) {
        prop_assert_eq!(router::base64_decode(&base64_encode(&bytes, true)), Some(bytes.clone()));
        prop_assert_eq!(router::base64_decode(&base64_encode(&bytes, false)), Some(bytes));
        let _ = router::base64_decode(&junk);
    }

    #[test]
    fn resource_names_are_well_formed(
        path in target_text(),
        upload_id in prop::option::of(word()),
        body in prop_oneof![
            2 => any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            2 => prop::collection::vec(select(TARGET_PIECES), 0..12)
                .prop_map(|p| serde_json::to_vec(&json!({"contents": [{"parts": [{"fileData": {"fileUri": p.concat()}}]}], "cachedContent": p.concat()})).unwrap()),
            1 => prop::collection::vec(any::<u8>(), 0..128),
            1 => mutated(&[GEMINI_RESPONSE_1, CHAT_2]),
        ],
    ) {
        let names = resources::referenced(&path, upload_id.as_deref(), &body);
        let mut seen = HashSet::new();
        for (i, n) in names.iter().enumerate() {
            prop_assert!(seen.insert(n.clone()), "duplicate {n}");
            if i == 0 && let Some(id) = &upload_id {
                prop_assert_eq!(n, &resources::upload_name(id));
                continue;
            }
            prop_assert!(well_formed(n), "bad name {n:?}");
        }
        for c in resources::created(&path, &body) {
            prop_assert!(well_formed(&c.name), "bad created name {:?}", c.name);
        }
    }
}

/// `collection/id` (ids of letters, digits, `-`, `_` for named collections; any non-blank text
/// for the Interactions family's opaque ids) or `continuation:token`.
fn well_formed(name: &str) -> bool {
    let named = [
        "files/",
        "cachedContents/",
        "batches/",
        "fileSearchStores/",
        "tunedModels/",
        "auth_tokens/",
        "interactions/",
    ];
    let opaque = [
        "interactions/",
        "agents/",
        "triggers/",
        "environments/",
        "credentials/",
        "webhooks/",
        "voices/",
        "continuation:",
    ];
    let id_ok =
        |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    named.iter().any(|p| name.strip_prefix(p).is_some_and(id_ok))
        || opaque.iter().any(|p| {
            name.strip_prefix(p).is_some_and(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        })
}

// ---------------------------------------------------------------------------------------------
// Corpus sanity: the seeds are what they claim to be (so mutations start from meaningful input)
// ---------------------------------------------------------------------------------------------

#[test]
fn corpus_seeds_are_valid() {
    for seed in [CHAT_1, CHAT_2] {
        let v: Value = serde_json::from_slice(seed).unwrap();
        let call = openai::chat_request_to_gemini(&v).unwrap_or_else(|e| panic!("{e}"));
        assert!(call.body.get("tools").is_some() || call.body.get("generationConfig").is_some());
    }
    let v: Value = serde_json::from_slice(EMBEDDINGS_1).unwrap();
    assert_eq!(openai::embeddings_request_to_gemini(&v).unwrap().count, 2);
    assert_eq!(quota::classify(429, ERROR_429_PER_DAY), Outcome::QuotaPerDay);
    assert_eq!(
        quota::classify(429, ERROR_429_PER_MINUTE),
        Outcome::QuotaPerMinute { retry: Duration::from_millis(26_500) }
    );
    assert_eq!(
        quota::classify(403, ERROR_403_KEY),
        Outcome::KeyInvalid { reason: "CONSUMER_SUSPENDED".into() }
    );
    for (seed, n) in [(SSE_1, 2), (SSE_2_CRLF, 3), (JSON_ARRAY_1, 2)] {
        let payloads = sse::Framer::default().feed(seed);
        assert_eq!(payloads.len(), n, "{}", String::from_utf8_lossy(seed));
    }
    let mut scanner = usage::StreamUsage::default();
    scanner.feed(SSE_2_CRLF);
    assert_eq!(scanner.tokens(), Some(42));
    let keys = keyfile::parse(KEYS_TXT);
    assert_eq!(keys.keys.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Regressions: minimal reproducers of bugs found by this suite. Each passes once its bug is fixed.
// ---------------------------------------------------------------------------------------------

/// Runs `work` on another thread and fails if it has not finished within `limit`. (A thread that
/// overruns is left to finish in the background: Rust cannot cancel it.)
fn within(limit: Duration, what: &str, work: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        work();
        let _ = tx.send(());
    });
    match rx.recv_timeout(limit) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what}: not done after {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}

/// sse.rs: when an event grows past the limit exactly at the first byte of its closing blank
/// line, the skipper never sees a whole `\n\n` (resp. `\r\n\r\n`) and swallows the next,
/// well-sized event too.
#[test]
fn regression_framer_oversized_event_swallows_the_next_event() {
    let mut f = sse::Framer::new(16);
    // "data: 0123456789" is 16 bytes: the limit is passed by the first '\n' of its blank line.
    let got = f.feed(b"data: 0123456789\n\ndata: ok\n\n");
    assert_eq!(got, vec![b"ok".to_vec()]);
    let mut f = sse::Framer::new(16);
    let got = f.feed(b"data: 0123456789\r\n\r\ndata: ok\r\n\r\n");
    assert_eq!(got, vec![b"ok".to_vec()]);
}

/// sse.rs `feed_array`: the size check comes after the closing bracket has already emitted the
/// element, so an element of exactly `max_event + 1` bytes is delivered although "an event larger
/// than the limit is dropped" (low severity: one byte over the limit).
#[test]
fn regression_framer_json_array_element_one_past_the_limit_is_dropped() {
    let mut f = sse::Framer::new(4);
    let got = f.feed(b"[{\"a\"},{}]");
    assert_eq!(got, vec![b"{}".to_vec()], "the 5-byte element must be dropped with a limit of 4");
    assert_eq!(f.oversized, 1);
}

/// keyfile.rs: a line that starts with a byte-order mark and then blanks before a `#` comment
/// (`"\u{feff} # my keys"`, as a BOM-writing editor saves an indented first comment) yields the
/// key `"#"`: the BOM is stripped after `trim()`, so the blanks behind it stay.
#[test]
fn regression_keyfile_bom_then_blank_then_comment_is_a_comment() {
    let parsed = keyfile::parse("\u{feff} # my keys\nAIzaSyA1\n");
    let keys: Vec<&str> = parsed.keys.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, vec!["AIzaSyA1"]);
}

/// affinity.rs (now resources.rs) `resources_in`: each step searches the rest of the string for both needles again,
/// so a string of many `cachedContents/` (or `files/`) repetitions costs O(n²); a request body
/// (up to MAX_BODY_BYTES, 32 MiB by default) made of one such string pins a worker for hours.
/// 512 KiB take ~3 s in a debug build now; a linear scan takes milliseconds.
#[test]
fn regression_affinity_referenced_is_not_quadratic() {
    let body = serde_json::to_vec(&json!({ "cachedContent": "cachedContents/".repeat(35_000) })).unwrap();
    within(Duration::from_secs(1), "resources::referenced on a 512 KiB body", move || {
        let names = resources::referenced("/v1beta/models/m:generateContent", None, &body);
        assert_eq!(names, vec!["cachedContents/cachedContents".to_string()]);
    });
}

/// openai/schema.rs `merge_required`: `required` names are merged with `Vec::contains`, O(n²) in
/// their number once the schema already has a `required` (from a single `anyOf` branch or an
/// `allOf`). 30 000 names (~250 KiB) take ~5 s in a debug build; a 32 MiB body has millions.
#[test]
fn regression_schema_required_merge_is_not_quadratic() {
    let names: Vec<String> = (0..30_000).map(|i| format!("n{i}")).collect();
    let params =
        json!({"type": "object", "anyOf": [{"properties": {"a": {}}, "required": ["a"]}], "required": names});
    let req = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}],
                     "tools": [{"type": "function", "function": {"name": "f", "parameters": params}}]});
    within(Duration::from_secs(1), "clean_schema with 30 000 required names", move || {
        let _ = openai::chat_request_to_gemini(&req);
    });
}

/// openai/schema.rs: `MAX_SCHEMA_NODES` bounds the number of nodes after `$ref` inlining but not
/// their size: every inlined copy clones `default`/`example`/`enum`/`description`. A 17 KiB
/// request with an 11-level `$ref` fan-out over a 16 KiB `default` becomes a 33 MB Gemini body
/// (2000x); with a multi-megabyte `default` (the body limit is 32 MiB) it is gigabytes.
#[test]
fn regression_schema_ref_inlining_output_is_bounded() {
    let mut defs = Map::new();
    defs.insert("L0".into(), json!({"type": "string", "default": "x".repeat(16 * 1024)}));
    for i in 1..=11 {
        let r = format!("#/$defs/L{}", i - 1);
        defs.insert(
            format!("L{i}"),
            json!({"type": "object", "properties": {"a": {"$ref": r}, "b": {"$ref": r}}}),
        );
    }
    let req = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "r",
            "schema": {"$defs": defs, "$ref": "#/$defs/L11"}}}});
    let input = serde_json::to_vec(&req).unwrap().len();
    if let Ok(call) = openai::chat_request_to_gemini(&req) {
        let output = serde_json::to_vec(&call.body).unwrap().len();
        assert!(output <= 64 * input.max(64 * 1024), "{input} bytes in, {output} bytes out");
    }
}

// ---- redact.rs: the streaming redactor -----------------------------------------------------------

/// Pool keys of real shape, and a token, for the redactor properties.
const REDACT_SECRETS: [&str; 4] = [
    "AIzaSyFUZZKEY00000000000000000000000000A",
    "AIzaSyFUZZKEY00000000000000000000000000B",
    "AIzaSyFUZZKEY0000000000000000000000",
    "fuzz-client-token",
];

fn redactor_for_fuzz() -> gemini_key_manager::redact::Redactor {
    let pairs: Vec<(String, String)> =
        REDACT_SECRETS.iter().map(|s| (s.to_string(), gemini_key_manager::keyfile::mask(s))).collect();
    gemini_key_manager::redact::Redactor::new(&pairs)
}

/// Text made of words, pieces of keys and whole keys, so that near-misses and neighbours abound.
fn secretive_text() -> BoxedStrategy<Vec<u8>> {
    let piece = prop_oneof![
        3 => select(REDACT_SECRETS.to_vec()).prop_map(|s| s.as_bytes().to_vec()),
        2 => (select(REDACT_SECRETS.to_vec()), 1usize..40).prop_map(|(s, n)| s.as_bytes()[..n.min(s.len())].to_vec()),
        2 => select(vec!["data: {\"error\": \"", "\"}\r\n\r\n", " ", "api_key:", "AIza", "A", "'"])
            .prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|ps| ps.concat()).boxed()
}

proptest! {
    #![proptest_config(config(1024))]

    /// Whatever the chunk boundaries, the streamed output is the whole text redacted at once, and
    /// no secret of the pool is left in it.
    #[test]
    fn the_streaming_redactor_lets_no_key_through_whatever_the_chunk_boundaries(
        text in secretive_text(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let r = redactor_for_fuzz();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
        cuts.sort_unstable();
        let mut s = gemini_key_manager::redact::StreamRedactor::default();
        let mut out = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain(std::iter::once(text.len())) {
            out.extend_from_slice(&s.feed(&r, &text[from..c]));
            from = c;
        }
        out.extend(s.finish(&r));
        let whole = r.bytes(&text).into_owned();
        prop_assert_eq!(&out, &whole);
        for secret in REDACT_SECRETS {
            prop_assert!(!out.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} left in", secret);
        }
    }
}
