//! Responses `tools` and `tool_choice` -> Gemini `tools` and `toolConfig.functionCallingConfig`:
//! `function` tools (flat, `strict` dropped), `namespace` groups (their functions declared as
//! `namespace.name`), `web_search` -> `googleSearch` (only when no function is declared: Gemini
//! refuses built-in tools beside function calling), and the tools as a `Response` echoes them.
//!
//! Never does I/O, takes a lock, reads the clock or draws randomness.

use serde_json::{Value, json};

use super::items::gemini_name;
use crate::openai::TranslateError;
use crate::openai::fields::{Obj, as_object, bad, field, opt_array, opt_str, req_str};
use crate::openai::tools::function_declaration;

const WEB_SEARCH: [&str; 4] =
    ["web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"];

/// The tools of a request, translated.
pub(super) struct Tools {
    pub gemini: Vec<Value>,
    pub namespaces: Vec<String>,
    /// As the `Response` echoes them.
    pub echo: Vec<Value>,
}

pub(super) fn tools(obj: &Obj) -> Result<Tools, TranslateError> {
    let mut declarations = Vec::new();
    let mut namespaces = Vec::new();
    let mut echo = Vec::new();
    let mut search = false;
    for (k, tool) in opt_array(obj, "tools", "tools")?.iter().enumerate() {
        let tp = format!("tools[{k}]");
        let to = as_object(tool, &tp)?;
        let kind = req_str(to, "type", &format!("{tp}.type"))?;
        match kind {
            "function" => {
                declarations.push(function_declaration(to, &tp, "parameters")?);
                echo.push(function_echo(to));
            }
            "namespace" => {
                let ns = req_str(to, "name", &format!("{tp}.name"))?;
                let mut inner = Vec::new();
                for (j, t) in opt_array(to, "tools", &format!("{tp}.tools"))?.iter().enumerate() {
                    let fp = format!("{tp}.tools[{j}]");
                    let fo = as_object(t, &fp)?;
                    let fk = req_str(fo, "type", &format!("{fp}.type"))?;
                    if fk != "function" {
                        return Err(bad(
                            format!("Tool type '{fk}' is not supported in a namespace: only 'function'."),
                            &format!("{fp}.type"),
                        ));
                    }
                    let mut declaration = function_declaration(fo, &fp, "parameters")?;
                    declaration["name"] = Value::String(gemini_name(Some(ns), req_str(fo, "name", &fp)?));
                    declarations.push(declaration);
                    inner.push(function_echo(fo));
                }
                namespaces.push(ns.to_owned());
                let description =
                    opt_str(to, "description", &format!("{tp}.description"))?.unwrap_or_default();
                echo.push(
                    json!({"type": "namespace", "name": ns, "description": description, "tools": inner}),
                );
            }
            k if WEB_SEARCH.contains(&k) => {
                search = true;
                echo.push(tool.clone());
            }
            other => {
                return Err(bad(
                    format!(
                        "Tool type '{other}' is not supported: Gemini can run 'function' tools (also in a 'namespace') and 'web_search'."
                    ),
                    &format!("{tp}.type"),
                ));
            }
        }
    }
    let gemini = if !declarations.is_empty() {
        vec![json!({"functionDeclarations": declarations})]
    } else if search {
        vec![json!({"googleSearch": {}})]
    } else {
        Vec::new()
    };
    Ok(Tools { gemini, namespaces, echo })
}

/// A function tool as the `Response` shows it (`FunctionTool`: `strict` and `parameters` present).
fn function_echo(to: &Obj) -> Value {
    json!({"type": "function", "name": field(to, "name").cloned().unwrap_or_default(),
           "description": field(to, "description").cloned().unwrap_or(Value::Null),
           "parameters": field(to, "parameters").cloned().unwrap_or(Value::Null),
           "strict": field(to, "strict").cloned().unwrap_or(Value::Null)})
}

/// `tool_choice` -> `toolConfig` (the caller adds it only when functions are declared).
pub(super) fn tool_choice(obj: &Obj) -> Result<Option<Value>, TranslateError> {
    let config = match field(obj, "tool_choice") {
        None => return Ok(None),
        Some(Value::String(mode)) => json!({"mode": mode_of(mode, "tool_choice")?}),
        Some(Value::Object(choice)) => match req_str(choice, "type", "tool_choice.type")? {
            "function" => {
                let name = req_str(choice, "name", "tool_choice.name")?;
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
            "allowed_tools" => {
                let mode = mode_of(
                    opt_str(choice, "mode", "tool_choice.mode")?.unwrap_or("auto"),
                    "tool_choice.mode",
                )?;
                let mut names = Vec::new();
                for (k, t) in opt_array(choice, "tools", "tool_choice.tools")?.iter().enumerate() {
                    let tp = format!("tool_choice.tools[{k}]");
                    let to = as_object(t, &tp)?;
                    if req_str(to, "type", &format!("{tp}.type"))? == "function" {
                        names.push(Value::String(req_str(to, "name", &format!("{tp}.name"))?.to_owned()));
                    }
                }
                json!({"mode": mode, "allowedFunctionNames": names})
            }
            k if WEB_SEARCH.contains(&k) => json!({"mode": "AUTO"}),
            other => {
                return Err(bad(
                    format!(
                        "Invalid value for 'tool_choice.type': '{other}'. Supported: 'function', 'allowed_tools', 'web_search'."
                    ),
                    "tool_choice.type",
                ));
            }
        },
        Some(v) => return Err(TranslateError::wrong_type("tool_choice", "a string or an object", v)),
    };
    Ok(Some(json!({"functionCallingConfig": config})))
}

fn mode_of(mode: &str, param: &str) -> Result<&'static str, TranslateError> {
    match mode {
        "none" => Ok("NONE"),
        "auto" => Ok("AUTO"),
        "required" => Ok("ANY"),
        other => Err(bad(
            format!(
                "Invalid value for '{param}': '{other}'. Supported values are: 'none', 'auto' and 'required'."
            ),
            param,
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};

    use super::super::request::responses_request_to_gemini;

    fn call(extra: Value) -> Result<super::super::ResponsesCall, crate::openai::TranslateError> {
        let mut req = json!({"model": "gemini-2.5-flash", "input": "x"});
        for (k, v) in extra.as_object().unwrap() {
            req[k] = v.clone();
        }
        responses_request_to_gemini(&req, &[])
    }

    #[test]
    fn what_codex_sends_functions_a_namespace_and_web_search() {
        let c = call(json!({"tools": [
            {"type": "function", "name": "shell", "description": "Run a command", "strict": false,
             "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}},
                            "required": ["command"], "additionalProperties": false}},
            {"type": "namespace", "name": "mcp__docs", "description": "Docs server", "tools": [
                {"type": "function", "name": "search", "strict": false, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]},
            {"type": "web_search"}], "tool_choice": "auto", "parallel_tool_calls": false})).unwrap();
        assert_eq!(
            c.body["tools"],
            json!([{"functionDeclarations": [
            {"name": "shell", "description": "Run a command", "parameters": {"type": "OBJECT",
                "properties": {"command": {"type": "ARRAY", "items": {"type": "STRING"}}}, "required": ["command"]}},
            {"name": "mcp__docs.search", "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}}}]}])
        );
        assert_eq!(c.body["toolConfig"], json!({"functionCallingConfig": {"mode": "AUTO"}}));
        assert_eq!(c.namespaces, ["mcp__docs"]);
        assert_eq!(c.echo["tools"].as_array().unwrap().len(), 3);
        assert_eq!(c.echo["tools"][0]["strict"], false);
    }

    #[test]
    fn web_search_alone_is_google_search_and_choices_map() {
        let c = call(json!({"tools": [{"type": "web_search_preview"}], "tool_choice": "required"})).unwrap();
        assert_eq!(c.body["tools"], json!([{"googleSearch": {}}]));
        assert!(c.body.get("toolConfig").is_none());
        let f = json!([{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}]);
        let c = call(json!({"tools": f, "tool_choice": {"type": "function", "name": "f"}})).unwrap();
        assert_eq!(
            c.body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
        );
        let c = call(json!({"tools": f, "tool_choice": {"type": "allowed_tools", "mode": "required",
            "tools": [{"type": "function", "name": "f"}]}}))
        .unwrap();
        assert_eq!(
            c.body["toolConfig"],
            json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}})
        );
        let c = call(json!({"tools": f, "tool_choice": "none"})).unwrap();
        assert_eq!(c.body["toolConfig"]["functionCallingConfig"]["mode"], "NONE");
    }

    #[test]
    fn refusals_name_the_field() {
        let param = |extra: Value| call(extra).unwrap_err().param.unwrap();
        assert_eq!(param(json!({"tools": [{"type": "file_search"}]})), "tools[0].type");
        assert_eq!(param(json!({"tools": [{"type": "function"}]})), "tools[0].name");
        assert_eq!(param(json!({"tools": {"a": 1}})), "tools");
        assert_eq!(
            param(
                json!({"tools": [{"type": "namespace", "name": "n", "tools": [{"type": "custom", "name": "x"}]}]})
            ),
            "tools[0].tools[0].type"
        );
        assert_eq!(param(json!({"tool_choice": "always"})), "tool_choice");
        assert_eq!(param(json!({"tool_choice": {"type": "mcp"}})), "tool_choice.type");
    }
}
