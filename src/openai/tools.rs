//! OpenAI `tools` and `tool_choice` -> Gemini `tools[].functionDeclarations` and
//! `toolConfig.functionCallingConfig`.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness. Parameter schemas go through
//! the depth-limited schema cleaner.

use serde_json::{Map, Value, json};

use super::fields::{Obj, bad, field, opt_object, opt_str, req_str};
use super::schema::clean_schema;
use super::types::TranslateError;

pub(super) fn function_declarations(obj: &Obj) -> Result<Option<Vec<Value>>, TranslateError> {
    let tools = match field(obj, "tools") {
        None => return Ok(None),
        Some(Value::Array(list)) => list,
        Some(v) => return Err(TranslateError::wrong_type("tools", "an array", v)),
    };
    let mut declarations = Vec::with_capacity(tools.len());
    for (k, tool) in tools.iter().enumerate() {
        let tp = format!("tools[{k}]");
        let Some(to) = tool.as_object() else {
            return Err(TranslateError::wrong_type(&tp, "an object", tool));
        };
        let kind = req_str(to, "type", &format!("{tp}.type"))?;
        if kind != "function" {
            return Err(bad(
                format!(
                    "Tool type '{kind}' is not supported: only 'function' tools can be translated for Gemini."
                ),
                &format!("{tp}.type"),
            ));
        }
        let fp = format!("{tp}.function");
        let function = opt_object(to, "function", &fp)?.ok_or_else(|| TranslateError::missing(&fp))?;
        declarations.push(function_declaration(function, &fp, "parameters")?);
    }
    Ok((!declarations.is_empty()).then_some(declarations))
}

/// A Gemini `functionDeclaration` from a tool object at `path` whose JSON schema is its field
/// `schema_key` (OpenAI's `parameters`, Anthropic's `input_schema`), cleaned for Gemini. Shared by
/// the OpenAI and Anthropic cores.
pub(crate) fn function_declaration(to: &Obj, path: &str, schema_key: &str) -> Result<Value, TranslateError> {
    let name = req_str(to, "name", &format!("{path}.name"))?;
    if name.is_empty() {
        return Err(bad(format!("'{path}.name' must not be empty."), &format!("{path}.name")));
    }
    let mut declaration = json!({ "name": name });
    if let Some(description) = opt_str(to, "description", &format!("{path}.description"))? {
        declaration["description"] = Value::String(description.to_owned());
    }
    let sp = format!("{path}.{schema_key}");
    if let Some(schema) = opt_object(to, schema_key, &sp)? {
        let cleaned = clean_schema(&Value::Object(schema.clone()), &sp)?;
        // Gemini rejects an OBJECT schema without properties ("should be non-empty for OBJECT
        // type"): a function without parameters simply declares none.
        let empty_object = cleaned.get("type").and_then(Value::as_str) == Some("OBJECT")
            && cleaned.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty);
        if !empty_object {
            declaration["parameters"] = cleaned;
        }
    }
    Ok(declaration)
}

pub(super) fn tool_config(obj: &Obj) -> Result<Option<Value>, TranslateError> {
    let config = match field(obj, "tool_choice") {
        None => return Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "none" => json!({"mode": "NONE"}),
            "auto" => json!({"mode": "AUTO"}),
            "required" => json!({"mode": "ANY"}),
            other => {
                return Err(bad(
                    format!(
                        "Invalid value for 'tool_choice': '{other}'. Supported values are: 'none', 'auto', 'required' or {{\"type\":\"function\",\"function\":{{\"name\":...}}}}."
                    ),
                    "tool_choice",
                ));
            }
        },
        Some(Value::Object(choice)) => {
            let kind = req_str(choice, "type", "tool_choice.type")?;
            if kind != "function" {
                return Err(bad(
                    format!("Invalid value for 'tool_choice.type': '{kind}'. Only 'function' is supported."),
                    "tool_choice.type",
                ));
            }
            let function = opt_object(choice, "function", "tool_choice.function")?
                .ok_or_else(|| TranslateError::missing("tool_choice.function"))?;
            let name = req_str(function, "name", "tool_choice.function.name")?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        Some(v) => return Err(TranslateError::wrong_type("tool_choice", "a string or an object", v)),
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{chat_err as err, chat_ok as ok, user};

    #[test]
    fn tools_and_tool_choice() {
        let tools = json!([
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "strict": true,
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": false}}},
            {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
        ]);
        let call =
            ok(json!({"model": "m", "messages": [user("x")], "tools": tools, "tool_choice": "required"}));
        assert_eq!(
            call.body["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
                {"name": "now"}
            ]}])
        );
        assert_eq!(call.body["toolConfig"], json!({"functionCallingConfig": {"mode": "ANY"}}));
        for (choice, mode) in [("none", "NONE"), ("auto", "AUTO")] {
            let call =
                ok(json!({"model": "m", "messages": [user("x")], "tools": tools, "tool_choice": choice}));
            assert_eq!(call.body["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
        let call = ok(json!({"model": "m", "messages": [user("x")], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "now"}}}));
        assert_eq!(
            call.body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}})
        );
        err(
            json!({"model": "m", "messages": [user("x")], "tools": tools, "tool_choice": "always"}),
            Some("tool_choice"),
        );
        err(
            json!({"model": "m", "messages": [user("x")], "tools": [{"type": "web_search"}]}),
            Some("tools[0].type"),
        );
        err(json!({"model": "m", "messages": [user("x")], "tools": {"a": 1}}), Some("tools"));
        err(
            json!({"model": "m", "messages": [user("x")], "tools": [{"type": "function", "function": {"description": "x"}}]}),
            Some("tools[0].function.name"),
        );
    }
}
