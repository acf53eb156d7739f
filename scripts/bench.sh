#!/usr/bin/env bash
# Loopback benchmark of gemini-key-manager against nginx.
#
#   scripts/bench.sh                 # BENCH_SECONDS=10 per wrk pass, about 5.5 minutes after the build
#   BENCH_SECONDS=5 scripts/bench.sh
#
# What it does (everything on 127.0.0.1, every process it starts is stopped on exit):
#   1. installs nginx-light, wrk, microsocks, python3 and curl with apt-get if one is missing (root, Debian), and builds
#      the proxy and the mock_upstream example in release mode (CARGO_TARGET_DIR is honoured);
#   2. starts nginx as a fake Gemini upstream (a fixed generateContent answer), nginx as a plain reverse
#      proxy to it (keepalive pool), and our proxy in front of the same upstream;
#   3. drives each with wrk: a saturating pass (-t2 -c32) and a light pass (-t1 -c4), --latency, in
#      BENCH_ROUNDS rounds (default 3) that take the targets in turn; the table shows each figure's median;
#   4. measures time to first event of a spaced-out SSE stream (mock_upstream, 200 ms between events),
#      direct vs through a second instance of our proxy (scripts/bench/ttfe.py);
#      and, interleaved with those, through the same proxy's OpenAI route (/v1/chat/completions, streamed);
#   5. 256 concurrent SSE streams (mock_upstream, 8 events 500 ms apart), direct vs through a third instance
#      of our proxy started with --workers 300 --queue-size 64, twice (cold: fresh instance; warm: right
#      after): time to first event, completeness, the proxy's RSS idle and with the streams open
#      (scripts/bench/streams.py);
#   6. throughput with --workers 1, 8 and 64 (--queue-size 256, fresh instances one at a time): one
#      saturating pass each against the nginx upstream;
#   6b. pool size: 3 and 3,000 keys with the info log on (one redacted line per request), saturating pass each;
#   7. the OpenAI, Anthropic and Responses routes (POST /v1/chat/completions, /v1/messages, /v1/responses, not streamed) through the first proxy, saturating and
#      light passes, each run right after the same pass on the native route for the ratio;
#   7b. resources on the generate path: a plain body, one naming an unknown file, one naming a cache made through
#      the proxy (pinned to its project), saturating and light passes in BENCH_ROUNDS rounds, for the cost of the
#      lookup; with BENCH_BASELINE_BIN, the plain pass through that (older) build as well; the plain pass
#      through an instance started with --tokens-file, the same token as a named client (booked per client,
#      under a budget): what booking per client costs the hot path; and the lookup's own CPU time per
#      request, alone (examples/bench_lookup.rs);
#   7c. a SOCKS5 hop (microsocks, a small C SOCKS5 server) between the proxy and the nginx upstream
#      (--upstream-proxy socks5://…, a fresh instance) against the direct first instance, saturating and light
#      passes in BENCH_ROUNDS rounds: what the hop costs in throughput, latency and CPU;
#   8. prints one table, the ratios against their goals, our proxy's RSS and the binary's size, then one
#      section each for 5, 6 and 7;
#   9. the Live API relay: a WebSocket session direct to the Live mock (examples/mock_live) vs through a
#      proxy instance, BENCH_LIVE_N exchanges of one frame each way (scripts/bench/live.py): the time a
#      session's relay adds per frame at p50/p90/p99 (goal: under 1 ms at p99) and the p99 ratio.
#  10. quota efficiency (SPEC §14, scripts/bench/quota.py): a mock pool of 4 projects with small per-minute and
#      per-day limits (examples/quota_mock.rs) under a client load above them for BENCH_QUOTA_SECONDS (default 180),
#      with and without learning; served, client 503s, upstream 429s, attempts per served request, and the goals
#      (served = capacity, 429s <= projects x windows, attempts per served <= 1.05). BENCH_QUOTA=0 skips it.
#  11. pool size (scripts/bench/scale.py): 3, 300 and 3,000 keys, the last on a 30-day usage history written before
#      it starts: throughput, RSS, disk bytes/s at 20 requests/s (/proc/PID/io), /status (full, ?summary, a page) and
#      dashboard and /metrics size and time, startup; and issue 19's goals. BENCH_SCALE=0 skips it.
#
# Environment: BENCH_SECONDS (per wrk pass, default 10), BENCH_ROUNDS (of the main table, default 3),
# BENCH_TTFE_N (default 30), BENCH_STREAMS (concurrent streams, default 256, at most 300), BENCH_KEEP_TMP=1
# keeps the temporary directory (configs, wrk outputs, logs), BENCH_BASELINE_BIN (an older build compared on the plain
# generate path in section 7b). Exit status 1 if any request failed (non-2xx, socket errors, wrong body, stream errors, a stream
# short of events).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/scripts/bench
PASS_SECONDS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
TTFE_N=${BENCH_TTFE_N:-30}
STREAMS_N=${BENCH_STREAMS:-256}
STREAM_EVENTS=8 STREAM_DELAY_MS=500
STREAM_WORKERS=300 STREAM_QUEUE=64
WORKER_COUNTS=(1 8 64) WORKERS_QUEUE=256
POOL_SIZES=(3 3000)
OPENAI_PATH=/v1/chat/completions
TOKEN=bench-token
KEYS=(AIzaSyBENCH0000000000000000000000000000A AIzaSyBENCH0000000000000000000000000000B
    AIzaSyBENCH0000000000000000000000000000C)
MODEL_PATH=/v1beta/models/gemini-2.5-flash:generateContent

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

[[ $PASS_SECONDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a positive integer, got '$PASS_SECONDS'"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "BENCH_ROUNDS must be a positive integer, got '$ROUNDS'"
[[ $TTFE_N =~ ^[1-9][0-9]*$ ]] || die "BENCH_TTFE_N must be a positive integer, got '$TTFE_N'"
[[ $STREAMS_N =~ ^[1-9][0-9]*$ ]] && ((STREAMS_N <= STREAM_WORKERS)) ||
    die "BENCH_STREAMS must be an integer from 1 to $STREAM_WORKERS, got '$STREAMS_N'"

# ---------------------------------------------------------------------------------------------------------
# 1. Tools and build.

find_nginx() {
    command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true
}

missing=()
[[ -n $(find_nginx) ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v microsocks >/dev/null || missing+=(microsocks)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing packages: ${missing[*]} (run as root to have them installed)"
    command -v apt-get >/dev/null || die "missing packages: ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
        # Newer Debian releases fold nginx-light into nginx.
        apt-get install -y --no-install-recommends "${missing[@]/nginx-light/nginx}"
    fi
fi
NGINX=$(find_nginx)
[[ -n $NGINX ]] || die "nginx not found after installation"
command -v cargo >/dev/null || die "cargo not found (install a Rust toolchain)"

log "building the proxy and the mock upstream (release)"
# One cargo invocation for both, so the two LTO links run side by side.
(cd "$ROOT" && cargo build --release --bins --example mock_upstream --example mock_live --example quota_mock \
    --example bench_lookup)
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
GKM=$TARGET_DIR/release/gemini-key-manager
MOCK=$TARGET_DIR/release/examples/mock_upstream
MOCK_LIVE=$TARGET_DIR/release/examples/mock_live
[[ -x $GKM && -x $MOCK && -x $MOCK_LIVE ]] || die "release binaries not found under $TARGET_DIR/release"

# ---------------------------------------------------------------------------------------------------------
# Processes and clean-up.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gkm-bench.XXXXXX")
PIDS=()

# reap PID: up to 5 s for a process already sent TERM to exit, then KILL; collects its status.
reap() {
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        reap "$pid"
    done
    if [[ ${BENCH_KEEP_TMP:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tool() { python3 "$HERE/tool.py" "$@"; }

# stop_pid PID: TERM, up to 5 s to exit, then KILL; the clean-up forgets it.
stop_pid() {
    local pid=$1 p rest=()
    kill -TERM "$pid" 2>/dev/null || true
    reap "$pid"
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || rest+=("$p")
    done
    PIDS=("${rest[@]}")
}

# status_kb PID FIELD: a kB or count field of /proc/PID/status (VmRSS, VmHWM, Threads), or '?'.
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo '?'; }

# wait_ready NAME PID LOG URL [CURL ARGS...]: polls URL (10 s at most) while PID lives.
wait_ready() {
    local name=$1 pid=$2 logfile=$3 url=$4 i
    shift 4
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited during startup"
        fi
        if curl -fsS -o /dev/null --max-time 1 "$@" "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$logfile" >&2 || true
    die "$name did not answer $url within 10 s"
}

mapfile -t PORTS < <(tool free-ports $((9 + ${#WORKER_COUNTS[@]} + ${#POOL_SIZES[@]})))
BASE_PORT=${PORTS[-1]}
NAMED_PORT=${PORTS[-2]}
SOCKS_PORT=${PORTS[-3]} GKM_SOCKS_PORT=${PORTS[-4]}
UP_PORT=${PORTS[0]} NGX_PORT=${PORTS[1]} GKM_PORT=${PORTS[2]} GKM2_PORT=${PORTS[3]} GKM3_PORT=${PORTS[4]}
WORKER_PORTS=("${PORTS[@]:5:${#WORKER_COUNTS[@]}}")
POOL_PORTS=("${PORTS[@]:$((5 + ${#WORKER_COUNTS[@]}))}")

# nginx's temporary directories, for the modules this nginx has, inside $WORK.
mkdir -p "$WORK/nginx-tmp"
: >"$WORK/temp_paths.conf"
for module in client-body proxy fastcgi scgi uwsgi; do
    if "$NGINX" -V 2>&1 | grep -q -- "--http-$module-temp-path"; then
        echo "${module//-/_}_temp_path $WORK/nginx-tmp/$module;" >>"$WORK/temp_paths.conf"
    fi
done

BODY=$(tr -d '\n' <"$HERE/response.json")
[[ $BODY != *[\'\\\$]* ]] || die "response.json must not contain quotes, backslashes or dollars (nginx string)"
printf '%s' "$BODY" >"$WORK/expected.json"

# ---------------------------------------------------------------------------------------------------------
# 2. Servers.

tool render "$HERE/upstream.conf.in" "$WORK/upstream.conf" "DIR=$WORK" "PORT=$UP_PORT" "BODY=$BODY"
tool render "$HERE/nginx-proxy.conf.in" "$WORK/nginx-proxy.conf" "DIR=$WORK" "PORT=$NGX_PORT" \
    "UPSTREAM_PORT=$UP_PORT" "KEY=${KEYS[0]}"

start_nginx() { # NAME
    "$NGINX" -p "$WORK" -e "$WORK/$1.error.log" -c "$WORK/$1.conf" >"$WORK/$1.out" 2>&1 &
    PIDS+=("$!")
}

log "starting nginx upstream on :$UP_PORT and nginx proxy on :$NGX_PORT (worker_processes auto)"
start_nginx upstream
UP_PID=${PIDS[-1]}
wait_ready "nginx upstream" "${PIDS[-1]}" "$WORK/upstream.error.log" \
    "http://127.0.0.1:$UP_PORT$MODEL_PATH" -X POST -d '{}'
start_nginx nginx-proxy
NGX_PID=${PIDS[-1]}
wait_ready "nginx proxy" "${PIDS[-1]}" "$WORK/nginx-proxy.error.log" \
    "http://127.0.0.1:$NGX_PORT$MODEL_PATH" -X POST -d '{}'

printf '%s\n' "${KEYS[@]}" >"$WORK/keys.txt"

GKM_NAMES=()
start_gkm() { # NAME PORT UPSTREAM_URL [MORE FLAGS...]
    "$GKM" --host 127.0.0.1 --port "$2" --upstream "$3" --key-file "$WORK/keys.txt" \
        --usage-file "$WORK/$1.usage.json" --token "$TOKEN" --log-dir '' --log-level warn "${@:4}" \
        >"$WORK/$1.stdout" 2>"$WORK/$1.stderr" &
    PIDS+=("$!")
    GKM_NAMES+=("$1")
    wait_ready "$1" "${PIDS[-1]}" "$WORK/$1.stderr" "http://127.0.0.1:$2/healthz"
}

log "starting gemini-key-manager on :$GKM_PORT (default 64 workers)"
start_gkm gkm "$GKM_PORT" "http://127.0.0.1:$UP_PORT"
GKM_PID=${PIDS[-1]}

declare -A URL=(
    [direct]="http://127.0.0.1:$UP_PORT$MODEL_PATH"
    [nginx-proxy]="http://127.0.0.1:$NGX_PORT$MODEL_PATH"
    [gkm-proxy]="http://127.0.0.1:$GKM_PORT$MODEL_PATH"
)
# The processes whose CPU time is charged to each target.
declare -A TARGET_PID=([direct]=$UP_PID [nginx-proxy]=$NGX_PID [gkm-proxy]=$GKM_PID)
# The wrk script of each target (generate.lua unless named here).
declare -A WRK_SCRIPT=()
TARGETS=(direct nginx-proxy gkm-proxy)
FAILURES=()

# check_native TARGET: one generateContent request through URL[TARGET]: 200 and the upstream's body byte
# for byte.
check_native() {
    local target=$1 status
    status=$(curl -sS --max-time 5 -o "$WORK/check-$target.json" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' -H "x-goog-api-key: $TOKEN" \
        -d '{"contents":[{"parts":[{"text":"hi"}]}]}' "${URL[$target]}") || status=curl-error
    if [[ $status != 200 ]]; then
        FAILURES+=("$target: sanity request answered $status: $(head -c 300 "$WORK/check-$target.json")")
    elif ! cmp -s "$WORK/expected.json" "$WORK/check-$target.json"; then
        FAILURES+=("$target: sanity request body differs from the upstream's")
    fi
}
for target in "${TARGETS[@]}"; do
    check_native "$target"
done

# ---------------------------------------------------------------------------------------------------------
# 3. wrk passes.

: >"$WORK/results"
RESULTS=$WORK/results # where run_wrk ... record appends its row
GKM_WRK_REQUESTS=0

run_wrk() { # PASS TARGET THREADS CONNECTIONS SECONDS [record]
    local pass=$1 target=$2 out="$WORK/wrk-$1-$2.txt" parsed cpu0 cpu1 cpu_us pids
    # A target's CPU may be several processes' (a proxy and its SOCKS server): space-separated pids.
    read -ra pids <<<"${TARGET_PID[$target]}"
    cpu0=$(tool cpu "${pids[@]}")
    wrk "-t$3" "-c$4" "-d$5s" --latency -s "$HERE/${WRK_SCRIPT[$target]:-generate.lua}" "${URL[$target]}" \
        >"$out" 2>&1 ||
        die "wrk failed against $target: $(cat "$out")"
    cpu1=$(tool cpu "${pids[@]}")
    parsed=$(tool wrk "$out")
    local non2xx sockerr total
    read -r _ _ _ non2xx sockerr total <<<"$parsed"
    if [[ $target == gkm-proxy ]]; then
        GKM_WRK_REQUESTS=$((GKM_WRK_REQUESTS + total))
    fi
    if ((non2xx > 0 || sockerr > 0)); then
        FAILURES+=("$pass/$target: $non2xx non-2xx responses, $sockerr socket errors (of $total requests)")
        log "!!! $pass/$target: $non2xx non-2xx responses, $sockerr socket errors; wrk said:"
        cat "$out" >&2
    fi
    cpu_us=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$total" 'BEGIN { printf "%.1f", n ? (b - a) * 1e6 / n : 0 }')
    if [[ ${6:-} == record ]]; then
        echo "$pass $target $4 $parsed $cpu_us" >>"$RESULTS"
        log "$pass $target: $parsed $cpu_us (req/s p50 p99 non2xx sockerr requests cpu-us/req)"
    fi
}

# Rounds: each target in turn, ROUNDS times, so that a slow moment of this shared machine hits every
# target alike; the report takes the median of the rounds.
for ((round = 1; round <= ROUNDS; round++)); do
    for target in "${TARGETS[@]}"; do
        log "saturating pass (-t2 -c32 -d${PASS_SECONDS}s) against $target, round $round of $ROUNDS," \
            "after a 1 s warm-up"
        run_wrk warmup "$target" 2 32 1
        run_wrk saturating "$target" 2 32 "$PASS_SECONDS" record
    done
done
for ((round = 1; round <= ROUNDS; round++)); do
    for target in "${TARGETS[@]}"; do
        log "light pass (-t1 -c4 -d${PASS_SECONDS}s) against $target, round $round of $ROUNDS"
        run_wrk light "$target" 1 4 "$PASS_SECONDS" record
    done
done

# Memory right after the load, before anything else touches it.
GKM_RSS=$(awk '/^VmRSS:/ {print $2}' "/proc/$GKM_PID/status" 2>/dev/null || echo '?')
GKM_HWM=$(awk '/^VmHWM:/ {print $2}' "/proc/$GKM_PID/status" 2>/dev/null || echo '?')
GKM_THREADS=$(awk '/^Threads:/ {print $2}' "/proc/$GKM_PID/status" 2>/dev/null || echo '?')
GKM_COUNTED=$(curl -fsS --max-time 5 -H "x-goog-api-key: $TOKEN" "http://127.0.0.1:$GKM_PORT/status" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["totals"]["requests"])' 2>/dev/null || echo '?')

# ---------------------------------------------------------------------------------------------------------
# 4. Time to first event of a spaced-out stream.

# start_mock NAME DELAY_MS EVENTS: starts mock_upstream on a free port; sets MOCK_PID and MOCK_PORT.
start_mock() {
    local i
    : >"$WORK/$1.out" # exists before the background job opens it: the poll below reads it at once
    "$MOCK" --port 0 --keys "$(
        IFS=,
        echo "${KEYS[*]}"
    )" --delay-ms "$2" --events "$3" >>"$WORK/$1.out" 2>"$WORK/$1.err" &
    PIDS+=("$!")
    MOCK_PID=${PIDS[-1]}
    MOCK_PORT=
    for ((i = 0; i < 100; i++)); do
        MOCK_PORT=$(sed -n 's#^mock upstream listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*#\1#p' "$WORK/$1.out")
        [[ -z $MOCK_PORT ]] || break
        kill -0 "$MOCK_PID" 2>/dev/null || die "mock_upstream exited: $(cat "$WORK/$1.err")"
        sleep 0.1
    done
    [[ -n $MOCK_PORT ]] || die "mock_upstream did not print its address within 10 s"
}

log "time to first event: mock upstream (200 ms between 3 events), direct vs through gemini-key-manager" \
    "(native and OpenAI routes, interleaved)"
start_mock mock 200 3
start_gkm gkm-stream "$GKM2_PORT" "http://127.0.0.1:$MOCK_PORT"
GKM2_PID=${PIDS[-1]}

if ! timeout 180 python3 "$HERE/ttfe.py" -n "$TTFE_N" --direct-port "$MOCK_PORT" --direct-key "${KEYS[0]}" \
    --proxy-port "$GKM2_PORT" --proxy-token "$TOKEN" --openai-port "$GKM2_PORT" \
    >"$WORK/ttfe.json" 2>"$WORK/ttfe.err"; then
    FAILURES+=("time to first event: $(cat "$WORK/ttfe.err")")
fi
stop_pid "$GKM2_PID"
stop_pid "$MOCK_PID"

# ---------------------------------------------------------------------------------------------------------
# 5. Many concurrent streams: STREAMS_N SSE streams at once, direct to a mock vs through a proxy instance
#    with room for all of them, twice through it: cold (its first requests: connection threads, upstream
#    connections and allocator heaps all new) and warm (the same again at once).

log "$STREAMS_N concurrent streams: mock upstream ($STREAM_DELAY_MS ms between $STREAM_EVENTS events)," \
    "direct vs through gemini-key-manager --workers $STREAM_WORKERS --queue-size $STREAM_QUEUE"
start_mock mock-streams "$STREAM_DELAY_MS" "$STREAM_EVENTS"
MOCK3_PID=$MOCK_PID MOCK3_PORT=$MOCK_PORT
start_gkm gkm-streams "$GKM3_PORT" "http://127.0.0.1:$MOCK3_PORT" \
    --workers "$STREAM_WORKERS" --queue-size "$STREAM_QUEUE"
GKM3_PID=${PIDS[-1]}
GKM3_IDLE_RSS=$(status_kb "$GKM3_PID" VmRSS)
GKM3_IDLE_THREADS=$(status_kb "$GKM3_PID" Threads)

# run_streams NAME PORT TOKEN [PID]: one streams.py run; its JSON in $WORK/streams-NAME.json.
run_streams() {
    local name=$1 port=$2 token=$3 pid=${4:-0}
    if ! timeout 120 python3 "$HERE/streams.py" -n "$STREAMS_N" --events "$STREAM_EVENTS" --port "$port" \
        --token "$token" --pid "$pid" >"$WORK/streams-$name.json" 2>"$WORK/streams-$name.err"; then
        FAILURES+=("$STREAMS_N streams, $name: $(head -c 600 "$WORK/streams-$name.err")")
        log "!!! $STREAMS_N streams, $name: $(head -c 600 "$WORK/streams-$name.err")"
    fi
    log "$STREAMS_N streams, $name: $(cat "$WORK/streams-$name.json" 2>/dev/null)"
}
run_streams direct "$MOCK3_PORT" "${KEYS[0]}"
run_streams gkm-proxy-cold "$GKM3_PORT" "$TOKEN" "$GKM3_PID"
run_streams gkm-proxy-warm "$GKM3_PORT" "$TOKEN" "$GKM3_PID"
GKM3_AFTER_RSS=$(status_kb "$GKM3_PID" VmRSS)
GKM3_AFTER_THREADS=$(status_kb "$GKM3_PID" Threads)
stop_pid "$GKM3_PID"
stop_pid "$MOCK3_PID"

# ---------------------------------------------------------------------------------------------------------
# 6. Throughput by number of workers: fresh instances one at a time, saturating pass against the nginx
#    upstream, a queue long enough that wrk's 32 connections never meet a 503.

: >"$WORK/results-workers"
RESULTS=$WORK/results-workers
for i in "${!WORKER_COUNTS[@]}"; do
    workers=${WORKER_COUNTS[$i]} target=gkm-w${WORKER_COUNTS[$i]}
    log "saturating pass (-t2 -c32 -d${PASS_SECONDS}s) against gemini-key-manager --workers $workers" \
        "--queue-size $WORKERS_QUEUE, after a 1 s warm-up"
    start_gkm "$target" "${WORKER_PORTS[$i]}" "http://127.0.0.1:$UP_PORT" \
        --workers "$workers" --queue-size "$WORKERS_QUEUE"
    TARGET_PID[$target]=${PIDS[-1]}
    URL[$target]="http://127.0.0.1:${WORKER_PORTS[$i]}$MODEL_PATH"
    check_native "$target"
    run_wrk warmup "$target" 2 32 1
    run_wrk saturating "$target" 2 32 "$PASS_SECONDS" record
    stop_pid "${TARGET_PID[$target]}"
done

# ---------------------------------------------------------------------------------------------------------
# 6b. Pool size: 3 and 3,000 keys, each a fresh instance with the info log on (one line per request to a
#     file, every line through the redactor, which holds every key), saturating pass against the upstream.

: >"$WORK/results-pool"
RESULTS=$WORK/results-pool
for i in "${!POOL_SIZES[@]}"; do
    size=${POOL_SIZES[$i]} target=gkm-keys${POOL_SIZES[$i]}
    {
        printf '%s\n' "${KEYS[@]}"
        for ((k = ${#KEYS[@]}; k < size; k++)); do printf 'AIzaSyBENCHPOOL%024d\n' "$k"; done
    } >"$WORK/keys-$size.txt"
    mkdir -p "$WORK/log-$target"
    log "saturating pass (-t2 -c32 -d${PASS_SECONDS}s) against gemini-key-manager with $size keys," \
        "--log-level info to a file, after a 1 s warm-up"
    start_gkm "$target" "${POOL_PORTS[$i]}" "http://127.0.0.1:$UP_PORT" --key-file "$WORK/keys-$size.txt" \
        --log-level info --log-dir "$WORK/log-$target"
    TARGET_PID[$target]=${PIDS[-1]}
    URL[$target]="http://127.0.0.1:${POOL_PORTS[$i]}$MODEL_PATH"
    check_native "$target"
    run_wrk warmup "$target" 2 32 1
    run_wrk saturating "$target" 2 32 "$PASS_SECONDS" record
    stop_pid "${TARGET_PID[$target]}"
done

# ---------------------------------------------------------------------------------------------------------
# 7. The OpenAI route through the first proxy instance (64 workers, default queue), each pass right after
#    the same pass on the native route so that both see the same machine.

URL[gkm-openai]="http://127.0.0.1:$GKM_PORT$OPENAI_PATH"
URL[gkm-anthropic]="http://127.0.0.1:$GKM_PORT/v1/messages"
TARGET_PID[gkm-anthropic]=$GKM_PID
WRK_SCRIPT[gkm-anthropic]=generate-anthropic.lua
URL[gkm-responses]="http://127.0.0.1:$GKM_PORT/v1/responses"
TARGET_PID[gkm-responses]=$GKM_PID
WRK_SCRIPT[gkm-responses]=generate-responses.lua
URL[gkm-native]=${URL[gkm-proxy]}
TARGET_PID[gkm-openai]=$GKM_PID TARGET_PID[gkm-native]=$GKM_PID
WRK_SCRIPT[gkm-openai]=generate-openai.lua

# One chat completion: 200 and the upstream's text in OpenAI's shape.
status=$(curl -sS --max-time 5 -o "$WORK/check-gkm-openai.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    -d '{"model":"gemini-2.5-flash","messages":[{"role":"user","content":"hi"}]}' "${URL[gkm-openai]}") ||
    status=curl-error
if [[ $status != 200 ]]; then
    FAILURES+=("gkm-openai: sanity request answered $status: $(head -c 300 "$WORK/check-gkm-openai.json")")
elif ! problem=$(tool check-openai "$WORK/check-gkm-openai.json" "$WORK/expected.json" 2>&1); then
    FAILURES+=("gkm-openai: sanity request: $problem")
fi

# One message: 200 and the upstream's text in Anthropic's shape.
status=$(curl -sS --max-time 5 -o "$WORK/check-gkm-anthropic.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "x-api-key: $TOKEN" \
    -d '{"model":"gemini-2.5-flash","max_tokens":256,"messages":[{"role":"user","content":"hi"}]}' \
    "${URL[gkm-anthropic]}") || status=curl-error
if [[ $status != 200 ]]; then
    FAILURES+=("gkm-anthropic: sanity request answered $status: $(head -c 300 "$WORK/check-gkm-anthropic.json")")
elif ! problem=$(tool check-anthropic "$WORK/check-gkm-anthropic.json" "$WORK/expected.json" 2>&1); then
    FAILURES+=("gkm-anthropic: sanity request: $problem")
fi

# One response: 200 and the upstream's text in the Responses shape.
status=$(curl -sS --max-time 5 -o "$WORK/check-gkm-responses.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $TOKEN" \
    -d '{"model":"gemini-2.5-flash","input":"hi","store":false}' "${URL[gkm-responses]}") || status=curl-error
if [[ $status != 200 ]]; then
    FAILURES+=("gkm-responses: sanity request answered $status: $(head -c 300 "$WORK/check-gkm-responses.json")")
elif ! problem=$(tool check-responses "$WORK/check-gkm-responses.json" "$WORK/expected.json" 2>&1); then
    FAILURES+=("gkm-responses: sanity request: $problem")
fi

: >"$WORK/results-openai"
RESULTS=$WORK/results-openai
log "saturating passes (-t2 -c32 -d${PASS_SECONDS}s), native then OpenAI route, after a 1 s warm-up each"
run_wrk warmup gkm-native 2 32 1
run_wrk saturating gkm-native 2 32 "$PASS_SECONDS" record
run_wrk warmup gkm-openai 2 32 1
run_wrk saturating gkm-openai 2 32 "$PASS_SECONDS" record
run_wrk warmup gkm-anthropic 2 32 1
run_wrk saturating gkm-anthropic 2 32 "$PASS_SECONDS" record
run_wrk warmup gkm-responses 2 32 1
run_wrk saturating gkm-responses 2 32 "$PASS_SECONDS" record
log "light passes (-t1 -c4 -d${PASS_SECONDS}s), native then OpenAI, Anthropic and Responses routes"
run_wrk light gkm-native 1 4 "$PASS_SECONDS" record
run_wrk light gkm-openai 1 4 "$PASS_SECONDS" record
run_wrk light gkm-anthropic 1 4 "$PASS_SECONDS" record
run_wrk light gkm-responses 1 4 "$PASS_SECONDS" record

# ---------------------------------------------------------------------------------------------------------
# 7b. Resources on the generate path (SPEC §5), through the first proxy instance: a plain body, a body naming a
#     file the proxy has never seen (searched and looked up: a miss), and one naming a cache made through the
#     proxy (a hit: served by a key of the cache's project); each pass right after the plain one.

URL[gkm-fileref]=${URL[gkm-proxy]} URL[gkm-pinned]=${URL[gkm-proxy]}
TARGET_PID[gkm-fileref]=$GKM_PID TARGET_PID[gkm-pinned]=$GKM_PID
WRK_SCRIPT[gkm-fileref]=generate-fileref.lua WRK_SCRIPT[gkm-pinned]=generate-pinned.lua
status=$(curl -sS --max-time 5 -o "$WORK/check-cache.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "x-goog-api-key: $TOKEN" -d '{"model":"models/gemini-2.5-flash"}' \
    "http://127.0.0.1:$GKM_PORT/v1beta/cachedContents") || status=curl-error
[[ $status == 200 ]] || FAILURES+=("cache create through gkm-proxy answered $status")
: >"$WORK/results-resources"
RESULTS=$WORK/results-resources
RESOURCE_TARGETS=(gkm-native gkm-fileref gkm-pinned)
# BENCH_BASELINE_BIN=path/to/an/older/gemini-key-manager: the same plain pass through that build too, for
# what a change costs the plain path (started like the first instance, same upstream, same machine).
if [[ -n ${BENCH_BASELINE_BIN:-} ]]; then
    log "starting the baseline build $BENCH_BASELINE_BIN on :$BASE_PORT"
    GKM_THIS=$GKM GKM=$BENCH_BASELINE_BIN
    start_gkm gkm-baseline "$BASE_PORT" "http://127.0.0.1:$UP_PORT"
    GKM=$GKM_THIS
    TARGET_PID[gkm-baseline]=${PIDS[-1]}
    URL[gkm-baseline]="http://127.0.0.1:$BASE_PORT$MODEL_PATH"
    check_native gkm-baseline
    RESOURCE_TARGETS+=(gkm-baseline)
fi
# Booking per client (SPEC §13): the same plain pass with the token as a named client's, on an instance of
# its own (same flags, plus --tokens-file; the budget never binds).
printf '# bench\nbench %s rpd=1000000000 tpd=1000000000000 models=gemini-*\n' "$TOKEN" >"$WORK/tokens.txt"
log "starting gemini-key-manager with a named client on :$NAMED_PORT"
start_gkm gkm-named "$NAMED_PORT" "http://127.0.0.1:$UP_PORT" --tokens-file "$WORK/tokens.txt"
TARGET_PID[gkm-named]=${PIDS[-1]}
URL[gkm-named]="http://127.0.0.1:$NAMED_PORT$MODEL_PATH"
check_native gkm-named
RESOURCE_TARGETS+=(gkm-named)
log "saturating and light passes: plain generate, then a body naming an unknown file, then a pinned cache"
for ((round = 1; round <= ROUNDS; round++)); do
    for pass in saturating light; do
        threads=2 conns=32
        [[ $pass == light ]] && threads=1 conns=4
        for target in "${RESOURCE_TARGETS[@]}"; do
            run_wrk warmup "$target" "$threads" "$conns" 1
            run_wrk "$pass" "$target" "$threads" "$conns" "$PASS_SECONDS" record
        done
    done
done

# ---------------------------------------------------------------------------------------------------------
# 7c. A SOCKS5 hop (SPEC §15): microsocks between a fresh proxy instance and the nginx upstream, each pass
#     right after the same pass through the first (direct) instance.

log "starting microsocks on :$SOCKS_PORT and gemini-key-manager --upstream-proxy socks5://127.0.0.1:$SOCKS_PORT"
microsocks -i 127.0.0.1 -p "$SOCKS_PORT" >"$WORK/microsocks.out" 2>&1 &
PIDS+=("$!")
SOCKS_PID=${PIDS[-1]}
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$SOCKS_PORT") 2>/dev/null && break
    sleep 0.1
done
start_gkm gkm-socks "$GKM_SOCKS_PORT" "http://127.0.0.1:$UP_PORT" \
    --upstream-proxy "socks5://127.0.0.1:$SOCKS_PORT"
# The hop's CPU is charged to the proxy and the SOCKS server together.
TARGET_PID[gkm-socks]="${PIDS[-1]} $SOCKS_PID"
URL[gkm-socks]="http://127.0.0.1:$GKM_SOCKS_PORT$MODEL_PATH"
check_native gkm-socks
: >"$WORK/results-socks"
RESULTS=$WORK/results-socks
log "saturating and light passes: direct first instance, then through the SOCKS5 hop"
for ((round = 1; round <= ROUNDS; round++)); do
    for pass in saturating light; do
        threads=2 conns=32
        [[ $pass == light ]] && threads=1 conns=4
        for target in gkm-native gkm-socks; do
            run_wrk warmup "$target" "$threads" "$conns" 1
            run_wrk "$pass" "$target" "$threads" "$conns" "$PASS_SECONDS" record
        done
    done
done
GKM_SOCKS_COUNTED=$(curl -fsS --max-time 5 -H "x-goog-api-key: $TOKEN" "http://127.0.0.1:$GKM_SOCKS_PORT/status" |
    python3 -c 'import json, sys; d = json.load(sys.stdin); print(d["totals"]["requests"], d["keys"][0]["egress"])' \
    2>/dev/null || echo '?')

# ---------------------------------------------------------------------------------------------------------
# 8. Report.

# Anything our proxies said at warn level or above, and nginx's own complaints.
for name in "${GKM_NAMES[@]}"; do
    # (the pool-size instances log every request at info: only what is above it is shown)
    if grep -qv -e ' INFO ' "$WORK/$name.stderr" 2>/dev/null; then
        log "$name stderr ($(grep -cv -e ' INFO ' "$WORK/$name.stderr") lines above info), first 20:"
        grep -v -e ' INFO ' "$WORK/$name.stderr" | head -n 20 >&2
    fi
done
for name in upstream nginx-proxy; do
    if grep -qE '\[(error|crit|alert|emerg)\]' "$WORK/$name.error.log" 2>/dev/null; then
        log "$name error log:"
        grep -E '\[(error|crit|alert|emerg)\]' "$WORK/$name.error.log" | head -n 20 >&2
    fi
done

BIN_SIZE=$(stat -c %s "$GKM")
echo
echo "gemini-key-manager loopback benchmark: $(nproc) CPUs, wrk -d${PASS_SECONDS}s --latency;" \
    "saturating = -t2 -c32, light = -t1 -c4"
echo "upstream and nginx-proxy: nginx $("$NGINX" -v 2>&1 | sed 's#.*nginx/##'), worker_processes auto" \
    "($(nproc) workers each), keepalive 64 to the upstream; gkm-proxy: 64 worker threads (default)"
echo
tool report "$WORK/results" "$WORK/ttfe.json"
echo "gkm-proxy after the run: VmRSS $GKM_RSS kB, peak VmHWM $GKM_HWM kB, $GKM_THREADS threads;" \
    "binary $GKM: $BIN_SIZE bytes ($((BIN_SIZE / 1024)) KiB)"
echo "gkm-proxy counted $GKM_COUNTED upstream successes; wrk completed $GKM_WRK_REQUESTS requests" \
    "through it (+1 sanity request; requests cut off at the end of a pass are counted by the proxy only)"

echo
echo "$STREAMS_N concurrent SSE streams: mock_upstream --delay-ms $STREAM_DELAY_MS --events $STREAM_EVENTS;" \
    "gkm-proxy: --workers $STREAM_WORKERS --queue-size $STREAM_QUEUE (a fresh instance)"
tool report-streams "$GKM3_IDLE_RSS" "$GKM3_IDLE_THREADS" "$GKM3_AFTER_RSS" "$GKM3_AFTER_THREADS" \
    direct="$WORK/streams-direct.json" gkm-proxy-cold="$WORK/streams-gkm-proxy-cold.json" \
    gkm-proxy-warm="$WORK/streams-gkm-proxy-warm.json"

echo
echo "throughput by worker count: saturating pass (-t2 -c32 -d${PASS_SECONDS}s) through gkm-proxy" \
    "--workers N --queue-size $WORKERS_QUEUE (a fresh instance each) to the nginx upstream"
tool report-workers "$WORK/results-workers"

echo
echo "pool size: saturating pass (-t2 -c32 -d${PASS_SECONDS}s) through gkm-proxy with N keys and --log-level info" \
    "(a log line per request through the redactor of every key; a fresh instance each)"
tool report-workers "$WORK/results-pool"

echo
echo "OpenAI, Anthropic and Responses routes: POST $OPENAI_PATH (Bearer), /v1/messages (x-api-key) and /v1/responses (Bearer), not streamed, vs the native $MODEL_PATH," \
    "through the first gkm-proxy instance, each pass right after the same pass on the native route"
tool report-openai "$WORK/results-openai" "$WORK/ttfe.json"

echo
echo "resources on the generate path: plain body, a body naming an unknown file (lookup miss), a body naming a" \
    "cache made through the proxy (lookup hit, pinned to its project); through the first gkm-proxy instance"
tool report-resources "$WORK/results-resources"
"$TARGET_DIR/release/examples/bench_lookup" || FAILURES+=("bench_lookup")

echo
echo "a SOCKS5 hop: gkm-socks = a fresh instance with --upstream-proxy socks5:// (microsocks on loopback) to the" \
    "nginx upstream, vs the first (direct) instance; cpu counts the proxy and microsocks together" \
    "(status of gkm-socks: requests, egress = $GKM_SOCKS_COUNTED)"
tool report-socks "$WORK/results-socks"

# ---------------------------------------------------------------------------------------------------------
# 9. The Live API relay (last: it needs nothing from the sections above).
LIVE_N=${BENCH_LIVE_N:-2000}
log "Live relay: $LIVE_N exchanges direct and through the proxy"
"$MOCK_LIVE" --port 0 --keys "${KEYS[0]}" --pieces 1 --delay-ms 0 >"$WORK/mock-live.out" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$WORK/mock-live.out" 2>/dev/null && break; sleep 0.1; done
LIVE_UP=$(grep -o '127.0.0.1:[0-9]*' "$WORK/mock-live.out" | head -1)
printf '%s\n' "${KEYS[0]}" >"$WORK/live-keys.txt"
"$GKM" --host 127.0.0.1 --port 0 --key-file "$WORK/live-keys.txt" --usage-file "$WORK/live-usage.json" \
    --token "$TOKEN" --upstream "http://$LIVE_UP" --log-dir "" 2>"$WORK/live-proxy.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'listening on' "$WORK/live-proxy.err" 2>/dev/null && break; sleep 0.1; done
LIVE_PROXY=$(grep -o 'listening on [0-9.:]*' "$WORK/live-proxy.err" | head -1 | awk '{print $3}')
LIVE_PATH=/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent
echo
echo "Live API relay: one WebSocket session each, $LIVE_N exchanges (a turn up, its one-frame echo down), best of 3 interleaved rounds"
python3 "$HERE/live.py" "ws://$LIVE_UP$LIVE_PATH" "ws://$LIVE_PROXY$LIVE_PATH" "${KEYS[0]}" "$TOKEN" "$LIVE_N" \
    "$WORK/live.json" || FAILURES+=("Live relay bench")

# ---------------------------------------------------------------------------------------------------------
# 10. Quota efficiency.
if [[ ${BENCH_QUOTA:-1} != 0 ]]; then
    echo
    log "quota efficiency: two runs of ${BENCH_QUOTA_SECONDS:-180} s"
    python3 "$HERE/quota.py" --gkm "$GKM" --mock "$TARGET_DIR/release/examples/quota_mock" \
        --seconds "${BENCH_QUOTA_SECONDS:-180}" --json "$WORK/quota.json" ||
        FAILURES+=("quota efficiency: a goal was missed (see the table above)")
fi

# ---------------------------------------------------------------------------------------------------------
# 11. Pool size (issue 19, scripts/bench/scale.py): 3, 300 and 3,000 keys (the last on a 30-day history):
#     throughput, RSS, disk bytes written per second at 20 requests/s, /status, dashboard and /metrics size and time,
#     startup. BENCH_SCALE=0 skips it.
if [[ ${BENCH_SCALE:-1} != 0 ]]; then
    echo
    log "pool size: 3, 300 and 3,000 keys"
    python3 "$HERE/scale.py" "$GKM" "$NGINX" "$WORK/scale" "$PASS_SECONDS" ||
        FAILURES+=("pool size: requests failed (see the section above)")
fi

if ((${#FAILURES[@]})); then
    echo
    echo "FAILURES:"
    printf '  %s\n' "${FAILURES[@]}"
    exit 1
fi
