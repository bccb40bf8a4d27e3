#!/usr/bin/env bash
# Times the action's install steps (cache-key.sh + install.sh, as action.yml runs them) with
# `version: auto` against a release served from 127.0.0.1, i.e. what a runner spends when the
# download itself is fast. A benchmark, not a test: run it by hand with a release build.
#
#   benches/install_timing.sh [RUNS]
#
# Environment:
#   HEALTH_PREDICT_BIN  the binary to publish (default: $CARGO_TARGET_DIR/release/health-predict)
#
# The archive is built by scripts/release-archive.sh, as the release workflow does, and named
# for x86_64-unknown-linux-musl (the asset an X64 runner asks for). Where no musl toolchain is
# installed, it holds the host's glibc release build: the same size class, labelled so.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
bin="${HEALTH_PREDICT_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/health-predict}"
[[ -x "$bin" ]] || { echo "error: no release binary at $bin (set HEALTH_PREDICT_BIN, or cargo build --release)" >&2; exit 2; }
version="v$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' "$root/Cargo.toml")"
target=x86_64-unknown-linux-musl

work="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$root/scripts/release-archive.sh" --version "$version" --target "$target" --out "$work/www/$version" --binary "$bin" >/dev/null
for f in "$work/www/$version"/*; do printf '  %10d bytes  %s\n' "$(stat -c %s "$f")" "$(basename "$f")"; done

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/www" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 50); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/$version/SHA256SUMS" && break
  sleep 0.1
done

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
times=()
for i in $(seq "$runs"); do
  run="$work/run$i"
  mkdir -p "$run/temp"
  : >"$run/output"
  : >"$run/path"
  start=$(date +%s.%N)
  (
    export GITHUB_OUTPUT="$run/output" GITHUB_PATH="$run/path" RUNNER_TEMP="$run/temp" HOME="$run"
    export RUNNER_OS=Linux RUNNER_ARCH=X64 HEALTH_PREDICT_RELEASE_BASE_URL="http://127.0.0.1:$port"
    unset HEALTH_PREDICT_BINARY
    HP_VERSION=auto HP_ACTION_REF="$version" bash "$root/action/scripts/cache-key.sh" >/dev/null
    mode="$(awk -F'<<' '$1 == "mode" { getline; print; exit }' "$run/output")"
    resolved="$(awk -F'<<' '$1 == "version" { getline; print; exit }' "$run/output")"
    HP_MODE="$mode" HP_VERSION="$resolved" bash "$root/action/scripts/install.sh" >"$run/install.log"
  )
  end=$(date +%s.%N)
  t=$(echo "$end - $start" | bc)
  times+=("$t")
  printf 'run %d: %.2f s (%s)\n' "$i" "$t" "$(grep -o 'verified.*' "$run/install.log" | cut -c1-80)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median %.2f s, min %.2f s, max %.2f s over %d runs\n", a[int((NR + 1) / 2)], a[1], a[NR], NR }'
