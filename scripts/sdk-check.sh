#!/usr/bin/env bash
# Official SDKs as real clients: the scripted mock upstream (examples/mock_upstream.rs), the proxy
# in front of it, and the Python SDKs pointed at the proxy. Installs the SDKs if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import google.genai, openai' 2>/dev/null; then
  "$PY" -m pip install --quiet --disable-pip-version-check google-genai openai
fi

cargo build --quiet --bin gemini-key-manager --example mock_upstream
TARGET=${CARGO_TARGET_DIR:-target}
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

KEYS="AIzaSySDKCHECK000000000000000000000000A,AIzaSySDKCHECK000000000000000000000000B"
export STREAM_DELAY_MS=300
start_mock "$TARGET/debug" --keys "$KEYS" --delay-ms "$STREAM_DELAY_MS" --events 4
tr ',' '\n' <<<"$KEYS" >"$work/key.txt"
export CLIENT_TOKEN="sdk-check-token"
start_proxy "$TARGET/debug" "$work/proxy.err" --key-file "$work/key.txt" --usage-file "$work/usage.json" \
  --token "$CLIENT_TOKEN" --upstream "$MOCK" --log-dir "$work"
export PROXY_URL="http://$ADDR"

status=0
passed=0
failed=0
for check in tests/sdk/check_*.py; do
  if "$PY" "$check" | tee "$work/check.out"; then :; else status=1; failed=$((failed + 1)); fi
  passed=$((passed + $(grep -c '^ok ' "$work/check.out" || true)))
done
if grep -E 'AIzaSySDKCHECK|sdk-check-token' "$work/proxy.err" "$work"/gemini-key-manager.log; then
  echo "FAILED: a key or the client token appeared in the proxy's logs"; status=1
fi
echo "routes the SDKs used:"; grep -oE "INFO  (GET|POST|PUT|DELETE|PATCH) [^ ]+" "$work/proxy.err" | sort | uniq -c
[ $status -eq 0 ] || { echo "--- proxy log ---"; tail -50 "$work/proxy.err"; }
echo "SDK checks: $passed passed, $failed failed"
exit $status
