#!/usr/bin/env bash
# The test command: every Rust test (unit, integration against the scripted mock upstream,
# the real binary and its signals), then the official SDKs as clients (scripts/sdk-check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked
scripts/sdk-check.sh
