#!/usr/bin/env bash
# Soak (not in CI): SOAK_SECONDS (default 600) of mixed native, OpenAI, streaming and 429
# traffic from 16 client threads against the release proxy and the mock upstream. Prints the
# proxy's RSS every 30 s and, at the end, the growth after warm-up: memory must be flat.
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-600}
cargo build --quiet --release --bin gemini-key-manager --example mock_upstream
BIN=${CARGO_TARGET_DIR:-target}/release
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

KEYS="AIzaSySOAK00000000000000000000000000001,AIzaSySOAK00000000000000000000000000002,AIzaSySOAK00000000000000000000000000003,AIzaSySOAK00000000000000000000000000004"
start_mock "$BIN" --keys "$KEYS" --delay-ms 20 --events 5 --day-quota-exhausted AIzaSySOAK00000000000000000000000000004
tr ',' '\n' <<<"$KEYS" >"$work/key.txt"
PROXY_STDERR=/dev/null start_proxy "$BIN" "$work/gemini-key-manager.log" --token soak --upstream "$MOCK" \
  --key-file "$work/key.txt" --usage-file "$work/usage.json" --log-dir "$work"
proxy=$PROXY_PID

cat >"$work/load.py" <<'PY'
import http.client, json, os, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
deadline = time.time() + float(sys.argv[2])
counts = {"ok": 0, "429/503": 0, "other": 0}
lock = threading.Lock()
gen = json.dumps({"contents": [{"parts": [{"text": "soak"}]}]})
chat = {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "soak"}]}
kinds = [
    ("POST", "/v1beta/models/gemini-2.5-flash:generateContent", {"x-goog-api-key": "soak"}, gen),
    ("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {"x-goog-api-key": "soak"}, gen),
    ("POST", "/v1/chat/completions", {"Authorization": "Bearer soak"}, json.dumps(chat)),
    ("POST", "/v1/chat/completions", {"Authorization": "Bearer soak"}, json.dumps(dict(chat, stream=True))),
    ("POST", "/v1beta/models/exhausted-model:generateContent", {"x-goog-api-key": "soak"}, gen),
    ("GET", "/v1beta/models", {"x-goog-api-key": "soak"}, None),
]
def run(i):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    n = i
    while time.time() < deadline:
        method, path, headers, body = kinds[n % len(kinds)]
        n += 1
        try:
            conn.request(method, path, body=body, headers=dict(headers, **{"content-type": "application/json"}))
            r = conn.getresponse(); r.read()
            key = "ok" if r.status == 200 else "429/503" if r.status in (429, 503) else "other"
        except Exception:
            conn.close(); conn = http.client.HTTPConnection(host, int(port), timeout=30); key = "other"
        with lock:
            counts[key] += 1
threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
PY
python3 "$work/load.py" "$ADDR" "$SOAK_SECONDS" >"$work/load.out" &
load=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$proxy/status"; }
threads() { awk '/Threads/ {print $2}' "/proc/$proxy/status"; }
start=$(date +%s)
warm=""
printf '%8s %10s %8s\n' "elapsed" "RSS KiB" "threads"
while kill -0 "$load" 2>/dev/null; do
  sleep 30
  kill -0 "$proxy" 2>/dev/null || { echo "the proxy died"; exit 1; }
  el=$(( $(date +%s) - start ))
  r=$(rss)
  printf '%7ss %10s %8s\n' "$el" "$r" "$(threads)"
  if [ -z "$warm" ] && [ "$el" -ge 60 ]; then warm=$r; fi
done
wait "$load"
end=$(rss)
echo "requests: $(cat "$work/load.out")"
if [ -n "$warm" ]; then
  awk -v w="$warm" -v e="$end" 'BEGIN { printf "RSS after warm-up %d KiB, at the end %d KiB: %+.1f%%\n", w, e, (e - w) * 100 / w }'
fi
errors=$(cat "$work"/gemini-key-manager.log* | grep -c ERROR || true)
echo "error lines in the proxy log: $errors"
