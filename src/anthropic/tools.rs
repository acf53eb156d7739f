//! Anthropic `tools` and `tool_choice` -> Gemini `tools` (`functionDeclarations`, `googleSearch`)
//! and `toolConfig.functionCallingConfig`.
//!
//! Custom tools (no `type`, or `type: "custom"`) become function declarations, their
//! `input_schema` cleaned by `crate::openai::schema::clean_schema` (which drops `$schema`,
//! `additionalProperties` and every keyword Gemini refuses). Anthropic's web search server tools
//! (`web_search_*`) become `googleSearch`; every other server or Anthropic-defined tool (`bash_*`,
//! `text_editor_*`, `code_execution_*`, `web_fetch_*`, `computer_*`, `memory_*`, tool search ...)
//! is dropped. Tool fields Gemini has no use for (`cache_control`, `defer_loading`, `strict`,
//! `input_examples` ...) are dropped.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness.

use serde_json::{Value, json};

use crate::openai::TranslateError;
use crate::openai::fields::{Obj, as_object, bad, field, opt_object, opt_str, req_str};

/// Gemini `tools` (absent when nothing translatable was declared) and whether it declares functions.
pub(super) fn gemini_tools(obj: &Obj) -> Result<(Option<Value>, bool), TranslateError> {
    let tools = match field(obj, "tools") {
        None => return Ok((None, false)),
        Some(Value::Array(list)) => list,
        Some(v) => return Err(TranslateError::wrong_type("tools", "an array", v)),
    };
    let mut declarations = Vec::with_capacity(tools.len());
    let mut search = false;
    for (k, tool) in tools.iter().enumerate() {
        let tp = format!("tools[{k}]");
        let to = as_object(tool, &tp)?;
        match opt_str(to, "type", &format!("{tp}.type"))? {
            None | Some("custom") => declarations.push(declaration(to, &tp)?),
            Some(kind) if kind.starts_with("web_search") => search = true,
            Some(_) => {}
        }
    }
    let has_functions = !declarations.is_empty();
    let mut out = Vec::new();
    if has_functions {
        out.push(json!({ "functionDeclarations": declarations }));
    }
    if search {
        out.push(json!({ "googleSearch": {} }));
    }
    Ok(((!out.is_empty()).then_some(Value::Array(out)), has_functions))
}

fn declaration(to: &Obj, tp: &str) -> Result<Value, TranslateError> {
    crate::openai::tools::function_declaration(to, tp, "input_schema")
}

/// `tool_choice` -> `toolConfig` (only when functions are declared; always type-checked).
/// `disable_parallel_tool_use` has no Gemini counterpart and is dropped.
pub(super) fn tool_config(obj: &Obj, has_functions: bool) -> Result<Option<Value>, TranslateError> {
    let Some(choice) = opt_object(obj, "tool_choice", "tool_choice")? else {
        return Ok(None);
    };
    let config = match req_str(choice, "type", "tool_choice.type")? {
        "auto" => json!({"mode": "AUTO"}),
        "any" => json!({"mode": "ANY"}),
        "none" => json!({"mode": "NONE"}),
        "tool" => {
            let name = req_str(choice, "name", "tool_choice.name")?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        other => {
            return Err(bad(
                format!(
                    "Invalid value for 'tool_choice.type': '{other}'. Supported values are: 'auto', 'any', 'tool' and 'none'."
                ),
                "tool_choice.type",
            ));
        }
    };
    Ok(has_functions.then(|| json!({ "functionCallingConfig": config })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::request::tests::{err, ok, req};
    use super::*;

    #[test]
    fn custom_tools_become_function_declarations() {
        let call = ok(req(json!({"tools": [
            {"name": "get_weather", "description": "Weather", "cache_control": {"type": "ephemeral"},
             "input_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
                              "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}},
            {"type": "custom", "name": "now", "defer_loading": true, "input_schema": {"type": "object", "properties": {}}},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}
        ]})));
        assert_eq!(
            call.body["tools"],
            json!([{"functionDeclarations": [
                {"name": "get_weather", "description": "Weather",
                 "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]}},
                {"name": "now"}
            ]}, {"googleSearch": {}}])
        );
    }

    #[test]
    fn only_server_tools() {
        let call = ok(req(json!({"tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any"}})));
        assert_eq!(call.body["tools"], json!([{"googleSearch": {}}]));
        assert!(call.body.get("toolConfig").is_none(), "no functions: nothing to steer");
        let call = ok(req(json!({"tools": [{"type": "code_execution_20250825", "name": "code_execution"}]})));
        assert!(call.body.get("tools").is_none());
    }

    #[test]
    fn tool_choice_modes() {
        let tools = json!([{"name": "f", "input_schema": {"type": "object", "properties": {"a": {"type": "integer"}}}}]);
        for (choice, config) in [
            (json!({"type": "auto", "disable_parallel_tool_use": true}), json!({"mode": "AUTO"})),
            (json!({"type": "any"}), json!({"mode": "ANY"})),
            (json!({"type": "none"}), json!({"mode": "NONE"})),
            (json!({"type": "tool", "name": "f"}), json!({"mode": "ANY", "allowedFunctionNames": ["f"]})),
        ] {
            let call = ok(req(json!({"tools": tools, "tool_choice": choice})));
            assert_eq!(call.body["toolConfig"], json!({"functionCallingConfig": config}));
        }
        err(req(json!({"tools": tools, "tool_choice": {"type": "always"}})), "tool_choice.type");
        err(req(json!({"tools": tools, "tool_choice": {"type": "tool"}})), "tool_choice.name");
        err(req(json!({"tools": tools, "tool_choice": "auto"})), "tool_choice");
    }

    #[test]
    fn malformed_tools() {
        err(req(json!({"tools": {"name": "f"}})), "tools");
        err(req(json!({"tools": [5]})), "tools[0]");
        err(req(json!({"tools": [{"description": "no name"}]})), "tools[0].name");
        err(req(json!({"tools": [{"name": "f", "input_schema": "object"}]})), "tools[0].input_schema");
        err(req(json!({"tools": [{"name": "f", "type": 3}]})), "tools[0].type");
    }
}
