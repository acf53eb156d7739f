#!/usr/bin/env bash
# See the product work in one command, with no Gemini key: a mock Gemini upstream, the proxy with
# three fake keys in front of it, native and OpenAI requests (a stream included), a per-day 429 on
# one key, then the usage table and the dashboard URL.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cargo build --quiet --release --bin gemini-key-manager --example mock_upstream
BIN=${CARGO_TARGET_DIR:-target}/release
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

K1=AIzaSyDEMOKEY000000000000000000000000001
K2=AIzaSyDEMOKEY000000000000000000000000002
K3=AIzaSyDEMOKEY000000000000000000000000003
start_mock "$BIN" --keys "$K1,$K2,$K3" --delay-ms 400 --events 4 --day-quota-exhausted "$K2"

printf '%s demo-project\n%s demo-project-2\n%s\n' "$K1" "$K2" "$K3" >"$work/key.txt"
TOKEN=demo-token
PROXY_PORT=${DEMO_PORT:-5000} start_proxy "$BIN" "$work/proxy.err" --token "$TOKEN" --upstream "$MOCK" \
  --key-file "$work/key.txt" --usage-file "$work/usage.json" --log-dir "$work"
URL="http://$ADDR"
echo "mock Gemini at $MOCK, proxy at $URL, client token '$TOKEN'"

say "native generateContent (three times: round-robin; key 2's daily quota is used up)"
for _ in 1 2 3; do
  curl -s "$URL/v1beta/models/gemini-2.5-flash:generateContent" -H "x-goog-api-key: $TOKEN" \
    -H 'content-type: application/json' -d '{"contents":[{"parts":[{"text":"Hello"}]}]}' |
    python3 -c 'import json,sys; print(" ", json.load(sys.stdin)["candidates"][0]["content"]["parts"][0]["text"])'
done

say "native stream (events arrive 400 ms apart, as the upstream sends them)"
curl -sN "$URL/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key=$TOKEN" \
  -H 'content-type: application/json' -d '{"contents":[{"parts":[{"text":"Count"}]}]}' |
  while IFS= read -r line; do
    line=${line%$'\r'}
    if [ -n "$line" ]; then printf '  %s %s\n' "$(date +%T.%N | cut -c1-12)" "${line:0:70}"; fi
  done

say "OpenAI chat completion"
curl -s "$URL/v1/chat/completions" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"Hello"}]}' |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(" ", r["choices"][0]["message"]["content"], r["usage"])'

say "OpenAI stream"
curl -sN "$URL/v1/chat/completions" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"model":"gemini-2.5-flash","stream":true,"messages":[{"role":"user","content":"Count"}]}' |
  while IFS= read -r line; do if [ -n "$line" ]; then printf '  %s\n' "${line:0:100}"; fi; done

say "what the pool learned (the proxy's log: one line per request, keys as fingerprints)"
grep -E 'INFO|WARN' "$work/proxy.err" | cut -c25- | sed 's/^/  /'

say "usage table (gemini-key-manager usage)"
sleep 1.2 # the usage file is written at most about a second after the last change
"$BIN/gemini-key-manager" usage --usage-file "$work/usage.json"

say "dashboard: $URL/dashboard   (user: anything, password: $TOKEN)"
echo "status:    curl -s $URL/status -H 'x-goog-api-key: $TOKEN'"
if [ -t 0 ]; then
  read -r -p "Press Enter to stop the demo. " _
fi
