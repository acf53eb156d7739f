//! The Interactions family of the mock (snake_case JSON), every resource owned by the project of
//! the key that made it: interactions (unary, SSE, background, continuation hops, function calls),
//! the generic collections (`agents`, `triggers`, `environments`, `credentials`, `webhooks`,
//! `voices`), trigger executions and `auth_tokens`. Another project's id is a 404.
//!
//! An interaction answers `Hello from {model}` (` (turn N)` when it continues a previous one,
//! then the file search stores that grounded it). With `set_interaction_hops(n)` the first `n - 1`
//! hops of a turn answer `requires_continuation` with `Part k of n. ` and a `continuation_token`
//! that only the same project may bring back (with `previous_interaction_id` set to the hop that
//! issued it when `store` is true, as the SDK sends it).

use super::{
    CREATE_TIME, Call, Reply, State, StreamEnd, count_words, find_model, invalid_argument, not_found_404,
    resources::{check_references, delete_named, get_named, grounding_note, list, not_found},
};
use serde_json::{Map, Value, json};

/// The fields of `CreateModelInteraction` and `CreateAgentInteraction` (google-genai 3.6.1).
const CREATE_FIELDS: &[&str] = &[
    "agent",
    "agent_config",
    "background",
    "cached_content",
    "continuation_token",
    "environment",
    "generation_config",
    "input",
    "labels",
    "model",
    "previous_interaction_id",
    "response_format",
    "response_mime_type",
    "response_modalities",
    "safety_settings",
    "service_tier",
    "store",
    "stream",
    "system_instruction",
    "tools",
    "webhook_config",
];

/// The generic collections and the prefix of their ids.
const COLLECTIONS: &[(&str, &str)] = &[
    ("agents", "agent"),
    ("triggers", "trigger"),
    ("environments", "env"),
    ("credentials", "cred"),
    ("webhooks", "webhook"),
    ("voices", "voice"),
];

pub(super) fn route(c: &Call, segments: &[&str]) -> Option<Reply> {
    let method = c.rec.method.as_str();
    Some(match (method, segments) {
        ("POST", ["interactions"]) => create(c),
        ("GET", ["interactions", id]) => get(c, id),
        ("DELETE", ["interactions", id]) => delete_named(c, &format!("interactions/{id}")),
        ("POST", ["interactions", id, "cancel"]) => cancel(c, id),
        ("POST", ["auth_tokens"]) if c.version == "v1alpha" => create_auth_token(c),
        ("POST", ["triggers", id, "executions"]) => run_trigger(c, id),
        ("GET", ["triggers", id, "executions"]) => {
            if c.shared.lock().res.owned(&format!("triggers/{id}"), &c.project).is_none() {
                return Some(not_found(&format!("triggers/{id}")));
            }
            list(c, &format!("triggers/{id}/executions"), "trigger_executions", true)
        }
        ("POST", ["webhooks", call]) if call.contains(':') => webhook_action(c, call)?,
        (_, [collection, rest @ ..]) => {
            let &(collection, prefix) = COLLECTIONS.iter().find(|(name, _)| name == collection)?;
            collection_route(c, collection, prefix, rest)?
        }
        _ => return None,
    })
}

// ---- Generic collections ---------------------------------------------------------------------------

fn collection_route(c: &Call, collection: &str, prefix: &str, rest: &[&str]) -> Option<Reply> {
    Some(match (c.rec.method.as_str(), rest) {
        ("POST", []) => create_item(c, collection, prefix),
        ("GET", []) => list(c, collection, collection, true),
        ("GET", [id]) => get_named(c, &format!("{collection}/{id}")),
        ("DELETE", [id]) => delete_named(c, &format!("{collection}/{id}")),
        ("PATCH", [id]) => patch_item(c, &format!("{collection}/{id}")),
        _ => return None,
    })
}

/// An environment named by a request (`environment_id`, `base_environment`, `from_environment`)
/// must be the caller's.
fn check_environments(state: &State, project: &str, body: &Value) -> Result<(), Reply> {
    for key in ["environment_id", "base_environment", "from_environment"] {
        if let Some(id) = body.get(key).and_then(Value::as_str) {
            let name = format!("environments/{id}");
            if state.res.owned(&name, project).is_none() {
                return Err(not_found(&name));
            }
        }
    }
    Ok(())
}

/// `{id: "{prefix}_{n}", ...the body}`; webhooks also get `name`; a voice with `store: false` gets
/// a `key` (`voicekey_{n}`) instead and is not kept.
fn create_item(c: &Call, collection: &str, prefix: &str) -> Reply {
    let Some(body) = c.body.as_object() else {
        return invalid_argument("Invalid JSON payload received. Expected an object.");
    };
    let mut state = c.shared.lock();
    if let Err(denied) = check_environments(&state, &c.project, &c.body) {
        return denied;
    }
    state.next_id += 1;
    let n = state.next_id;
    let mut item = body.clone();
    if collection == "voices" && body.get("store") == Some(&json!(false)) {
        item.insert("key".into(), json!(format!("voicekey_{n}")));
        return Reply::json(200, Value::Object(item));
    }
    let id = format!("{prefix}_{n}");
    item.insert("id".into(), json!(id));
    if collection == "webhooks" {
        item.insert("name".into(), json!(format!("webhooks/{id}")));
    }
    let item = Value::Object(item);
    state.res.insert(&format!("{collection}/{id}"), &c.project, item.clone(), json!({}));
    Reply::json(200, item)
}

fn patch_item(c: &Call, name: &str) -> Reply {
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned_mut(name, &c.project) else {
        return not_found(name);
    };
    if let (Some(item), Some(update)) = (entry.value.as_object_mut(), c.body.as_object()) {
        item.extend(update.iter().filter(|(k, _)| *k != "id").map(|(k, v)| (k.clone(), v.clone())));
    }
    Reply::json(200, entry.value.clone())
}

/// `webhooks/{id}:ping` → `{}`; `webhooks/{id}:rotateSigningSecret` → a new secret.
fn webhook_action(c: &Call, call: &str) -> Option<Reply> {
    let (id, action) = call.split_once(':')?;
    let name = format!("webhooks/{id}");
    if c.shared.lock().res.owned(&name, &c.project).is_none() {
        return Some(not_found(&name));
    }
    Some(match action {
        "ping" => Reply::json(200, json!({})),
        "rotateSigningSecret" => {
            let secret = c.shared.lock().opaque("whsec_");
            Reply::json(200, json!({"signing_secret": {"secret": secret}}))
        }
        _ => return None,
    })
}

/// `POST /{v}/triggers/{id}/executions`: runs the trigger now, which makes a stored interaction of
/// the trigger's project (of its `interaction.model`, else `interaction.agent`).
fn run_trigger(c: &Call, id: &str) -> Reply {
    let name = format!("triggers/{id}");
    let mut state = c.shared.lock();
    let Some(trigger) = state.res.owned(&name, &c.project) else {
        return not_found(&name);
    };
    let target =
        match (trigger.value.pointer("/interaction/model"), trigger.value.pointer("/interaction/agent")) {
            (Some(Value::String(m)), _) => ("model", m.clone()),
            (_, Some(Value::String(a))) => ("agent", a.clone()),
            _ => ("model", "gemini-2.5-flash".to_string()),
        };
    let interaction_id = store_completed(&mut state, &c.project, target);
    let exec_id = state.fresh("exec_");
    let execution = json!({"id": exec_id, "trigger_id": id, "interaction_id": interaction_id,
        "status": "completed", "start_time": CREATE_TIME, "end_time": CREATE_TIME});
    state.res.insert(&format!("{name}/executions/{exec_id}"), &c.project, execution.clone(), json!({}));
    Reply::json(200, execution)
}

/// `POST /v1alpha/auth_tokens`: `{name: "auth_tokens/…", ...the body}`, owned by the project.
fn create_auth_token(c: &Call) -> Reply {
    let mut state = c.shared.lock();
    let name = format!("auth_tokens/{}", state.opaque("mock"));
    let mut token = c.body.as_object().cloned().unwrap_or_default();
    token.insert("name".into(), json!(name));
    let token = Value::Object(token);
    state.res.insert(&name, &c.project, token.clone(), json!({}));
    Reply::json(200, token)
}

// ---- Interactions ----------------------------------------------------------------------------------

/// What a create asks for, checked.
struct Turn {
    /// (`"model"` or `"agent"`, its name)
    target: (&'static str, String),
    turn: u64,
    /// This hop and the number of hops of the turn (1-based).
    hop: u64,
    hops: u64,
    input_tokens: u64,
    previous: Option<String>,
    stores: Vec<String>,
    environment_id: Option<String>,
}

fn usage(input: u64, output: u64) -> Value {
    json!({"total_input_tokens": input, "total_output_tokens": output, "total_tokens": input + output})
}

/// The `Interaction` resource, as google-genai parses it.
fn interaction_json(id: &str, target: &(&str, String), status: &str, steps: Value, usage: Value) -> Value {
    let mut interaction = json!({"id": id, "object": "interaction", "status": status,
        "created": CREATE_TIME, "updated": CREATE_TIME, "steps": steps, "usage": usage});
    interaction[target.0] = json!(target.1);
    interaction
}

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// A completed, stored interaction of `project` (seeds, trigger executions); returns its id.
fn store_completed(state: &mut State, project: &str, target: (&'static str, String)) -> String {
    let id = state.opaque("v1_");
    let text = format!("Hello from {}", target.1);
    let steps = json!([{"type": "model_output", "content": [{"type": "text", "text": text}]}]);
    let interaction = interaction_json(&id, &target, "completed", steps, usage(1, words(&text)));
    let meta = json!({"turn": 1, "input_tokens": 1, "pending": false});
    state.res.insert(&format!("interactions/{id}"), project, interaction, meta);
    id
}

pub(super) fn seed(shared: &super::Shared, project: &str, model: &str) -> String {
    store_completed(&mut shared.lock(), project, ("model", model.trim_start_matches("models/").to_string()))
}

/// `model` xor `agent`; a model must be a generate model of the mock, an agent made with
/// `POST /agents` (`agent_…`) the caller's.
fn target(c: &Call, state: &State, body: &Map<String, Value>) -> Result<(&'static str, String), Reply> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    match (text("model"), text("agent")) {
        (Some(model), None) => {
            let model = model.trim_start_matches("models/");
            match find_model(model) {
                Some(m) if m.4.contains(&"generateContent") => Ok(("model", model.to_string())),
                _ => Err(not_found_404(&format!(
                    "models/{model} is not found for API version {}, or is not supported for \
                     interactions.",
                    c.version
                ))),
            }
        }
        (None, Some(agent)) => {
            if ["cached_content", "generation_config"].iter().any(|k| body.contains_key(*k)) {
                return Err(invalid_argument(
                    "cached_content and generation_config cannot be used with agent.",
                ));
            }
            let name = format!("agents/{agent}");
            if agent.starts_with("agent_") && state.res.owned(&name, &c.project).is_none() {
                return Err(not_found(&name));
            }
            Ok(("agent", agent.to_string()))
        }
        _ => Err(invalid_argument("Exactly one of model or agent must be set.")),
    }
}

/// The environment of a create: an id (string or `{environment_id}`) of the caller's, or a
/// configuration, which makes a new environment of the project.
fn environment(c: &Call, state: &mut State) -> Result<Option<String>, Reply> {
    let id = match c.body.get("environment") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(id)) => id.clone(),
        Some(config) => match config.get("environment_id").and_then(Value::as_str) {
            Some(id) => id.to_string(),
            None => {
                state.next_id += 1;
                let id = format!("env_{}", state.next_id);
                let mut env = config.clone();
                env["id"] = json!(id);
                state.res.insert(&format!("environments/{id}"), &c.project, env, json!({}));
                return Ok(Some(id));
            }
        },
    };
    match state.res.owned(&format!("environments/{id}"), &c.project) {
        Some(_) => Ok(Some(id)),
        None => Err(not_found(&format!("environments/{id}"))),
    }
}

/// The turn, hop and input size of a create, from its `continuation_token` (a hop of the turn
/// that issued it) or `previous_interaction_id` (the next turn).
fn position(c: &Call, state: &State, store: bool) -> Result<(u64, u64, u64, Option<String>), Reply> {
    let previous = c.body.get("previous_interaction_id").and_then(Value::as_str).map(str::to_string);
    let prev = match &previous {
        Some(id) => match state.res.owned(&format!("interactions/{id}"), &c.project) {
            Some(entry) => Some(entry),
            None => return Err(not_found(&format!("interactions/{id}"))),
        },
        None => None,
    };
    if let Some(token) = c.body.get("continuation_token").and_then(Value::as_str) {
        let Some(issued) = state.res.owned(&format!("continuation_tokens/{token}"), &c.project) else {
            return Err(invalid_argument("Invalid continuation_token."));
        };
        let issuer = issued.meta["issuer"].as_str().unwrap_or_default();
        if store && previous.as_deref() != Some(issuer) {
            return Err(invalid_argument(&format!(
                "continuation_token belongs to interaction {issuer}: send it as previous_interaction_id."
            )));
        }
        let m = &issued.meta;
        let get = |k: &str| m[k].as_u64().unwrap_or(1);
        return Ok((get("turn"), get("hop") + 1, get("input_tokens"), previous));
    }
    let turn = prev.map_or(1, |p| p.meta["turn"].as_u64().unwrap_or(1) + 1);
    let input_tokens = match &c.body["input"] {
        Value::String(text) => words(text),
        steps => count_words(steps),
    };
    Ok((turn, 1, input_tokens.max(1), previous))
}

fn check_create(c: &Call, state: &mut State) -> Result<Turn, Reply> {
    let Some(body) = c.body.as_object() else {
        return Err(invalid_argument("Invalid JSON payload received. Expected an object."));
    };
    if let Some(name) = body.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        let message = format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.");
        return Err(invalid_argument(&message));
    }
    let target = target(c, state, body)?;
    let store = body.get("store") != Some(&json!(false));
    if body.get("background") == Some(&json!(true)) && !store {
        return Err(invalid_argument("background requires store to be true."));
    }
    let stores = check_references(state, &c.project, &c.body)?;
    let environment_id = environment(c, state)?;
    let (turn, hop, input_tokens, previous) = position(c, state, store)?;
    let hops = state.interaction_hops as u64;
    Ok(Turn { target, turn, hop, hops: hops.max(hop), input_tokens, previous, stores, environment_id })
}

/// The step the model answers with, and its status: a function call when function tools are
/// offered and the input brings no result; the result echoed when it does; else text.
fn answer(c: &Call, state: &mut State, t: &Turn, background: bool) -> (Value, &'static str) {
    let steps = c.body["input"].as_array().cloned().unwrap_or_default();
    let text_step =
        |text: String| json!({"type": "model_output", "content": [{"type": "text", "text": text}]});
    if let Some(result) = steps.iter().find(|s| s["type"] == "function_result") {
        return (text_step(format!("The tool said: {}", result["result"])), "completed");
    }
    let tools = c.body["tools"].as_array().cloned().unwrap_or_default();
    if let Some(function) = tools.iter().find(|t| t["type"] == "function") {
        let call_id = state.fresh("call_");
        let step = json!({"type": "function_call", "id": call_id, "name": function["name"],
            "arguments": {"city": "Paris"}});
        return (step, "requires_action");
    }
    if t.hop < t.hops && !background {
        return (text_step(format!("Part {} of {}. ", t.hop, t.hops)), "requires_continuation");
    }
    let turn = if t.turn > 1 { format!(" (turn {})", t.turn) } else { String::new() };
    (text_step(format!("Hello from {}{turn}{}", t.target.1, grounding_note(&t.stores))), "completed")
}

/// `POST /{v}/interactions`. Answers the interaction (`stream`: as SSE; `background`: at once,
/// `in_progress`, completed by the first GET).
fn create(c: &Call) -> Reply {
    let mut state = c.shared.lock();
    let turn = match check_create(c, &mut state) {
        Ok(turn) => turn,
        Err(refused) => return refused,
    };
    let flag = |k: &str| c.body.get(k) == Some(&json!(true));
    let (store, background, stream) =
        (c.body.get("store") != Some(&json!(false)), flag("background"), flag("stream"));
    let (step, status) = answer(c, &mut state, &turn, background);
    let output = step["content"][0]["text"].as_str().map_or(3, words);
    let id = state.opaque("v1_");
    let mut interaction =
        interaction_json(&id, &turn.target, status, json!([step]), usage(turn.input_tokens, output));
    if let Some(previous) = &turn.previous {
        interaction["previous_interaction_id"] = json!(previous);
    }
    if let Some(env) = &turn.environment_id {
        interaction["environment_id"] = json!(env);
    }
    if status == "requires_continuation" {
        let token = state.opaque("ct_");
        interaction["continuation_token"] = json!(token);
        let meta =
            json!({"issuer": id, "turn": turn.turn, "hop": turn.hop, "input_tokens": turn.input_tokens});
        state.res.insert(&format!("continuation_tokens/{token}"), &c.project, json!({}), meta);
    }
    if store {
        let meta = json!({"turn": turn.turn, "input_tokens": turn.input_tokens, "pending": background,
            "input": c.body.get("input")});
        state.res.insert(&format!("interactions/{id}"), &c.project, interaction.clone(), meta);
    }
    if background {
        return Reply::json(200, pending_view(&interaction));
    }
    if stream {
        return sse(events(&interaction, state.stream_events), state.stream_delay, None);
    }
    Reply::json(200, interaction)
}

/// A background interaction as its create answers it: no steps, no usage yet.
fn pending_view(interaction: &Value) -> Value {
    let mut view = interaction.clone();
    if let Some(map) = view.as_object_mut() {
        map.remove("steps");
        map.remove("usage");
        map.remove("continuation_token");
        map.insert("status".into(), json!("in_progress"));
    }
    view
}

/// `GET /{v}/interactions/{id}?stream=false|true[&last_event_id][&include_input]`. A background
/// interaction is completed by its first read.
fn get(c: &Call, id: &str) -> Reply {
    let name = format!("interactions/{id}");
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned_mut(&name, &c.project) else {
        return not_found(&name);
    };
    entry.meta["pending"] = json!(false);
    let mut interaction = entry.value.clone();
    if c.rec.query_param("include_input").as_deref() == Some("true") {
        interaction["input"] = entry.meta["input"].clone();
    }
    if c.rec.query_param("stream").as_deref() == Some("true") {
        let events = events(&interaction, state.stream_events);
        return sse(events, state.stream_delay, c.rec.query_param("last_event_id"));
    }
    Reply::json(200, interaction)
}

/// `POST /{v}/interactions/{id}/cancel`: a background interaction still running becomes
/// `cancelled` (no steps, no usage); any other is answered as it is.
fn cancel(c: &Call, id: &str) -> Reply {
    let name = format!("interactions/{id}");
    let mut state = c.shared.lock();
    let Some(entry) = state.res.owned_mut(&name, &c.project) else {
        return not_found(&name);
    };
    if entry.meta["pending"] == true {
        entry.meta["pending"] = json!(false);
        entry.value = pending_view(&entry.value);
        entry.value["status"] = json!("cancelled");
    }
    Reply::json(200, entry.value.clone())
}

// ---- Streams ---------------------------------------------------------------------------------------

/// `text` in `n` pieces (at most one per word) that concatenate back to it.
fn pieces(text: &str, n: usize) -> Vec<String> {
    let words: Vec<&str> = text.split(' ').collect();
    let n = n.clamp(1, words.len().max(1));
    let per = words.len().div_ceil(n);
    let chunks: Vec<&[&str]> = words.chunks(per.max(1)).collect();
    let last = chunks.len().saturating_sub(1);
    chunks.iter().enumerate().map(|(i, w)| w.join(" ") + if i < last { " " } else { "" }).collect()
}

/// The SSE events of `interaction`, each flagged when it opens a new HTTP chunk (the mock's
/// stream delay comes before it): `interaction.created` (with the id), `interaction.status_update`
/// and `step.start` at once, then each `step.delta`, then `step.stop` with `interaction.completed`.
fn events(interaction: &Value, deltas: usize) -> Vec<(bool, Value)> {
    let id = interaction["id"].clone();
    let mut head =
        json!({"id": id, "object": "interaction", "status": "in_progress", "created": CREATE_TIME});
    for k in ["model", "agent"] {
        if let Some(v) = interaction.get(k) {
            head[k] = v.clone();
        }
    }
    let mut out = vec![
        (false, json!({"event_type": "interaction.created", "interaction": head})),
        (
            false,
            json!({"event_type": "interaction.status_update", "interaction_id": id, "status": "in_progress"}),
        ),
    ];
    for (index, step) in interaction["steps"].as_array().into_iter().flatten().enumerate() {
        let text = step["content"][0]["text"].as_str();
        let start = if text.is_some() { json!({"type": step["type"]}) } else { step.clone() };
        out.push((false, json!({"event_type": "step.start", "index": index, "step": start})));
        for piece in text.map(|t| pieces(t, deltas)).unwrap_or_default() {
            let delta = json!({"type": "text", "text": piece});
            out.push((true, json!({"event_type": "step.delta", "index": index, "delta": delta})));
        }
        out.push((true, json!({"event_type": "step.stop", "index": index})));
    }
    let mut done = head;
    for k in ["status", "usage", "continuation_token", "updated"] {
        if let Some(v) = interaction.get(k) {
            done[k] = v.clone();
        }
    }
    out.push((false, json!({"event_type": "interaction.completed", "interaction": done})));
    out
}

/// 200 `text/event-stream`, each event `event: <type>\ndata: <json>\n\n` with an `event_id`
/// (`evt_{n}`); events after `last_event_id` only, when given.
fn sse(events: Vec<(bool, Value)>, delay: std::time::Duration, after: Option<String>) -> Reply {
    let skip =
        after.and_then(|id| id.strip_prefix("evt_").and_then(|n| n.parse::<usize>().ok())).unwrap_or(0);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for (i, (new_chunk, mut event)) in events.into_iter().enumerate().skip(skip) {
        event["event_id"] = json!(format!("evt_{}", i + 1));
        let kind = event["event_type"].as_str().unwrap_or_default().to_string();
        let frame = format!("event: {kind}\ndata: {event}\n\n").into_bytes();
        match chunks.last_mut() {
            Some(open) if !new_chunk => open.extend(frame),
            _ => chunks.push(frame),
        }
    }
    let headers = vec![
        ("Content-Type".into(), "text/event-stream".into()),
        ("Cache-Control".into(), "no-cache".into()),
    ];
    Reply::Chunked { status: 200, headers, chunks, delay, then: StreamEnd::Finish }
}
