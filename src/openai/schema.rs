//! JSON Schema (as OpenAI clients write it) -> Gemini `Schema` (the OpenAPI 3.0 subset that
//! `responseSchema` and `functionDeclarations[].parameters` accept).
//!
//! Owns: keeping only the keys Gemini's `Schema` knows, inlining local `$ref`s (`$defs`,
//! `definitions`, any `#/...` pointer), turning `type: [X, "null"]`, `anyOf`/`oneOf` null branches and
//! null enum members into `nullable: true`, `const` into a one-value `enum`, merging `allOf`, and
//! upper-casing type names.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness. Never recurses without bound:
//! nesting (including `$ref` expansion) is limited to `MAX_SCHEMA_DEPTH` levels and the output to
//! `MAX_SCHEMA_NODES` schema nodes (a `$ref` fan-out could otherwise grow exponentially); past
//! either limit the request is refused with a 400.

use serde_json::{Map, Value};

use super::types::TranslateError;

/// Deepest nesting of schema nodes accepted (each `properties` entry, `items`, `anyOf` branch and
/// `$ref` hop is one level).
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// Most schema nodes one cleaned schema may contain after `$ref` inlining.
pub const MAX_SCHEMA_NODES: usize = 10_000;

/// The cleaned schema may hold at most this many times the bytes of the input (copied strings
/// and values counted), and at least `MIN_OUTPUT_BUDGET`: a `$ref` fan-out over a large `default`
/// could otherwise turn kilobytes into gigabytes well within the node limit.
pub const MAX_EXPANSION: usize = 64;
const MIN_OUTPUT_BUDGET: usize = 64 * 1024;

/// Cleans `schema` for Gemini. `param` names the field in errors (e.g. `tools[0].function.parameters`).
pub fn clean_schema(schema: &Value, param: &str) -> Result<Value, TranslateError> {
    let budget = value_size(schema).saturating_mul(MAX_EXPANSION).max(MIN_OUTPUT_BUDGET);
    let mut cleaner = Cleaner { root: schema, param, nodes: 0, bytes: 0, budget };
    cleaner.clean(schema, 0).map(Value::Object)
}

/// Approximate serialized size of a value, without recursion.
fn value_size(v: &Value) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Value::Null | Value::Bool(_) => 5,
            Value::Number(_) => 8,
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Object(o) => {
                for (k, x) in o {
                    total = total.saturating_add(k.len() + 4);
                    stack.push(x);
                }
                2
            }
        });
    }
    total
}

struct Cleaner<'a> {
    root: &'a Value,
    param: &'a str,
    nodes: usize,
    /// Bytes copied into the output so far, and the most allowed.
    bytes: usize,
    budget: usize,
}

/// Gemini-supported `format` values per (upper-cased) type.
fn format_allowed(ty: Option<&str>, format: &str) -> bool {
    matches!(
        (ty, format),
        (Some("STRING"), "enum" | "date-time")
            | (Some("NUMBER"), "float" | "double")
            | (Some("INTEGER"), "int32" | "int64")
    )
}

/// A cleaned branch that only said "null" (`{"type":"null"}` becomes `{"nullable":true}`).
fn is_null_only(m: &Map<String, Value>) -> bool {
    m.len() == 1 && m.get("nullable") == Some(&Value::Bool(true))
}

impl<'a> Cleaner<'a> {
    fn err(&self, what: &str) -> TranslateError {
        TranslateError::bad_request(
            format!("Invalid JSON schema in '{}': {what}", self.param),
            Some(self.param),
        )
    }

    /// Count `n` bytes copied into the output; refuse the schema past the budget.
    fn charge(&mut self, n: usize) -> Result<(), TranslateError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.budget {
            return Err(self.err(&format!(
                "expands to more than {} bytes after $ref inlining ({MAX_EXPANSION} times its own size)",
                self.budget
            )));
        }
        Ok(())
    }

    fn clean(&mut self, node: &Value, depth: usize) -> Result<Map<String, Value>, TranslateError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(self.err(&format!(
                "nested more than {MAX_SCHEMA_DEPTH} levels deep (a recursive $ref cannot be inlined for Gemini)"
            )));
        }
        self.nodes += 1;
        if self.nodes > MAX_SCHEMA_NODES {
            return Err(self
                .err(&format!("expands to more than {MAX_SCHEMA_NODES} schema nodes after $ref inlining")));
        }
        let obj = match node {
            Value::Object(obj) => obj,
            Value::Bool(true) => return Ok(Map::new()),
            _ => return Err(self.err("every schema must be an object")),
        };
        let Some(reference) = obj.get("$ref") else {
            return self.clean_keys(obj, depth);
        };
        let Some(target) = reference.as_str().and_then(|r| self.resolve(r)) else {
            return Err(self.err(&format!(
                "$ref {reference} cannot be resolved (only local references like \"#/$defs/Name\" are supported)"
            )));
        };
        let mut out = self.clean(target, depth + 1)?;
        // Keys beside the $ref (description, nullable ...) refine the referenced schema.
        for (k, v) in self.clean_keys(obj, depth)? {
            out.insert(k, v);
        }
        Ok(out)
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let root: &'a Value = self.root;
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() { Some(root) } else { root.pointer(pointer) }
    }

    fn clean_list(
        &mut self,
        list: &Value,
        key: &str,
        depth: usize,
    ) -> Result<Vec<Map<String, Value>>, TranslateError> {
        let Some(items) = list.as_array() else {
            return Err(self.err(&format!("'{key}' must be an array of schemas")));
        };
        items.iter().map(|b| self.clean(b, depth + 1)).collect()
    }

    fn clean_keys(
        &mut self,
        obj: &Map<String, Value>,
        depth: usize,
    ) -> Result<Map<String, Value>, TranslateError> {
        let mut out = Map::new();
        let mut nullable = obj.get("nullable") == Some(&Value::Bool(true));

        match obj.get("type") {
            None => {}
            Some(Value::String(t)) if t == "null" => nullable = true,
            Some(Value::String(t)) => {
                out.insert("type".into(), Value::String(t.to_ascii_uppercase()));
            }
            Some(Value::Array(types)) => {
                let mut named = Vec::new();
                for t in types {
                    match t.as_str() {
                        Some("null") => nullable = true,
                        Some(t) => named.push(t.to_ascii_uppercase()),
                        None => return Err(self.err("'type' lists must hold strings")),
                    }
                }
                match named.len() {
                    0 => {}
                    1 => {
                        out.insert("type".into(), Value::String(named.remove(0)));
                    }
                    _ => {
                        let branches = named.into_iter().map(|t| serde_json::json!({ "type": t })).collect();
                        out.insert("anyOf".into(), Value::Array(branches));
                    }
                }
            }
            Some(_) => return Err(self.err("'type' must be a string or an array of strings")),
        }

        // anyOf / oneOf: Gemini knows only anyOf; null branches become `nullable`.
        let mut branches = Vec::new();
        for key in ["anyOf", "oneOf"] {
            if let Some(list) = obj.get(key) {
                branches.extend(self.clean_list(list, key, depth)?);
            }
        }
        let before = branches.len();
        branches.retain(|b| !is_null_only(b));
        if branches.len() < before {
            nullable = true;
        }
        if branches.len() == 1 {
            for (k, v) in branches.remove(0) {
                out.entry(k).or_insert(v);
            }
        } else if !branches.is_empty() {
            out.insert("anyOf".into(), Value::Array(branches.into_iter().map(Value::Object).collect()));
        }

        if let Some(list) = obj.get("allOf") {
            for branch in self.clean_list(list, "allOf", depth)? {
                merge_all_of(&mut out, branch);
            }
        }

        if let Some(props) = obj.get("properties") {
            let Some(props) = props.as_object() else {
                return Err(self.err("'properties' must be an object"));
            };
            let mut cleaned = Map::new();
            for (name, sub) in props {
                self.charge(name.len() + 4)?;
                cleaned.insert(name.clone(), Value::Object(self.clean(sub, depth + 1)?));
            }
            merge_properties(&mut out, cleaned);
        }

        match obj.get("items") {
            None => {}
            Some(items @ (Value::Object(_) | Value::Bool(true))) => {
                out.insert("items".into(), Value::Object(self.clean(items, depth + 1)?));
            }
            Some(list @ Value::Array(_)) => {
                let mut tuple = self.clean_list(list, "items", depth)?;
                let items = match tuple.len() {
                    0 => Map::new(),
                    1 => tuple.remove(0),
                    _ => {
                        let mut m = Map::new();
                        m.insert(
                            "anyOf".into(),
                            Value::Array(tuple.into_iter().map(Value::Object).collect()),
                        );
                        m
                    }
                };
                out.insert("items".into(), Value::Object(items));
            }
            Some(_) => return Err(self.err("'items' must be a schema")),
        }

        if let Some(Value::Array(required)) = obj.get("required") {
            let names: Vec<Value> = required.iter().filter(|r| r.is_string()).cloned().collect();
            self.charge(names.iter().map(value_size).sum())?;
            merge_required(&mut out, names);
        }

        // Enumerations: Gemini accepts string enums only.
        let mut enum_values: Option<Vec<Value>> = None;
        if let Some(c) = obj.get("const") {
            match c {
                Value::String(_) => enum_values = Some(vec![c.clone()]),
                Value::Null => nullable = true,
                _ => {} // a non-string const has no Gemini form: the type alone is kept
            }
        }
        if let Some(Value::Array(list)) = obj.get("enum") {
            if list.iter().any(Value::is_null) {
                nullable = true;
            }
            let non_null: Vec<&Value> = list.iter().filter(|v| !v.is_null()).collect();
            if !non_null.is_empty() && non_null.iter().all(|v| v.is_string()) {
                enum_values = Some(non_null.into_iter().cloned().collect());
            }
        }
        if let Some(values) = enum_values {
            self.charge(values.iter().map(value_size).sum())?;
            out.entry("type").or_insert_with(|| Value::String("STRING".into()));
            out.insert("enum".into(), Value::Array(values));
        }

        for key in ["description", "title", "pattern"] {
            if let Some(v @ Value::String(_)) = obj.get(key) {
                self.charge(value_size(v))?;
                out.insert(key.into(), v.clone());
            }
        }
        for key in ["minimum", "maximum"] {
            if let Some(v @ Value::Number(_)) = obj.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        for key in ["minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"] {
            if let Some(v) = obj.get(key).filter(|v| v.is_u64()) {
                out.insert(key.into(), v.clone());
            }
        }
        if let Some(v) = obj.get("default") {
            self.charge(value_size(v))?;
            out.insert("default".into(), v.clone());
        }
        match (obj.get("example"), obj.get("examples")) {
            (Some(v), _) => {
                self.charge(value_size(v))?;
                out.insert("example".into(), v.clone());
            }
            (None, Some(Value::Array(list))) if !list.is_empty() => {
                self.charge(value_size(&list[0]))?;
                out.insert("example".into(), list[0].clone());
            }
            _ => {}
        }
        let ordering = obj.get("propertyOrdering").and_then(Value::as_array);
        if let Some(order) = ordering.filter(|o| o.iter().all(Value::is_string)) {
            self.charge(value_size(&Value::Array(Vec::new())) + order.iter().map(value_size).sum::<usize>())?;
            out.insert("propertyOrdering".into(), Value::Array(order.clone()));
        }
        if let Some(Value::String(format)) = obj.get("format") {
            let ty = out.get("type").and_then(Value::as_str);
            if format_allowed(ty, format) {
                out.insert("format".into(), Value::String(format.clone()));
            }
        }

        // `required` may only name declared properties.
        if let (Some(Value::Array(required)), Some(Value::Object(props))) =
            (out.get("required"), out.get("properties"))
        {
            let kept: Vec<Value> = required
                .iter()
                .filter(|r| r.as_str().is_some_and(|n| props.contains_key(n)))
                .cloned()
                .collect();
            out.insert("required".into(), Value::Array(kept));
        } else if out.get("properties").is_none() {
            out.remove("required");
        }

        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        Ok(out)
    }
}

fn merge_properties(out: &mut Map<String, Value>, props: Map<String, Value>) {
    match out.get_mut("properties") {
        Some(Value::Object(existing)) => existing.extend(props),
        _ => {
            out.insert("properties".into(), Value::Object(props));
        }
    }
}

fn merge_required(out: &mut Map<String, Value>, names: Vec<Value>) {
    match out.get_mut("required") {
        Some(Value::Array(existing)) => {
            // A set, not `existing.contains`: thousands of names must not cost millions of compares.
            let mut seen: std::collections::HashSet<Value> = existing.iter().cloned().collect();
            for n in names {
                if seen.insert(n.clone()) {
                    existing.push(n);
                }
            }
        }
        _ => {
            out.insert("required".into(), Value::Array(names));
        }
    }
}

fn merge_all_of(out: &mut Map<String, Value>, mut branch: Map<String, Value>) {
    if let Some(Value::Object(props)) = branch.remove("properties") {
        merge_properties(out, props);
    }
    if let Some(Value::Array(names)) = branch.remove("required") {
        merge_required(out, names);
    }
    for (k, v) in branch {
        out.entry(k).or_insert(v);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn clean(v: Value) -> Value {
        clean_schema(&v, "p").unwrap()
    }

    #[test]
    fn drops_unknown_keys_and_uppercases_types() {
        let out = clean(json!({
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "title": "T",
            "additionalProperties": false, "strict": true,
            "properties": {"a": {"type": "string", "format": "email", "description": "d", "minLength": 1},
                           "b": {"type": "integer", "format": "int64", "exclusiveMinimum": 0},
                           "c": {"type": "string", "format": "date-time"}},
            "required": ["a", "zzz"]
        }));
        assert_eq!(
            out,
            json!({"type": "OBJECT", "title": "T",
                "properties": {"a": {"type": "STRING", "description": "d", "minLength": 1},
                               "b": {"type": "INTEGER", "format": "int64"},
                               "c": {"type": "STRING", "format": "date-time"}},
                "required": ["a"]})
        );
    }

    #[test]
    fn nullable_forms() {
        assert_eq!(clean(json!({"type": ["string", "null"]})), json!({"type": "STRING", "nullable": true}));
        assert_eq!(
            clean(json!({"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "n"})),
            json!({"type": "INTEGER", "description": "n", "nullable": true})
        );
        assert_eq!(
            clean(json!({"enum": ["a", "b", null]})),
            json!({"type": "STRING", "enum": ["a", "b"], "nullable": true})
        );
        assert_eq!(
            clean(json!({"oneOf": [{"type": "string"}, {"type": "number"}]})),
            json!({"anyOf": [{"type": "STRING"}, {"type": "NUMBER"}]})
        );
        assert_eq!(
            clean(json!({"type": ["string", "integer", "null"]})),
            json!({"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": true})
        );
    }

    #[test]
    fn const_and_non_string_enums() {
        assert_eq!(clean(json!({"const": "x"})), json!({"type": "STRING", "enum": ["x"]}));
        assert_eq!(clean(json!({"type": "integer", "enum": [1, 2]})), json!({"type": "INTEGER"}));
        assert_eq!(clean(json!({"type": "integer", "const": 3})), json!({"type": "INTEGER"}));
    }

    #[test]
    fn inlines_defs_and_definitions_with_sibling_keys() {
        let out = clean(json!({
            "type": "object",
            "$defs": {"Step": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}},
            "definitions": {"Kind": {"type": "string", "enum": ["a", "b"]}},
            "properties": {
                "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
                "kind": {"$ref": "#/definitions/Kind", "description": "which"}
            }
        }));
        assert_eq!(
            out,
            json!({"type": "OBJECT", "properties": {
                "steps": {"type": "ARRAY", "items": {"type": "OBJECT", "properties": {"x": {"type": "STRING"}}, "required": ["x"]}},
                "kind": {"type": "STRING", "enum": ["a", "b"], "description": "which"}
            }})
        );
    }

    #[test]
    fn all_of_is_merged() {
        let out = clean(json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
        ]}));
        assert_eq!(
            out,
            json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "BOOLEAN"}}, "required": ["a", "b"]})
        );
    }

    #[test]
    fn recursive_ref_is_refused_with_400() {
        let schema = json!({"$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
                            "$ref": "#/$defs/Node"});
        let e = clean_schema(&schema, "response_format.json_schema.schema").unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.param.as_deref(), Some("response_format.json_schema.schema"));
        assert!(e.message.contains("recursive $ref"), "{}", e.message);
    }

    #[test]
    fn exponential_ref_fan_out_is_refused() {
        // Each level references the next twice: 2^30 nodes if inlined naively.
        let mut defs = Map::new();
        for i in 0..30 {
            let next = format!("#/$defs/D{}", i + 1);
            defs.insert(
                format!("D{i}"),
                json!({"type": "object", "properties": {"l": {"$ref": next}, "r": {"$ref": next}}}),
            );
        }
        defs.insert("D30".into(), json!({"type": "string"}));
        let schema = json!({"$defs": defs, "$ref": "#/$defs/D0"});
        let e = clean_schema(&schema, "p").unwrap_err();
        assert!(e.message.contains("schema nodes"), "{}", e.message);
    }

    #[test]
    fn very_deep_schema_is_refused_without_stack_overflow() {
        // 300 levels: past both our limit (64) and serde_json's parser limit (128). Much deeper
        // objects cannot even be dropped by serde_json on a test thread's stack.
        let mut v = json!({"type": "string"});
        for _ in 0..300 {
            v = json!({"type": "object", "properties": {"x": v}});
        }
        let e = clean_schema(&v, "tools[0].function.parameters").unwrap_err();
        assert!(e.message.contains("64 levels"), "{}", e.message);
    }

    #[test]
    fn unresolvable_and_malformed() {
        assert!(clean_schema(&json!({"$ref": "https://example.com/s.json"}), "p").is_err());
        assert!(clean_schema(&json!({"$ref": "#/$defs/Missing"}), "p").is_err());
        assert!(clean_schema(&json!("string"), "p").is_err());
        assert!(clean_schema(&json!({"properties": []}), "p").is_err());
        assert!(clean_schema(&json!({"type": 5}), "p").is_err());
    }
}
