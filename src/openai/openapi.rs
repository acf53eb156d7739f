//! A small validator of values against OpenAI's published OpenAPI schemas (extracts of OpenAI's
//! openapi.json kept verbatim under `tests/fixtures/openai/`), used by the unit tests, the
//! integration tests and nothing else: the document is passed in, never read here.
//!
//! Understands exactly what those schemas use: `required`, `type` (string or list), `enum`,
//! `items`, `properties`, `additionalProperties` (false or a schema), `$ref` to
//! `#/components/schemas/*`, `allOf` (every branch), `anyOf` / `oneOf` (any branch passes),
//! OpenAPI 3.0's `nullable: true`; `$recursiveRef` (only in filter schemas no answer carries) is
//! accepted as anything. Never does I/O; recursion follows the schema, whose depth is bounded by
//! the value's.

use serde_json::Value;

/// Errors of `value` against `components.schemas[name]` of `doc`; empty when it conforms.
/// Panics when `doc` has no schema of that name (a test's mistake).
pub fn validate(doc: &Value, name: &str, value: &Value) -> Vec<String> {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema named {name}");
    let mut errors = Vec::new();
    check(doc, schema, value, "$", &mut errors);
    errors
}

/// The schema name of a stream event, from the document's `event_types` map (Responses subset).
pub fn event_schema<'a>(doc: &'a Value, event: &Value) -> Option<&'a str> {
    doc["event_types"].get(event.get("type")?.as_str()?)?.as_str()
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let name = reference
        .strip_prefix("#/components/schemas/")
        .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
    let target = &doc["components"]["schemas"][name];
    assert!(target.is_object(), "dangling $ref {reference}");
    target
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        other => panic!("unsupported type {other}"),
    }
}

fn check(doc: &Value, schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) && value.is_null() {
        return;
    }
    if schema.get("$recursiveRef").is_some() {
        return;
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        check(doc, resolve(doc, r), value, path, errors);
    }
    if let Some(branches) = schema.get("allOf").and_then(Value::as_array) {
        for b in branches {
            check(doc, b, value, path, errors);
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(key).and_then(Value::as_array) {
            let mut best: Option<Vec<String>> = None;
            for b in branches {
                let mut sub = Vec::new();
                check(doc, b, value, path, &mut sub);
                if sub.is_empty() {
                    best = None;
                    break;
                }
                if best.as_ref().is_none_or(|e| sub.len() < e.len()) {
                    best = Some(sub);
                }
            }
            if let Some(closest) = best {
                errors.push(format!("{path}: matches no branch of {key}; closest: {closest:?}"));
            }
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            errors.push(format!("{path}: expected {t}, got {value}"));
            return;
        }
        Some(Value::Array(ts)) if !ts.iter().filter_map(Value::as_str).any(|t| type_matches(t, value)) => {
            errors.push(format!("{path}: expected one of {ts:?}, got {value}"));
            return;
        }
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array).filter(|a| !a.contains(value)) {
        errors.push(format!("{path}: {value} not in enum {allowed:?}"));
    }
    if let Value::Object(map) = value {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for r in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(r) {
                    errors.push(format!("{path}: missing required property '{r}'"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in map {
            match (props.and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                (Some(sub), _) => check(doc, sub, v, &format!("{path}.{k}"), errors),
                (None, Some(Value::Bool(false))) => errors.push(format!("{path}: unexpected property '{k}'")),
                (None, Some(extra @ Value::Object(_))) => {
                    check(doc, extra, v, &format!("{path}.{k}"), errors)
                }
                _ => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}
