#!/usr/bin/env bash
# Step 2: put `health-predict` on PATH for the following steps:
#   HEALTH_PREDICT_BINARY (environment) - a preinstalled binary (self-hosted runners, tests):
#             used as is, whatever the mode; nothing is downloaded or built;
#   binary  - an already built binary (HP_BINARY), used as is;
#   build   - `cargo install --locked --path` from the action's checkout, skipped on a cache hit;
#   release - a pinned prebuilt download, verified against HP_SHA256 before use.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [[ -n "${HEALTH_PREDICT_BINARY:-}" ]]; then
  [[ -f "$HEALTH_PREDICT_BINARY" && -x "$HEALTH_PREDICT_BINARY" ]] ||
    fail 2 "HEALTH_PREDICT_BINARY='$HEALTH_PREDICT_BINARY' is not an executable file: point it at a built health-predict binary, or unset it to install one"
  if [[ -n "${HP_BINARY:-}" ]]; then
    echo "::notice title=health-predict action::HEALTH_PREDICT_BINARY is set: it is used instead of the binary input"
  fi
  HP_BINARY="$HEALTH_PREDICT_BINARY"
  mode=binary
  echo "health-predict: using HEALTH_PREDICT_BINARY=$HEALTH_PREDICT_BINARY (no download, no build)"
else
  mode="${HP_MODE:?HP_MODE is set by the cache-key step}"
fi

case "$mode" in
  binary)
    [[ -x "$HP_BINARY" ]] || fail 2 "binary input '$HP_BINARY' is not an executable file"
    bin_dir="$(cd "$(dirname "$HP_BINARY")" && pwd)"
    if [[ "$(basename "$HP_BINARY")" != "health-predict" ]]; then
      bin_dir="$(work_dir)/bin"
      mkdir -p "$bin_dir"
      ln -sf "$(cd "$(dirname "$HP_BINARY")" && pwd)/$(basename "$HP_BINARY")" "$bin_dir/health-predict"
    fi
    ;;
  build)
    install_root="${HP_ROOT:?HP_ROOT is set by the cache-key step}"
    bin_dir="$install_root/bin"
    if [[ "${HP_CACHE_HIT:-}" == "true" && -x "$bin_dir/health-predict" ]]; then
      echo "health-predict restored from cache"
    else
      command -v cargo >/dev/null || fail 5 "cargo is not installed on this runner: add a Rust toolchain step, or set version to a release tag"
      echo "::group::cargo install --locked --path $root_dir"
      cargo install --locked --path "$root_dir" --root "$install_root" --force
      echo "::endgroup::"
    fi
    ;;
  release)
    version="${HP_VERSION:?}"
    [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || fail 2 "version must be 'build' or a release tag like v1.2.3, got '$version'"
    [[ "${HP_SHA256:-}" =~ ^[0-9a-f]{64}$ ]] || fail 2 "a release download needs its sha256 input (64 hex digits) so the binary can be verified"
    repo="${HP_RELEASE_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-}}"
    [[ -n "$repo" ]] || fail 2 "cannot tell which repository publishes the release: set release-repository"
    case "${RUNNER_ARCH:-X64}" in
      X64) target=x86_64-unknown-linux-gnu ;;
      ARM64) target=aarch64-unknown-linux-gnu ;;
      *) fail 2 "no prebuilt binary for runner architecture ${RUNNER_ARCH:-}" ;;
    esac
    asset="health-predict-$version-$target.tar.gz"
    dir="$(work_dir)/release"
    mkdir -p "$dir"
    curl --fail --silent --show-error --location --proto '=https' --tlsv1.2 --retry 3 \
      -o "$dir/$asset" "${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download/$version/$asset"
    echo "$HP_SHA256  $dir/$asset" | sha256sum --check --strict - || fail 1 "$asset does not match the pinned sha256: refusing to run it"
    tar -xzf "$dir/$asset" -C "$dir"
    bin_dir="$dir"
    [[ -x "$bin_dir/health-predict" ]] || fail 1 "$asset has no health-predict binary at its top level"
    ;;
  *) fail 2 "unknown install mode '$mode'" ;;
esac

echo "$bin_dir" >>"$GITHUB_PATH"
"$bin_dir/health-predict" --version
set_output path "$bin_dir/health-predict"
