"""google-genai's Live API client (`client.aio.live.connect`) through the proxy.

Run by scripts/sdk-check.sh with LIVE_PROXY_URL (the proxy listening with TLS: the SDK always
connects with wss://), CLIENT_TOKEN and SSL_CERT_FILE (the throw-away CA the SDK's SSL context
trusts) set, the mock Live server behind the proxy accepting only the pool's keys (so a session
that works proves the SDK's token was replaced by a pool key). The SDK sends the token in
`x-goog-api-key` and a double slash in the path (`//ws/...`).
"""
import asyncio
import json
import os
import ssl
import time
import urllib.request

from google import genai
from google.genai import types

PROXY = os.environ["LIVE_PROXY_URL"]
TOKEN = os.environ["CLIENT_TOKEN"]
PIECES = int(os.environ.get("LIVE_PIECES", "4"))
DELAY = float(os.environ.get("LIVE_DELAY_MS", "200")) / 1000
MODEL = "gemini-live-2.5-flash"
passed = 0


def check(name, fn):
    global passed
    asyncio.run(fn()) if asyncio.iscoroutinefunction(fn) else fn()
    passed += 1
    print(f"ok   genai-live {name}", flush=True)


def status():
    ctx = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    req = urllib.request.Request(f"{PROXY}/status", headers={"x-goog-api-key": TOKEN})
    with urllib.request.urlopen(req, context=ctx) as r:
        return json.load(r)


def tokens_booked():
    return sum(m.get("tokens", 0) for k in status()["keys"] for name, m in k["models"].items() if name == MODEL)


client = genai.Client(api_key=TOKEN, http_options=types.HttpOptions(base_url=PROXY, api_version="v1beta"))
before = tokens_booked()


async def echo_in_frames():
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client.aio.live.connect(model=MODEL, config=config) as session:
        sent = time.monotonic()
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="hello through the pool")]), turn_complete=True
        )
        pieces, usage = [], None
        async for message in session.receive():
            if message.server_content and message.server_content.model_turn:
                for part in message.server_content.model_turn.parts or []:
                    if part.text:
                        pieces.append((part.text, time.monotonic() - sent))
            if message.usage_metadata:
                usage = message.usage_metadata
            if message.server_content and message.server_content.turn_complete:
                break
    text = "".join(t for t, _ in pieces)
    assert text == "hello through the pool", pieces
    assert len(pieces) == PIECES, pieces
    spread = pieces[-1][1] - pieces[0][1]
    assert spread >= (PIECES - 1) * DELAY * 0.7, f"pieces came together: {pieces}"
    assert usage and usage.total_token_count > 0, usage
    print(f"     {len(pieces)} frames over {spread * 1000:.0f} ms: {[round(t * 1000) for _, t in pieces]} ms", flush=True)


def booked():
    deadline = time.monotonic() + 5
    while tokens_booked() <= before:
        assert time.monotonic() < deadline, status()
        time.sleep(0.05)
    st = status()
    assert st["live"]["open"] == 0 or st["live"]["open"] >= 0


async def wrong_token():
    bad = genai.Client(api_key="not-the-token", http_options=types.HttpOptions(base_url=PROXY, api_version="v1beta"))
    try:
        async with bad.aio.live.connect(model=MODEL, config=types.LiveConnectConfig(response_modalities=["TEXT"])):
            pass
    except Exception as e:  # websockets' InvalidStatus
        assert "401" in str(e), e
    else:
        raise AssertionError("a wrong token was let in")


check("connect, echo in several frames spread over time, usageMetadata", echo_in_frames)
check("tokens booked to the key and model", booked)
check("wrong token refused with 401 before the upgrade", wrong_token)
print(f"{passed} passed, 0 failed")
