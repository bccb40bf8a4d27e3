#!/usr/bin/env bash
# Step 2: put `health-predict` on PATH for the following steps:
#   HEALTH_PREDICT_BINARY (environment) - a preinstalled binary (self-hosted runners, tests):
#             used as is, whatever the mode; nothing is downloaded or built;
#   binary  - an already built binary (HP_BINARY), used as is;
#   build   - `cargo install --locked --path` from the action's checkout, skipped on a cache hit;
#   release - the prebuilt archive health-predict-vX.Y.Z-TARGET.tar.gz of a release, verified
#             before it is unpacked: against HP_SHA256 when pinned, else against the release's
#             SHA256SUMS manifest. HEALTH_PREDICT_RELEASE_BASE_URL replaces
#             https://github.com/OWNER/NAME/releases/download (mirrors, GHES, tests).
# Exit codes: 2 bad input, 5 download failed (network, missing asset), 1 verification failed.
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

# download URL FILE WHAT: fetch with retries; a 404 and a network failure get their own advice.
download() {
  local url="$1" file="$2" what="$3" code
  local proto=(--proto '=https' --tlsv1.2)
  # Plain http only to this machine (a local mirror, the tests' release server).
  if [[ "$url" =~ ^http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?/ ]]; then
    proto=(--proto '=http,https')
  elif [[ ! "$url" =~ ^https:// ]]; then
    fail 2 "release URL $url is not https: set HEALTH_PREDICT_RELEASE_BASE_URL to an https:// mirror"
  fi
  code="$(curl --silent --show-error --location "${proto[@]}" --retry 3 --retry-connrefused \
    --connect-timeout 20 --max-time 300 --output "$file" --write-out '%{http_code}' "$url")" ||
    fail 5 "could not download $what from $url (network error above): check the runner's network or proxy, set HEALTH_PREDICT_RELEASE_BASE_URL to a reachable mirror, or set version: build to compile from source"
  case "$code" in
    200) ;;
    404) fail 5 "$what is not published at $url (HTTP 404): check that release $version exists and has an asset for $target, set version to a published release, or set version: build to compile from source" ;;
    *) fail 5 "downloading $what from $url answered HTTP $code: retry later, use a mirror (HEALTH_PREDICT_RELEASE_BASE_URL), or set version: build" ;;
  esac
}

case "$mode" in
  binary)
    [[ -f "$HP_BINARY" && -x "$HP_BINARY" ]] || fail 2 "binary input '$HP_BINARY' is not an executable file"
    bin_dir="$(cd "$(dirname "$HP_BINARY")" && pwd)"
    if [[ "$(basename "$HP_BINARY")" != "health-predict" || -n "${HEALTH_PREDICT_BINARY:-}" ]]; then
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
    version="${HP_VERSION:?HP_VERSION is set by the cache-key step}"
    [[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
      fail 2 "version must be auto, build or a release tag like v1.2.3, got '$version'"
    sha256="${HP_SHA256:-}"
    sha256="${sha256,,}"
    [[ -z "$sha256" || "$sha256" =~ ^[0-9a-f]{64}$ ]] ||
      fail 2 "sha256 must be 64 hex digits (the archive's SHA-256 from the release's SHA256SUMS), got '$sha256'"
    [[ "${RUNNER_OS:-Linux}" == "Linux" ]] ||
      fail 2 "prebuilt binaries are Linux only; this runner is ${RUNNER_OS}: set version: build to compile from source"
    case "${RUNNER_ARCH:-X64}" in
      X64) target=x86_64-unknown-linux-musl ;;
      ARM64) target=aarch64-unknown-linux-musl ;;
      *) fail 2 "no prebuilt binary for runner architecture '${RUNNER_ARCH}' (there are X64 and ARM64): set version: build to compile from source" ;;
    esac
    base="${HEALTH_PREDICT_RELEASE_BASE_URL:-}"
    if [[ -z "$base" ]]; then
      repo="${HP_RELEASE_REPOSITORY:-${HP_ACTION_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-}}}"
      [[ "$repo" =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] ||
        fail 2 "cannot tell which repository publishes the releases (got '$repo'): set release-repository: OWNER/NAME"
      base="${GITHUB_SERVER_URL:-https://github.com}/$repo/releases/download"
    fi
    base="${base%/}"
    asset="health-predict-$version-$target.tar.gz"
    dir="$(work_dir)/release"
    rm -rf "$dir"
    mkdir -p "$dir"
    started=$SECONDS
    download "$base/$version/$asset" "$dir/$asset" "$asset"
    if [[ -n "$sha256" ]]; then
      expected="$sha256"
      source_of_sum="the pinned sha256 input"
    else
      download "$base/$version/SHA256SUMS" "$dir/SHA256SUMS" "the checksum manifest SHA256SUMS"
      expected="$(awk -v a="$asset" '($2 == a || $2 == "*" a) { print $1 }' "$dir/SHA256SUMS")"
      [[ -n "$expected" ]] || fail 1 "release $version's SHA256SUMS has no line for $asset: refusing an unverified binary (pin sha256, or report the broken release)"
      [[ "$(printf '%s\n' "$expected" | wc -l)" -eq 1 && "$expected" =~ ^[0-9a-f]{64}$ ]] ||
        fail 1 "release $version's SHA256SUMS has a malformed or duplicate line for $asset: refusing an unverified binary"
      source_of_sum="the release's SHA256SUMS"
    fi
    actual="$(sha256sum "$dir/$asset" | cut -d' ' -f1)"
    [[ "$actual" == "$expected" ]] ||
      fail 1 "$asset does not match $source_of_sum (expected $expected, got $actual): refusing to run it. A corrupted or tampered download, or a wrong pin: re-run, check the release, or set version: build"
    echo "verified $asset against $source_of_sum (sha256 $actual)"
    tar -xzf "$dir/$asset" -C "$dir" --no-same-owner
    top="$dir/health-predict-$version-$target"
    [[ -f "$top/health-predict" && -x "$top/health-predict" ]] ||
      fail 1 "$asset has no executable health-predict-$version-$target/health-predict: not a health-predict release archive"
    if [[ -n "${HP_EXPECT_COMMIT:-}" ]]; then
      built_from="$(cat "$top/COMMIT" 2>/dev/null || true)"
      [[ "$built_from" == "$HP_EXPECT_COMMIT" ]] ||
        fail 2 "the action is pinned to commit $HP_EXPECT_COMMIT, but release $version was built from '${built_from:-an unknown commit}': pin the release's commit (or its tag), set version: $version to accept it, or set version: build to compile this commit"
    fi
    bin_dir="$dir/bin"
    mkdir -p "$bin_dir"
    mv "$top/health-predict" "$bin_dir/health-predict"
    echo "health-predict $version ($target) installed in $((SECONDS - started))s from $base"
    ;;
  *) fail 2 "unknown install mode '$mode'" ;;
esac

echo "$bin_dir" >>"$GITHUB_PATH"
"$bin_dir/health-predict" --version
set_output path "$bin_dir/health-predict"
