#!/usr/bin/env bash
# Official SDKs as real clients: the scripted mock upstream (examples/mock_upstream.rs), the proxy
# in front of it, and the SDKs pointed at the proxy: google-genai (generation, and the 2026 resource
# surface: interactions, batches, file search stores, merged lists), openai and anthropic (Python),
# @anthropic-ai/sdk (Node), and Claude Code itself (`claude -p`, loopback only, telemetry and
# updates off); for the Responses API, the openai SDKs (Python and Node), the OpenAI Agents SDK and
# Codex CLI itself (`codex exec` with the proxy as a custom provider, wire_api = "responses", its own
# HOME and CODEX_HOME, no login, loopback only). The Live API: google-genai's `client.aio.live.connect`
# (Python) and @google/genai's `ai.live.connect` (Node) through a second proxy that listens with TLS
# (a throw-away CA made with openssl: the Python SDK always uses wss://) in front of the Live mock
# (examples/mock_live.rs). Installs the SDKs if they are missing (pip; npm into target/sdk-node).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import google.genai, openai, anthropic, agents' 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check google-genai openai anthropic openai-agents
fi
NODE_DIR=${SDK_NODE_DIR:-$PWD/target/sdk-node}
if ! [ -x "$NODE_DIR/node_modules/.bin/claude" ] || ! [ -d "$NODE_DIR/node_modules/@anthropic-ai/sdk" ] ||
  ! [ -x "$NODE_DIR/node_modules/.bin/codex" ] || ! [ -d "$NODE_DIR/node_modules/openai" ] ||
  ! grep -q '"version": "3\.' "$NODE_DIR/node_modules/@google/genai/package.json" 2>/dev/null; then
  mkdir -p "$NODE_DIR"
  # @google/genai 3.x: the Interactions family (2.x has none).
  (cd "$NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    npm install --silent --no-audit --no-fund @anthropic-ai/sdk @anthropic-ai/claude-code openai @openai/codex \
      '@google/genai@^3' >/dev/null)
fi
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

cargo build --quiet --bin gemini-key-manager --example mock_upstream --example mock_live
TARGET=${CARGO_TARGET_DIR:-target}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Three keys in two Cloud projects (A and B share sdk-p1): the mock keeps every resource in the
# project of the key that made it and refuses other projects' keys, as Google does; interactions
# take two hops (the SDK continues them itself).
KEYS="AIzaSySDKCHECK000000000000000000000000A,AIzaSySDKCHECK000000000000000000000000B,AIzaSySDKCHECK000000000000000000000000C"
IFS=, read -r KEY_A KEY_B KEY_C <<<"$KEYS"
export STREAM_DELAY_MS=300 INTERACTION_HOPS=2
start_mock "$TARGET/debug" --keys "$KEYS" --delay-ms "$STREAM_DELAY_MS" --events 4 \
  --projects "$KEY_A=sdk-p1,$KEY_B=sdk-p1,$KEY_C=sdk-p2" --hops "$INTERACTION_HOPS"
printf '%s sdk-p1\n%s sdk-p1\n%s sdk-p2\n' "$KEY_A" "$KEY_B" "$KEY_C" >"$work/key.txt"
export CLIENT_TOKEN="sdk-check-token"
start_proxy "$TARGET/debug" "$work/proxy.err" --key-file "$work/key.txt" --usage-file "$work/usage.json" \
  --token "$CLIENT_TOKEN" --upstream "$MOCK" --log-dir "$work" --model-alias 'claude-*=gemini-2.5-flash,gpt-*=gemini-2.5-flash' \
  --keepalive-secs 1
export PROXY_URL="http://$ADDR"

status=0
passed=0
failed=0
for check in tests/sdk/check_*.py; do
  if "$PY" "$check" | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
  passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))
done
# The Node SDKs, as ES modules resolved from the installed packages.
for check in tests/sdk/node/check_*.mjs; do
  cp "$check" "$NODE_DIR/"
  if node "$NODE_DIR/$(basename "$check")" | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
  passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))
done

# Codex CLI itself, non-interactive, with the proxy as a custom Responses provider. The mock calls
# the first tool offered (Codex runs it with arguments it refuses and sends the failure back: a
# second turn, which the mock answers only when the call's thought signature came back).
mkdir -p "$work/codex-home"
cat >"$work/codex-home/config.toml" <<TOML
model = "gpt-5-codex"
model_provider = "gkm"
check_for_update_on_startup = false
[model_providers.gkm]
name = "gemini-key-manager"
base_url = "$PROXY_URL/v1"
env_key = "GKM_CLIENT_TOKEN"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
[analytics]
enabled = false
[otel]
exporter = "none"
TOML
before=$(grep -c 'POST /v1/responses .*status=200' "$work/proxy.err" || true)
if codex_out=$(cd "$work" && HOME="$work/codex-home" CODEX_HOME="$work/codex-home" GKM_CLIENT_TOKEN="$CLIENT_TOKEN" \
  NO_PROXY='*' timeout 120 "$NODE_DIR/node_modules/.bin/codex" exec --skip-git-repo-check "Say hello" \
  </dev/null 2>"$work/codex.err") && grep -q "Hello from gemini-2.5-flash" <<<"$codex_out" &&
  turns=$(($(grep -c 'POST /v1/responses .*status=200' "$work/proxy.err" || true) - before)) && [ "$turns" -ge 2 ]; then
  echo "ok   codex codex exec answered through the proxy in $turns turns: $(head -c 120 <<<"$codex_out")"
  passed=$((passed + 1))
else
  echo "FAILED codex: $(head -c 400 <<<"${codex_out:-}") $(tail -c 800 "$work/codex.err")"
  status=1; failed=$((failed + 1))
fi

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
cp tests/sdk/live/check_live_genai.mjs "$NODE_DIR/check_live_genai.mjs"
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
