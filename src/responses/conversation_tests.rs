//! Two-turn round trips through the Responses core: the output items of one answer, sent back as
//! a stateless client sends them (or as stored history), carry Gemini's thought signatures back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::{ResponseBuilder, responses_request_to_gemini};

const SIG: &str = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ==";

fn answer_items(model: &str, answer: &Value) -> Vec<Value> {
    let mut b = ResponseBuilder::new("resp_t1", model, 0, serde_json::Map::new(), Vec::new(), false);
    b.feed(answer);
    b.finish(1);
    b.output().to_vec()
}

fn signed_call() -> Value {
    json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}]},
        "finishReason": "STOP"}]})
}

fn model_turn(body: &Value) -> &Value {
    body["contents"].as_array().unwrap().iter().find(|c| c["role"] == "model").unwrap()
}

#[test]
fn a_stateless_client_sending_every_item_back_keeps_the_signature() {
    let items = answer_items("gemini-3-pro-preview", &signed_call());
    let call_id = items.iter().find(|i| i["type"] == "function_call").unwrap()["call_id"].clone();
    let mut input = vec![json!({"role": "user", "content": "Weather in Paris?"})];
    input.extend(items);
    input.push(json!({"type": "function_call_output", "call_id": call_id, "output": "sunny"}));
    let call =
        responses_request_to_gemini(&json!({"model": "gemini-3-pro-preview", "input": input}), &[]).unwrap();
    assert_eq!(
        model_turn(&call.body)["parts"],
        json!([
        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}])
    );
    assert_eq!(call.body["contents"][2]["parts"][0]["functionResponse"]["name"], "get_weather");
}

#[test]
fn a_client_that_drops_reasoning_items_still_brings_the_signature_in_the_call_id() {
    // Rebuilt from OpenAI's own fields only, without the reasoning item.
    let items = answer_items("gemini-3-pro-preview", &signed_call());
    let fc = items.iter().find(|i| i["type"] == "function_call").unwrap();
    let rebuilt = json!({"type": "function_call", "call_id": fc["call_id"], "name": fc["name"], "arguments": fc["arguments"]});
    let input = json!([{"role": "user", "content": "Weather?"}, rebuilt,
        {"type": "function_call_output", "call_id": fc["call_id"], "output": "sunny"}]);
    let call =
        responses_request_to_gemini(&json!({"model": "gemini-3-pro-preview", "input": input}), &[]).unwrap();
    assert_eq!(model_turn(&call.body)["parts"][0]["thoughtSignature"], SIG);
}

#[test]
fn stored_history_and_previous_response_id() {
    let first =
        responses_request_to_gemini(&json!({"model": "gemini-2.5-flash", "input": "Weather?"}), &[]).unwrap();
    let mut history = first.items.clone();
    history.extend(answer_items("gemini-2.5-flash", &signed_call()));
    let call_id = history.iter().find(|i| i["type"] == "function_call").unwrap()["call_id"].clone();
    let second = responses_request_to_gemini(
        &json!({"model": "gemini-2.5-flash", "previous_response_id": "resp_t1",
                "input": [{"type": "function_call_output", "call_id": call_id, "output": "{\"sky\": \"clear\"}"}]}),
        &history,
    )
    .unwrap();
    assert_eq!(
        second.body["contents"],
        json!([
        {"role": "user", "parts": [{"text": "Weather?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": SIG}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}]}])
    );
    assert_eq!(second.items.len(), history.len() + 1);
    assert_eq!(second.echo["previous_response_id"], "resp_t1");
}
