#!/usr/bin/env bash
# Build the static x86_64 musl binary (mimalloc as allocator, opt-level z) and print its size.
# Installs musl-tools and the Rust target when they are missing (Debian, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-musl
if ! command -v musl-gcc >/dev/null 2>&1; then
  (apt-get install -y -qq musl-tools >/dev/null 2>&1) || { apt-get update -qq && apt-get install -y -qq musl-tools; }
fi
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || rustup target add "$TARGET"
export CC_x86_64_unknown_linux_musl=musl-gcc
# mimalloc without eager arena commit: 47 MB instead of 400 MB resident at 100 concurrent streams.
export CFLAGS_x86_64_unknown_linux_musl="${CFLAGS_x86_64_unknown_linux_musl:-} -DMI_DEFAULT_ARENA_EAGER_COMMIT=0"
# Optimized for size: about 6 MB (5.96 MiB in December 2026). It was as fast as the opt-level 3 glibc build in
# scripts/bench.sh's saturating pass when measured first (18.2-18.8k vs 17.7-18.6k requests/s on the same 2-core
# machine); in December 2026's scale bench (scripts/bench/scale.py, 3 keys) it served 37.9k vs 45.3k (0.84).
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${CARGO_PROFILE_RELEASE_OPT_LEVEL:-z}
cargo build --release --locked --target "$TARGET" --bin gemini-key-manager
bin="${CARGO_TARGET_DIR:-target}/$TARGET/release/gemini-key-manager"
size=$(stat -c %s "$bin")
echo "static binary: $bin"
echo "size: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }'))"
if command -v file >/dev/null 2>&1; then file "$bin"; fi
