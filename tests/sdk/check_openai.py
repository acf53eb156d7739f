"""The official openai SDK against the proxy's OpenAI-compatible routes (mock upstream behind).

Run by scripts/sdk-check.sh with PROXY_URL, CLIENT_TOKEN and STREAM_DELAY_MS set.
"""
import base64
import json
import os
import time

import openai
from openai import OpenAI

PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["CLIENT_TOKEN"]
DELAY = int(os.environ.get("STREAM_DELAY_MS", "300")) / 1000
MODEL = "gemini-2.5-flash"
client = OpenAI(base_url=f"{PROXY}/v1", api_key=TOKEN, max_retries=0)
passed = 0


def check(name):
    def wrap(fn):
        global passed
        fn()
        passed += 1
        print(f"ok   openai {name}", flush=True)
        return fn
    return wrap


@check("chat completion")
def _():
    r = client.chat.completions.create(model=MODEL, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert MODEL in r.choices[0].message.content, r
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens > 0


@check("streamed chat with include_usage: deltas arrive before the upstream finishes")
def _():
    t0 = time.monotonic()
    arrivals, text, usage, ids = [], "", None, set()
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Count"}],
                                            stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        ids.add(chunk.id)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - t0)
            text += chunk.choices[0].delta.content
        if chunk.usage:
            usage = chunk.usage
    assert len(ids) == 1, ids
    assert len(arrivals) >= 3, arrivals
    assert arrivals[0] < DELAY, arrivals  # the first delta came before the upstream's second event
    assert arrivals[-1] - arrivals[0] >= DELAY * (len(arrivals) - 1) * 0.8, arrivals
    assert usage is not None and usage.total_tokens > 0


@check("two-turn tool call with a thought signature")
def _():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                             "required": ["city"], "additionalProperties": False}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="gemini-3-pro-preview", messages=messages, tools=tools)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    # The client echoes the assistant turn as the SDK gives it (model_dump drops nothing it knows).
    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 21})})
    r2 = client.chat.completions.create(model="gemini-3-pro-preview", messages=messages, tools=tools)
    assert "21" in r2.choices[0].message.content, r2  # the mock refuses a turn without the signature


@check("image as a data: URL")
def _():
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert r.choices[0].message.content


@check("JSON-schema answer")
def _():
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
              "additionalProperties": False}
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Answer"}],
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "a", "schema": schema, "strict": True}})
    assert "answer" in json.loads(r.choices[0].message.content)


@check("n=2")
def _():
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], n=2)
    assert [c.index for c in r.choices] == [0, 1], r.choices


@check("models.list and models.retrieve")
def _():
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids and not any(i.startswith("models/") for i in ids), ids
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.owned_by == "google"


@check("embeddings for two inputs")
def _():
    r = client.embeddings.create(model="text-embedding-004", input=["one", "two"])
    assert [d.index for d in r.data] == [0, 1] and len(r.data[0].embedding) > 0
    r = client.embeddings.create(model="text-embedding-004", input="three", encoding_format="base64")
    assert len(r.data) == 1


@check("AuthenticationError on a wrong token")
def _():
    bad = OpenAI(base_url=f"{PROXY}/v1", api_key="wrong", max_retries=0)
    try:
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    except openai.AuthenticationError:
        return
    raise AssertionError("no AuthenticationError")


@check("BadRequestError naming the field")
def _():
    try:
        client.chat.completions.create(model=MODEL, messages=[])
    except openai.BadRequestError as e:
        assert e.body["param"] == "messages", e.body
        return
    raise AssertionError("no BadRequestError")


@check("NotFoundError for an unknown model")
def _():
    try:
        client.models.retrieve("no-such-model")
    except openai.NotFoundError:
        return
    raise AssertionError("no NotFoundError")




@check("every key rate-limited -> InternalServerError 503 with Retry-After")
def _():
    try:
        client.chat.completions.create(model="exhausted-model", messages=[{"role": "user", "content": "x"}])
    except openai.InternalServerError as e:
        assert e.status_code == 503, e
        assert int(e.response.headers["retry-after"]) >= 1
        assert "exhausted-model" in e.message, e.message
        return
    raise AssertionError("no InternalServerError")


print(f"{passed} passed, 0 failed")
