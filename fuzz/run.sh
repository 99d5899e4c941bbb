#!/usr/bin/env bash
# Runs the `line` fuzz target for SECONDS (default 300) with cargo-fuzz on
# the nightly toolchain (libFuzzer needs it). Prints libFuzzer's summary.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
mkdir -p corpus/line
# Seed the corpus with the bad-input fixtures and a real record.
cp ../tests/fixtures/bad_input/*.bin corpus/line/ 2>/dev/null || true
printf '%s' '{"video_id":"abc123","success":false,"stage":"generating_notes","error":"API rate limit exceeded: 429","timings":{"fetch_transcript":5.2}}' > corpus/line/seed-record
cargo +nightly fuzz run line corpus/line -- -max_total_time="$secs" -max_len=65536 -timeout=10
