#!/usr/bin/env bash
# Official SDKs as real clients: the scripted mock upstream (examples/mock_upstream.rs), the proxy
# in front of it, and the SDKs pointed at the proxy: google-genai, openai and anthropic (Python),
# @anthropic-ai/sdk (Node), and Claude Code itself (`claude -p`, loopback only, telemetry and
# updates off). The Live API: google-genai's `client.aio.live.connect` (Python) and
# @google/genai's `ai.live.connect` (Node) through a second proxy that listens with TLS (a
# throw-away CA made with openssl: the Python SDK always uses wss://) in front of the Live mock
# (examples/mock_live.rs). Installs the SDKs if they are missing (pip; npm into target/sdk-node).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import google.genai, openai, anthropic' 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check google-genai openai anthropic
fi
NODE_DIR=${SDK_NODE_DIR:-$PWD/target/sdk-node}
if ! [ -x "$NODE_DIR/node_modules/.bin/claude" ] || ! [ -d "$NODE_DIR/node_modules/@anthropic-ai/sdk" ] ||
  ! [ -d "$NODE_DIR/node_modules/@google/genai" ]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --silent --no-audit --no-fund @anthropic-ai/sdk @anthropic-ai/claude-code @google/genai >/dev/null)
fi
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

cargo build --quiet --bin gemini-key-manager --example mock_upstream --example mock_live
TARGET=${CARGO_TARGET_DIR:-target}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

KEYS="AIzaSySDKCHECK000000000000000000000000A,AIzaSySDKCHECK000000000000000000000000B"
export STREAM_DELAY_MS=300
start_mock "$TARGET/debug" --keys "$KEYS" --delay-ms "$STREAM_DELAY_MS" --events 4
tr ',' '\n' <<<"$KEYS" >"$work/key.txt"
export CLIENT_TOKEN="sdk-check-token"
start_proxy "$TARGET/debug" "$work/proxy.err" --key-file "$work/key.txt" --usage-file "$work/usage.json" \
  --token "$CLIENT_TOKEN" --upstream "$MOCK" --log-dir "$work" --model-alias 'claude-*=gemini-2.5-flash' \
  --keepalive-secs 1
export PROXY_URL="http://$ADDR"

status=0
passed=0
failed=0
for check in tests/sdk/check_*.py; do
  if "$PY" "$check" | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
  passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))
done
# The Node SDK, as an ES module resolved from the installed packages.
cp tests/sdk/node/check_anthropic.mjs "$NODE_DIR/check_anthropic.mjs"
if node "$NODE_DIR/check_anthropic.mjs" | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))

# The Live API through a proxy that listens with TLS, in front of the Live mock (which accepts
# only the pool's keys: a session that works proves the SDK's token was replaced).
tests/fixtures/tls/gen.sh "$work"
"$TARGET/debug/examples/mock_live" --port 0 --keys "$KEYS" --pieces 4 --delay-ms 200 >"$work/mock-live.out" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/mock-live.out" 2>/dev/null && break; sleep 0.1; done
MOCK_LIVE=$(grep -o 'http://[0-9.:]*' "$work/mock-live.out" | head -1)
REST_ADDR=$ADDR
PROXY_STDERR="$work/live-proxy.err" start_proxy "$TARGET/debug" "$work/live-proxy.err" --key-file "$work/key.txt" \
  --usage-file "$work/live-usage.json" --token "$CLIENT_TOKEN" --upstream "$MOCK_LIVE" --log-dir "" \
  --tls-cert "$work/server.pem" --tls-key "$work/server.key"
ADDR=$REST_ADDR
export LIVE_PROXY_URL="https://$(grep -o 'listening on [0-9.:]*' "$work/live-proxy.err" | head -1 | awk '{print $3}')"
export LIVE_PIECES=4 LIVE_DELAY_MS=200
if SSL_CERT_FILE="$work/ca.pem" "$PY" tests/sdk/live/check_live_genai.py | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))
cp tests/sdk/node/check_live_genai.mjs "$NODE_DIR/check_live_genai.mjs"
if NODE_EXTRA_CA_CERTS="$work/ca.pem" node "$NODE_DIR/check_live_genai.mjs" | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))

# Claude Code itself, non-interactive, against the proxy (an aliased claude-* model, the mock's
# answer expected back). Its own home, no telemetry, no updates, no other traffic.
mkdir -p "$work/claude-home"
if claude_out=$(cd "$work" && HOME="$work/claude-home" ANTHROPIC_BASE_URL="$PROXY_URL" \
  ANTHROPIC_AUTH_TOKEN="$CLIENT_TOKEN" ANTHROPIC_MODEL=claude-sonnet-4-5 ANTHROPIC_SMALL_FAST_MODEL=claude-haiku-4-5 \
  DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
  timeout 120 "$NODE_DIR/node_modules/.bin/claude" -p "Say hello" --max-turns 3 </dev/null 2>"$work/claude.err") &&
  grep -q "gemini-2.5-flash" <<<"$claude_out"; then
  echo "ok   claude-code claude -p answered through the proxy: $(head -c 120 <<<"$claude_out")"
  passed=$((passed + 1))
else
  echo "FAILED claude-code: $(head -c 400 <<<"${claude_out:-}") $(tail -c 600 "$work/claude.err")"
  status=1; failed=$((failed + 1))
fi

if grep -E 'AIzaSySDKCHECK|sdk-check-token' "$work/proxy.err" "$work/live-proxy.err" "$work"/gemini-key-manager.log; then
  echo "FAILED: a key or the client token appeared in the proxy's logs"; status=1
fi
echo "routes the SDKs used:"; grep -hoE "INFO  (GET|POST|PUT|DELETE|PATCH) [^ ]+" "$work/proxy.err" "$work/live-proxy.err" | sort | uniq -c
echo "Live sessions:"; grep -h "surface=native status=101" "$work/live-proxy.err" || true
[ $status -eq 0 ] || { echo "--- proxy log ---"; tail -50 "$work/proxy.err"; }
echo "SDK checks: $passed passed, $failed failed"
exit $status
