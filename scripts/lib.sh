# Shared by demo.sh, soak.sh and sdk-check.sh (sourced, not run): a work directory removed on
# exit with every process started here, the example mock upstream, and the proxy.

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# start_mock BINDIR ARGS...: the mock upstream; sets MOCK to its URL.
start_mock() {
  local bindir=$1
  shift
  "$bindir/examples/mock_upstream" --port 0 "$@" >"$work/mock.out" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/mock.out" 2>/dev/null && break; sleep 0.1; done
  MOCK=$(grep -o 'http://[0-9.:]*' "$work/mock.out" | head -1)
  [ -n "$MOCK" ] || { echo "mock upstream did not start"; exit 1; }
}

# start_proxy BINDIR ADDRESS_SOURCE ARGS...: the proxy on 127.0.0.1, any free port, its stderr in
# PROXY_STDERR (default $work/proxy.err); sets PROXY_PID, and ADDR from the `listening on` line
# of ADDRESS_SOURCE (the stderr file or the log file).
start_proxy() {
  local bindir=$1 source=$2
  shift 2
  "$bindir/gemini-key-manager" --host 127.0.0.1 --port "${PROXY_PORT:-0}" "$@" 2>"${PROXY_STDERR:-$work/proxy.err}" &
  PROXY_PID=$!
  pids+=($PROXY_PID)
  for _ in $(seq 100); do grep -q 'listening on' "$source" 2>/dev/null && break; sleep 0.1; done
  ADDR=$(grep -o 'listening on [0-9.:]*' "$source" | head -1 | awk '{print $3}')
  [ -n "$ADDR" ] || { echo "the proxy did not start"; cat "$work/proxy.err" 2>/dev/null; exit 1; }
}
