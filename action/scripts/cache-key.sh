#!/usr/bin/env bash
# Step 1: decide how the binary is installed and, when it is built from the action's own
# checkout, the cache key for that build (hashFiles() cannot read the action's directory, so the
# key is computed here from the sources that go into the binary).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version="${HP_VERSION:-build}"
root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# HEALTH_PREDICT_BINARY (environment, e.g. a self-hosted runner's preinstalled binary) and the
# binary input both skip installation; install.sh checks the file.
if [[ -n "${HEALTH_PREDICT_BINARY:-}" || -n "${HP_BINARY:-}" ]]; then
  set_output mode binary
  set_output build false
  exit 0
fi

if [[ "$version" == "build" ]]; then
  [[ -f "$root_dir/Cargo.lock" ]] || fail 2 "no Cargo.lock in $root_dir: use the action from a checkout of the health-predict repository, or set version to a release tag"
  hash="$(
    cd "$root_dir"
    find Cargo.toml Cargo.lock src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-32
  )"
  set_output mode build
  set_output build true
  set_output root "$HOME/.cache/health-predict-action"
  set_output key "health-predict-${RUNNER_OS:-Linux}-${RUNNER_ARCH:-X64}-$hash"
else
  set_output mode release
  set_output build false
fi
