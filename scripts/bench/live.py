"""Live API relay overhead: one frame each way per exchange, direct to the Live mock vs through the
proxy (scripts/bench.sh section 9). The mock answers each turn at once in one serverContent frame;
the time from sending a turn to that frame is one frame up and one frame down.

usage: live.py DIRECT_WS_URL PROXY_WS_URL KEY TOKEN N OUT.json
Prints p50/p90/p99 of each and the added time per frame (half the added round trip) at p99.
"""
import json
import sys
import time

from websockets.sync.client import connect

direct_url, proxy_url, key, token, n, out = sys.argv[1:7]
n = int(n)
SETUP = json.dumps({"setup": {"model": "models/gemini-live-2.5-flash"}})
TURN = json.dumps({"clientContent": {"turns": [{"role": "user", "parts": [{"text": "ping"}]}], "turnComplete": True}})


def exchanges(url, header_key):
    times = []
    with connect(url, additional_headers={"x-goog-api-key": header_key}, max_size=None, compression=None) as ws:
        ws.send(SETUP)
        assert "setupComplete" in str(ws.recv())
        for i in range(n + 200):
            start = time.perf_counter_ns()
            ws.send(TURN)
            first = ws.recv()
            elapsed = time.perf_counter_ns() - start
            assert b"ping" in (first if isinstance(first, bytes) else first.encode()), first
            ws.recv()  # turnComplete + usageMetadata
            if i >= 200:  # warm-up left out
                times.append(elapsed / 1e6)
    times.sort()
    return {q: times[min(len(times) - 1, int(len(times) * q / 100))] for q in (50, 90, 99)}


result = {}
for round_ in range(3):  # interleaved rounds, best p99 of each kept (noise on a shared machine)
    for name, url, k in (("direct", direct_url, key), ("gkm-proxy", proxy_url, token)):
        r = exchanges(url, k)
        if name not in result or r[99] < result[name][99]:
            result[name] = r
added = {q: result["gkm-proxy"][q] - result["direct"][q] for q in (50, 90, 99)}
result["added_per_frame_ms"] = {q: added[q] / 2 for q in added}
result["ratio_p99"] = result["gkm-proxy"][99] / result["direct"][99]
json.dump(result, open(out, "w"))
for name in ("direct", "gkm-proxy"):
    r = result[name]
    print(f"  {name:10} exchange (1 frame up + 1 down) p50 {r[50]:.3f} ms  p90 {r[90]:.3f} ms  p99 {r[99]:.3f} ms")
a = result["added_per_frame_ms"]
print(f"  added per frame: p50 {a[50]:.3f} ms  p90 {a[90]:.3f} ms  p99 {a[99]:.3f} ms (goal: under 1 ms at p99);"
      f" ratio proxy/direct at p99 {result['ratio_p99']:.2f}")
