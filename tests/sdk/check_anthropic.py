"""The official anthropic SDK against the proxy's Anthropic Messages routes (mock upstream behind).

Run by scripts/sdk-check.sh with PROXY_URL, CLIENT_TOKEN and STREAM_DELAY_MS set; the proxy runs
with --model-alias 'claude-*=gemini-2.5-flash'. Every answer and event is parsed by the SDK's own
types; a field the SDK does not know would be kept as an extra and fail the checks below.
"""
import os
import time

import anthropic
from anthropic import Anthropic

PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["CLIENT_TOKEN"]
DELAY = int(os.environ.get("STREAM_DELAY_MS", "300")) / 1000
MODEL = "claude-sonnet-4-5"
client = Anthropic(base_url=PROXY, api_key=TOKEN, max_retries=0)
passed = 0
TOOLS = [{"name": "get_weather", "description": "The weather of a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def check(name):
    def wrap(fn):
        global passed
        fn()
        passed += 1
        print(f"ok   anthropic {name}", flush=True)
        return fn
    return wrap


@check("message")
def _():
    m = client.messages.create(model=MODEL, max_tokens=256, system="Be brief.",
                               messages=[{"role": "user", "content": "Hello"}])
    assert m.type == "message" and m.role == "assistant", m
    assert m.model == MODEL, m.model
    assert m.stop_reason == "end_turn", m.stop_reason
    assert m.content[0].type == "text" and "Hello" in m.content[0].text, m.content
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage
    assert not (m.model_extra or {}), m.model_extra


@check("streamed message: text deltas arrive before the upstream finishes")
def _():
    t0 = time.monotonic()
    arrivals, kinds = [], []
    with client.messages.stream(model=MODEL, max_tokens=256, messages=[{"role": "user", "content": "Count"}]) as s:
        for event in s:
            kinds.append(event.type)
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                arrivals.append(time.monotonic() - t0)
        final = s.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop", kinds
    assert len(arrivals) >= 3, arrivals
    assert arrivals[0] < DELAY, arrivals
    assert arrivals[-1] - arrivals[0] >= DELAY * (len(arrivals) - 1) * 0.8, arrivals
    assert final.stop_reason == "end_turn" and final.content[0].text, final


@check("tool use over two turns keeps the thought signature")
def _():
    first = client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS,
                                   messages=[{"role": "user", "content": "Weather in Paris?"}])
    assert first.stop_reason == "tool_use", first
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris"}, call
    second = client.messages.create(model=MODEL, max_tokens=256, tools=TOOLS, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert second.stop_reason == "end_turn", second
    assert "sunny" in second.content[0].text, second.content


@check("streamed tool use: input_json_delta")
def _():
    with client.messages.stream(model=MODEL, max_tokens=256, tools=TOOLS,
                                messages=[{"role": "user", "content": "Weather in Paris?"}]) as s:
        final = s.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.input == {"city": "Paris"} and final.stop_reason == "tool_use", final


@check("thinking with a budget is accepted")
def _():
    m = client.messages.create(model=MODEL, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 1024},
                               messages=[{"role": "user", "content": "Think, then say hi"}])
    assert any(b.type == "text" for b in m.content), m.content


@check("count_tokens")
def _():
    r = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "Hello there"}])
    assert r.input_tokens > 0, r


@check("wrong token -> AuthenticationError")
def _():
    bad = Anthropic(base_url=PROXY, api_key="wrong", max_retries=0)
    try:
        bad.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401
        return
    raise AssertionError("no AuthenticationError")


@check("every key rate-limited -> 503 overloaded with Retry-After")
def _():
    try:
        client.messages.create(model="exhausted-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    except anthropic.APIStatusError as e:
        assert e.status_code == 503, e
        assert e.body["error"]["type"] == "overloaded_error", e.body
        assert int(e.response.headers["retry-after"]) >= 1
        return
    raise AssertionError("no APIStatusError")


print(f"{passed} passed, 0 failed")
