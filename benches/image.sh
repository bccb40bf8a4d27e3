#!/usr/bin/env bash
# The serving image: compressed and unpacked size, and container cold start (`run` to the first
# 200 on /ready) measured by `image test` with the runtime present (podman here, docker on
# GitHub's runners). Prints one line per run and the median.
#
# Usage: benches/image.sh [IMAGE_BINARY] [RUNS]
#   IMAGE_BINARY  the health-predict executable to put in the image
#                 [default: $CARGO_TARGET_DIR/release/health-predict]
#   RUNS          container starts to measure [default: 5]
# The tool itself is $HP [default: $CARGO_TARGET_DIR/debug/health-predict].
set -euo pipefail
target=${CARGO_TARGET_DIR:-target}
hp=${HP:-$target/debug/health-predict}
binary=${1:-$target/release/health-predict}
runs=${2:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$hp" data synth --rows 3000 --seed 1 --out "$tmp/data.csv" >/dev/null
"$hp" train --data "$tmp/data.csv" --trials 1 --out "$tmp/model.hpm" >/dev/null 2>&1
"$hp" --output json image build --binary "$binary" --model "$tmp/model.hpm" \
  --serve-arg=--model-version=1 --layout "$tmp/layout" > "$tmp/build.json"
jq -r '"image \(.digest): \(.compressed_bytes/1e6*10|round/10) MB compressed, \(.unpacked_bytes/1e6*10|round/10) MB unpacked, \(.layers) layer(s)"' "$tmp/build.json"
echo "binary $binary ($(stat -c %s "$binary") bytes); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq "$runs"); do
  "$hp" --output json image test --layout "$tmp/layout" --expect-version 1 \
    --latency-budget-ms 2000 --junit "$tmp/junit-$i.xml" 2>/dev/null > "$tmp/test-$i.json" || true
  jq -r --arg i "$i" '"run \($i): \(.runtime) ready in \(.cold_start_ms|round) ms, \(.passed) passed, \(.failed) failed"' "$tmp/test-$i.json"
done
jq -s 'map(.cold_start_ms) | sort | .[length/2|floor] | "median cold start \(round) ms"' -r "$tmp"/test-*.json
