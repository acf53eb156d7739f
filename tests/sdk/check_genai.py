"""The official google-genai SDK against the proxy (which fronts the mock upstream).

Run by scripts/sdk-check.sh with PROXY_URL and CLIENT_TOKEN set. Each check asserts; any
failure exits non-zero. The mock accepts only the pool's real keys, so every success also
proves the SDK's token was replaced by a real key before reaching the upstream.
"""
import os
import sys
import time

from google import genai
from google.genai import types

PROXY = os.environ["PROXY_URL"]
TOKEN = os.environ["CLIENT_TOKEN"]
MODEL = "gemini-2.5-flash"
passed = 0


def check(name, fn):
    global passed
    fn()
    passed += 1
    print(f"ok   genai {name}", flush=True)


def clients():
    # Both API versions the SDK speaks: recent SDKs call /v1/... as well as /v1beta/...
    yield genai.Client(api_key=TOKEN, http_options=types.HttpOptions(base_url=PROXY, api_version="v1beta"))
    yield genai.Client(api_key=TOKEN, http_options=types.HttpOptions(base_url=PROXY, api_version="v1"))


for n, client in enumerate(clients()):
    version = "v1beta" if n == 0 else "v1"

    def generate():
        r = client.models.generate_content(model=MODEL, contents="Say hello")
        assert r.text and MODEL in r.text, r
        assert r.usage_metadata.total_token_count > 0

    def stream():
        t0 = time.monotonic()
        arrivals = []
        text = ""
        for chunk in client.models.generate_content_stream(model=MODEL, contents="Count to three"):
            arrivals.append(time.monotonic() - t0)
            text += chunk.text or ""
        assert len(arrivals) >= 3, arrivals
        # The mock spaces its events by STREAM_DELAY_MS: the first must arrive long before the last.
        gap = arrivals[-1] - arrivals[0]
        delay = int(os.environ.get("STREAM_DELAY_MS", "300")) / 1000
        assert gap >= delay * (len(arrivals) - 1) * 0.8, arrivals
        assert arrivals[0] < delay, arrivals
        assert text, "chunks carried text"

    def count():
        r = client.models.count_tokens(model=MODEL, contents="How many tokens is this?")
        assert r.total_tokens > 0

    def embed():
        r = client.models.embed_content(model="text-embedding-004", contents=["one", "two"])
        assert len(r.embeddings) == 2 and len(r.embeddings[0].values) > 0

    def models():
        names = [m.name for m in client.models.list()]
        assert any(MODEL in n for n in names), names

    for name, fn in [("generate_content", generate), ("generate_content_stream", stream),
                     ("count_tokens", count), ("embed_content", embed), ("models.list", models)]:
        check(f"{version} {name}", fn)


def wrong_token():
    bad = genai.Client(api_key="not-the-token", http_options=types.HttpOptions(base_url=PROXY))
    try:
        bad.models.generate_content(model=MODEL, contents="hi")
    except genai.errors.ClientError as e:
        assert e.code == 401, e
        return
    raise AssertionError("a wrong token was accepted")


check("wrong token -> ClientError 401", wrong_token)
print(f"{passed} passed, 0 failed")
