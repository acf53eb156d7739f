"""By hand, not in CI: google-genai parses the mock upstream's 2026 resource answers.

    cargo run --example mock_upstream -- --port 0 --keys KA,KB,KC --projects KA=p1,KB=p1 --hops 2
    MOCK_URL=http://127.0.0.1:PORT python3 scripts/mock-sdk-parse.py

Talks to the mock directly (loopback only) with key KA (KB shares its project, KC does not).
Each check asserts; any failure exits non-zero.
"""
import io
import os
import sys

from google import genai
from google.genai import errors, types

URL = os.environ["MOCK_URL"]
assert URL.startswith("http://127.0.0.1:"), "loopback only"
MODEL = "gemini-2.5-flash"


def client(key, version="v1beta"):
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=URL, api_version=version))


a, b, c = client("KA"), client("KB"), client("KC")
passed = 0


def check(name, fn):
    global passed
    fn()
    passed += 1
    print(f"ok   {name}", flush=True)


def refused(fn, code):
    try:
        fn()
    except Exception as e:  # errors.APIError, or the Interactions family's own errors
        got = getattr(e, "code", None) or getattr(e, "status_code", None)
        assert got == code, (got, e)
        return
    raise AssertionError(f"expected {code}")


def interaction_unary():
    # --hops 2: the SDK continues the first hop itself (continuation_token + previous_interaction_id).
    i = a.interactions.create(model=MODEL, input="Say hello")
    assert i.status == "completed", i
    assert i.output_text.endswith(f"Hello from {MODEL}"), i.output_text
    assert len(i.continuation_ids or []) == int(os.environ.get("HOPS", "2")), i.continuation_ids
    assert i.usage.total_tokens > 0, i.usage
    nxt = b.interactions.create(model=MODEL, input="Again", previous_interaction_id=i.id)
    assert "(turn 2)" in nxt.output_text, nxt.output_text
    refused(lambda: c.interactions.create(model=MODEL, input="x", previous_interaction_id=i.id), 404)
    got = b.interactions.get(i.id)
    assert got.id == i.id and got.status == "completed", got


def interaction_stream():
    kinds, text, first_id = [], "", None
    for event in a.interactions.create(model=MODEL, input="Stream it", stream=True):
        kinds.append(event.event_type)
        if event.event_type == "interaction.created" and first_id is None:
            first_id = event.interaction.id
        if event.event_type == "step.delta":
            text += event.delta.text
    assert kinds[0] == "interaction.created" and kinds[-1] == "interaction.completed", kinds
    assert text.endswith(f"Hello from {MODEL}"), text
    assert first_id and first_id.startswith("v1_"), first_id


def interaction_background():
    i = a.interactions.create(model=MODEL, input="Later", background=True)
    assert i.status == "in_progress" and i.usage is None, i
    done = a.interactions.get(i.id)
    assert done.status == "completed" and done.usage.total_tokens > 0, done
    a.interactions.delete(i.id)
    refused(lambda: a.interactions.get(i.id), 404)


def batches():
    src = [{"contents": [{"parts": [{"text": "one"}], "role": "user"}]},
           {"contents": [{"parts": [{"text": "two"}], "role": "user"}]}]
    job = a.batches.create(model=MODEL, src=src, config={"display_name": "inline"})
    assert job.name.startswith("batches/") and job.state == "JOB_STATE_PENDING", job
    assert job.display_name == "inline", job
    got = b.batches.get(name=job.name)
    assert got.state == "JOB_STATE_SUCCEEDED", got
    assert len(got.dest.inlined_responses) == 2, got.dest
    assert got.dest.inlined_responses[0].response.usage_metadata.total_token_count > 0
    refused(lambda: c.batches.get(name=job.name), 404)
    up = a.files.upload(file=io.BytesIO(b'{"key":"k1","request":{"contents":[{"parts":[{"text":"hi"}]}]}}\n'),
                        config={"mime_type": "application/jsonl"})
    fjob = a.batches.create(model=MODEL, src=up.name)
    fgot = a.batches.get(name=fjob.name)
    assert fgot.dest.file_name.startswith("files/"), fgot.dest
    data = b.files.download(file=fgot.dest.file_name)
    assert b'"key":"k1"' in data and b"usageMetadata" in data, data
    names = [j.name for j in a.batches.list(config={"page_size": 1})]
    assert job.name in names and fjob.name in names, names
    a.batches.cancel(name=fjob.name)
    a.batches.delete(name=fjob.name)


def stores():
    store = a.file_search_stores.create(config={"display_name": "Docs"})
    assert store.name.startswith("fileSearchStores/"), store
    assert a.file_search_stores.get(name=store.name).display_name == "Docs"
    up = a.files.upload(file=io.BytesIO(b"some text"), config={"mime_type": "text/plain"})
    op = b.file_search_stores.import_file(file_search_store_name=store.name, file_name=up.name)
    assert op.done and op.response.document_name.startswith(store.name + "/documents/"), op
    again = a.operations.get(op)
    assert again.done, again
    listed = [s.name for s in b.file_search_stores.list()]
    assert store.name in listed, listed
    assert store.name not in [s.name for s in c.file_search_stores.list()]
    docs = list(a.file_search_stores.documents.list(parent=store.name))
    assert len(docs) == 1, docs
    tool = types.Tool(file_search=types.FileSearch(file_search_store_names=[store.name]))
    r = a.models.generate_content(model=MODEL, contents="What do the docs say?",
                                  config=types.GenerateContentConfig(tools=[tool]))
    assert store.name in r.text, r.text
    refused(lambda: c.models.generate_content(model=MODEL, contents="x",
                                              config=types.GenerateContentConfig(tools=[tool])), 404)
    up_op = a.file_search_stores.upload_to_file_search_store(
        file_search_store_name=store.name, file=io.BytesIO(b"more text"), config={"mime_type": "text/plain"})
    assert up_op.done and up_op.response.document_name.startswith(store.name), up_op
    a.file_search_stores.delete(name=store.name, config={"force": True})
    refused(lambda: a.file_search_stores.get(name=store.name), 404)


def files_and_caches():
    up = a.files.upload(file=io.BytesIO(b"hello"), config={"mime_type": "text/plain"})
    assert b.files.get(name=up.name).name == up.name
    refused(lambda: c.files.get(name=up.name), 403)
    cache = a.caches.create(model=MODEL, config={"contents": ["a long document"]})
    assert b.caches.get(name=cache.name).name == cache.name
    refused(lambda: c.caches.get(name=cache.name), 403)
    assert up.name in [f.name for f in b.files.list(config={"page_size": 1})]
    assert cache.name in [x.name for x in b.caches.list()]


def versions():
    for version in ["v1", "v1alpha"]:
        versioned = client("KA", version)  # kept: a dropped client closes its connection pool
        i = versioned.interactions.create(model=MODEL, input="hi")
        assert i.status == "completed", i
        assert versioned.batches.get(name=versioned.batches.create(model=MODEL, src=[
            {"contents": [{"parts": [{"text": "x"}]}]}]).name).state == "JOB_STATE_SUCCEEDED"


check("interactions.create with continuation hops, previous_interaction_id, get", interaction_unary)
check("interactions.create stream=True", interaction_stream)
check("interactions.create background=True, get, delete", interaction_background)
check("batches.create/get/list/cancel/delete, files.download of results", batches)
check("file_search_stores create/get/list/import_file/documents/upload, grounding", stores)
check("files and caches follow their project, lists", files_and_caches)
check("v1 and v1alpha", versions)
print(f"{passed} checks passed")
sys.exit(0)
