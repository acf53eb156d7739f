#!/usr/bin/env bash
# The static binary runs with nothing else in its root: build it, chroot into a directory that
# holds only the binary, a key file and room for its books, serve, answer a healthcheck from inside
# the same empty root, stop on SIGTERM with exit 0. Needs root (for chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-static.sh
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-musl/release/gemini-key-manager"
size=$(stat -c %s "$bin")

root=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$root"' EXIT
cp "$bin" "$root/gemini-key-manager"
printf 'AIzaSySTATICCHECK00000000000000000000001\n' >"$root/key.txt"
[ "$(find "$root" -mindepth 1 | wc -l)" -eq 2 ] || { echo "the root is not empty"; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot "$root" /gemini-key-manager --help >/dev/null
chroot "$root" /gemini-key-manager --host 127.0.0.1 --port "$port" --key-file /key.txt \
  --usage-file /usage.json --log-dir / --upstream http://127.0.0.1:9 2>"$root.err" &
pid=$!
ok=0
for _ in $(seq 100); do
  if chroot "$root" /gemini-key-manager healthcheck --port "$port" >/dev/null; then ok=1; break; fi
  sleep 0.1
done
[ $ok -eq 1 ] || { echo "FAILED: no healthy answer from the chrooted binary"; cat "$root.err"; exit 1; }
rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$pid/status")
kill -TERM "$pid"
wait "$pid"
status=$?
rm -f "$root.err"
[ $status -eq 0 ] || { echo "FAILED: exit status $status after SIGTERM"; exit 1; }
[ -s "$root/usage.json" ] || { echo "FAILED: no usage file written"; exit 1; }
echo "static binary ran in an empty root: healthcheck ok, SIGTERM exit 0, usage file written"
echo "size $size bytes, idle RSS $rss"
echo "static check: 1 passed, 0 failed"
