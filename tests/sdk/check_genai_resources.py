"""google-genai's 2026 resource surface through the proxy (issue 12): interactions (multi-turn,
automatic continuation hops, streamed, background), batches and their results file, file search
stores and the generate call that uses them, files and caches, merged lists.

Run by scripts/sdk-check.sh with PROXY_URL and CLIENT_TOKEN set; the mock upstream behind the proxy
keeps every resource in the Cloud project of the key that made it and refuses other projects' keys
(403/404, as Google does), and the pool has keys in two projects: every success below proves the
call landed in the right project. Each check asserts; any failure exits non-zero.
"""
import io
import os
import sys
import time

from google import genai
from google.genai import types

PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["CLIENT_TOKEN"]
MODEL = "gemini-2.5-flash"
HOPS = int(os.environ.get("INTERACTION_HOPS", "2"))
passed = 0


def client(version="v1beta"):
    return genai.Client(api_key=TOKEN, http_options=types.HttpOptions(base_url=PROXY, api_version=version))


def check(name, fn):
    global passed
    fn()
    passed += 1
    print(f"ok   genai-resources {name}", flush=True)


def refused(fn, code):
    try:
        fn()
    except Exception as e:  # errors.APIError, or the Interactions family's own errors
        got = getattr(e, "code", None) or getattr(e, "status_code", None)
        assert got == code, (got, e)
        return
    raise AssertionError(f"expected {code}")


def interactions(version):
    def run():
        c = client(version)
        first = c.interactions.create(model=MODEL, input="Say hello")
        # The SDK continued the first hops itself (continuation_token + previous_interaction_id).
        assert first.status == "completed", first
        assert len(first.continuation_ids or []) == HOPS, first.continuation_ids
        assert first.usage.total_tokens > 0, first.usage
        turn = first
        for n in range(2, 5):
            turn = c.interactions.create(model=MODEL, input=f"turn {n}", previous_interaction_id=turn.id)
            assert f"(turn {n})" in turn.output_text, turn.output_text
        got = c.interactions.get(turn.id)
        assert got.id == turn.id and got.status == "completed", got
    return run


def interaction_stream():
    c = client()
    t0 = time.monotonic()
    kinds, text, first_id, arrivals = [], "", None, []
    for event in c.interactions.create(model=MODEL, input="Stream it", stream=True):
        kinds.append(event.event_type)
        arrivals.append(time.monotonic() - t0)
        if event.event_type == "interaction.created" and first_id is None:
            first_id = event.interaction.id
        if event.event_type == "step.delta":
            text += event.delta.text
    assert kinds[0] == "interaction.created" and kinds[-1] == "interaction.completed", kinds
    assert text.endswith(f"Hello from {MODEL}"), text
    delay = int(os.environ.get("STREAM_DELAY_MS", "300")) / 1000
    assert arrivals[-1] - arrivals[0] >= delay, arrivals
    nxt = c.interactions.create(model=MODEL, input="and now?", previous_interaction_id=first_id)
    assert "(turn 2)" in nxt.output_text, nxt.output_text


def interaction_background():
    c = client()
    i = c.interactions.create(model=MODEL, input="Later", background=True)
    assert i.status == "in_progress" and i.usage is None, i
    done = c.interactions.get(i.id)
    assert done.status == "completed" and done.usage.total_tokens > 0, done
    c.interactions.delete(i.id)
    refused(lambda: c.interactions.get(i.id), 404)


def batches():
    c = client()
    src = [{"contents": [{"parts": [{"text": "one"}], "role": "user"}]},
           {"contents": [{"parts": [{"text": "two"}], "role": "user"}]}]
    job = c.batches.create(model=MODEL, src=src, config={"display_name": "inline"})
    assert job.name.startswith("batches/") and job.state == "JOB_STATE_PENDING", job
    got = c.batches.get(name=job.name)
    assert got.state == "JOB_STATE_SUCCEEDED", got
    assert len(got.dest.inlined_responses) == 2, got.dest
    up = c.files.upload(file=io.BytesIO(b'{"key":"k1","request":{"contents":[{"parts":[{"text":"hi"}]}]}}\n'),
                        config={"mime_type": "application/jsonl"})
    fjob = c.batches.create(model=MODEL, src=up.name)
    fgot = c.batches.get(name=fjob.name)
    assert fgot.dest.file_name.startswith("files/"), fgot.dest
    data = c.files.download(file=fgot.dest.file_name)
    assert b'"key":"k1"' in data and b"usageMetadata" in data, data
    names = [j.name for j in c.batches.list(config={"page_size": 1})]
    assert job.name in names and fjob.name in names, names
    c.batches.cancel(name=fjob.name)
    c.batches.delete(name=fjob.name)


def stores():
    c = client()
    store = c.file_search_stores.create(config={"display_name": "Docs"})
    assert store.name.startswith("fileSearchStores/"), store
    assert c.file_search_stores.get(name=store.name).display_name == "Docs"
    op = c.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"more text"), config={"mime_type": "text/plain"})
    assert op.done and op.response.document_name.startswith(store.name), op
    assert store.name in [s.name for s in c.file_search_stores.list()]
    docs = list(c.file_search_stores.documents.list(parent=store.name))
    assert len(docs) == 1, docs
    tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store.name]))
    for _ in range(3):
        r = c.models.generate_content(model=MODEL, contents="What do the docs say?",
                                      config=types.GenerateContentConfig(tools=[tool]))
        assert store.name in r.text, r.text
    c.file_search_stores.delete(name=store.name, config={"force": True})


def files_and_caches_listed_across_projects():
    c = client()
    made = [c.files.upload(file=io.BytesIO(f"file {i}".encode()), config={"mime_type": "text/plain"}).name
            for i in range(5)]
    caches = [c.caches.create(model=MODEL, config={"contents": [f"document {i}"]}).name for i in range(3)]
    for name in made:
        assert c.files.get(name=name).name == name
    listed = [f.name for f in c.files.list(config={"page_size": 1})]
    assert sorted(set(made) - set(listed)) == [], (made, listed)
    assert len(listed) == len(set(listed)), listed
    listed_caches = [x.name for x in c.caches.list(config={"page_size": 2})]
    assert set(caches) <= set(listed_caches), (caches, listed_caches)
    for cache in caches:
        r = c.models.generate_content(model=MODEL, contents="summarize",
                                      config=types.GenerateContentConfig(cached_content=cache))
        assert r.text, r


check("interactions: continuation hops, four turns, get (v1beta)", interactions("v1beta"))
check("interactions: continuation hops, four turns, get (v1)", interactions("v1"))
check("interactions.create stream=True, then a turn on its id", interaction_stream)
check("interactions.create background=True, get, delete", interaction_background)
check("batches create/get/list/cancel/delete, files.download of the results", batches)
check("file_search_stores create/upload/list/documents, grounding, delete", stores)
check("files and caches of every project listed, each served by its project", files_and_caches_listed_across_projects)
print(f"{passed} genai-resources checks passed")
sys.exit(0)
