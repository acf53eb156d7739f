"""The official openai SDK's Responses API against the proxy (mock upstream behind), and the
OpenAI Agents SDK with its default model class (OpenAIResponsesModel).

Run by scripts/sdk-check.sh with PROXY_URL, CLIENT_TOKEN and STREAM_DELAY_MS set; the proxy runs
with --model-alias 'gpt-*=gemini-2.5-flash'. Every answer and event is parsed by the SDK's own
types; a field the SDK does not know would be kept as an extra and fail the checks below.
"""
import asyncio
import json
import os
import time

import openai
from openai import OpenAI
from pydantic import BaseModel

PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["CLIENT_TOKEN"]
DELAY = int(os.environ.get("STREAM_DELAY_MS", "300")) / 1000
MODEL = "gpt-5"
SIG = "bW9jay10aG91Z2h0LXNpZ25hdHVyZQ=="
client = OpenAI(base_url=f"{PROXY}/v1", api_key=TOKEN, max_retries=0)
passed = 0
TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather of a city", "strict": True,
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                         "additionalProperties": False}}]


def check(name):
    def wrap(fn):
        global passed
        fn()
        passed += 1
        print(f"ok   responses {name}", flush=True)
        return fn
    return wrap


def no_extras(obj):
    assert not (obj.model_extra or {}), obj.model_extra
    for item in getattr(obj, "output", []) or []:
        assert not (item.model_extra or {}), item.model_extra


@check("responses.create")
def _():
    r = client.responses.create(model=MODEL, input="Hello", instructions="Be brief.")
    assert r.object == "response" and r.status == "completed" and r.model == MODEL, r
    assert "Hello" in r.output_text, r.output_text
    assert r.usage.total_tokens > 0, r.usage
    no_extras(r)


@check("responses.stream: text deltas arrive before the upstream finishes")
def _():
    t0 = time.monotonic()
    arrivals, kinds = [], []
    with client.responses.stream(model=MODEL, input="Count") as s:
        for event in s:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                arrivals.append(time.monotonic() - t0)
        final = s.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert len(arrivals) >= 3, arrivals
    assert arrivals[-1] - arrivals[0] >= DELAY * (len(arrivals) - 1) * 0.8, arrivals
    assert final.output_text and final.status == "completed", final


@check("tool call over two turns (stateless, store=False) keeps the thought signature")
def _():
    items = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.responses.create(model=MODEL, input=items, tools=TOOLS, store=False,
                                    include=["reasoning.encrypted_content"])
    call = next(i for i in first.output if i.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}, call
    reasoning = next(i for i in first.output if i.type == "reasoning")
    assert reasoning.encrypted_content == SIG, reasoning
    items += [i.model_dump(exclude_none=True) for i in first.output]
    items.append({"type": "function_call_output", "call_id": call.call_id, "output": "sunny"})
    second = client.responses.create(model=MODEL, input=items, tools=TOOLS, store=False)
    assert "sunny" in second.output_text, second.output_text


@check("streamed tool call, then previous_response_id")
def _():
    with client.responses.stream(model=MODEL, input="Weather in Paris?", tools=TOOLS) as s:
        kinds = [e.type for e in s]
        first = s.get_final_response()
    assert "response.function_call_arguments.delta" in kinds, kinds
    call = next(i for i in first.output if i.type == "function_call")
    assert client.responses.retrieve(first.id).id == first.id
    second = client.responses.create(model=MODEL, previous_response_id=first.id, tools=TOOLS,
                                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    assert "rain" in second.output_text and second.previous_response_id == first.id, second
    # input_items of the second: the first turn (its question, its reasoning and its call) and the
    # call's output, newest first, paged by the SDK's cursor one item at a time.
    items = list(client.responses.input_items.list(second.id, limit=1))
    assert [i.type for i in items] == ["function_call_output", "function_call", "reasoning", "message"], items
    assert items[0].call_id == call.call_id and items[-1].content[0].text == "Weather in Paris?", items
    assert len({i.id for i in items}) == 4, items
    client.responses.delete(first.id)
    try:
        client.responses.retrieve(first.id)
    except openai.NotFoundError:
        return
    raise AssertionError("a deleted response was found")


@check("structured output with responses.parse")
def _():
    class Answer(BaseModel):
        answer: str

    r = client.responses.parse(model=MODEL, input="Answer in JSON", text_format=Answer)
    assert isinstance(r.output_parsed, Answer) and r.output_parsed.answer, r


@check("wrong token -> AuthenticationError")
def _():
    bad = OpenAI(base_url=f"{PROXY}/v1", api_key="wrong", max_retries=0)
    try:
        bad.responses.create(model=MODEL, input="x")
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        return
    raise AssertionError("no AuthenticationError")


@check("every key rate-limited -> 503 with Retry-After")
def _():
    try:
        client.responses.create(model="exhausted-model", input="x")
    except openai.APIStatusError as e:
        assert e.status_code == 503 and int(e.response.headers["retry-after"]) >= 1, e
        return
    raise AssertionError("no APIStatusError")


@check("agents SDK: Runner.run with a function tool (default OpenAIResponsesModel)")
def _():
    from agents import Agent, Runner, function_tool, set_default_openai_client, set_tracing_disabled

    set_tracing_disabled(True)
    set_default_openai_client(openai.AsyncOpenAI(base_url=f"{PROXY}/v1", api_key=TOKEN, max_retries=0),
                              use_for_tracing=False)
    seen = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        seen.append(city)
        return f"sunny in {city}"

    async def both():
        agent = Agent(name="weather", instructions="Answer briefly.", model=MODEL, tools=[get_weather])
        result = await Runner.run(agent, "Weather in Paris?")
        plain = Agent(name="plain", instructions="Be brief.", model=MODEL)
        run = Runner.run_streamed(plain, "Hello")
        kinds = [e.type async for e in run.stream_events()]
        return result.final_output, kinds, run.final_output

    answer, kinds, final = asyncio.run(both())
    assert seen == ["Paris"], seen
    assert "sunny in Paris" in answer, answer
    assert "raw_response_event" in kinds and "Hello" in final, (kinds, final)


print(f"{passed} passed, 0 failed")
