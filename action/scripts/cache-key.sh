#!/usr/bin/env bash
# Step 1: decide how the binary is installed.
#   binary  - HEALTH_PREDICT_BINARY (environment) or the binary input: nothing to install;
#   release - a prebuilt archive of a release tag, verified before use (install.sh);
#   build   - `cargo install` from the action's own checkout, with the cache key for that build.
# version 'auto' (the default) means "the release this action's own ref belongs to": the ref
# (github.action_ref, passed as HP_ACTION_REF) is a release tag (v1.2.3), a major/minor tag that
# the release workflow moves (v1, v1.2), or a commit SHA; the version itself is read from the
# checkout's Cargo.toml, which at a release commit is that release. A branch or a local `./action`
# has no release: it builds, and says so.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

version="${HP_VERSION:-auto}"
root_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# HEALTH_PREDICT_BINARY (environment, e.g. a self-hosted runner's preinstalled binary) and the
# binary input both skip installation; install.sh checks the file.
if [[ -n "${HEALTH_PREDICT_BINARY:-}" || -n "${HP_BINARY:-}" ]]; then
  set_output mode binary
  set_output build false
  exit 0
fi

# The [package] version of the action's checkout, e.g. 1.2.3.
package_version() {
  [[ -f "$root_dir/Cargo.toml" ]] || return 0
  awk '/^\[/ { in_pkg = ($0 == "[package]") } in_pkg && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' "$root_dir/Cargo.toml"
}

if [[ "$version" == "auto" ]]; then
  ref="${HP_ACTION_REF:-}"
  if [[ -z "$ref" ]]; then
    # github.action_ref is not promised inside composite actions; a remote action's checkout
    # sits at RUNNER/_actions/OWNER/NAME/REF/action, so the ref can be read from the path.
    path="${GITHUB_ACTION_PATH:-$(dirname "$(dirname "${BASH_SOURCE[0]}")")}"
    if [[ "$path" =~ /_actions/[^/]+/[^/]+/([^/]+)/action/?$ ]]; then
      ref="${BASH_REMATCH[1]}"
    fi
  fi
  pkg="$(package_version)"
  case "$ref" in
    "")
      echo "::notice title=health-predict action::no action ref (a local './action' or a runner that does not pass it): building from source. Set version: vX.Y.Z to download a release instead."
      version=build
      ;;
    v[0-9]*)
      [[ -n "$pkg" ]] || fail 2 "cannot read the version from $root_dir/Cargo.toml: set version: vX.Y.Z or version: build"
      if [[ "$ref" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ && "$ref" != "v$pkg" ]]; then
        fail 2 "the action's ref $ref does not match its Cargo.toml version $pkg: set version: $ref (or build) explicitly"
      fi
      if [[ "v$pkg" != "$ref" && "v$pkg" != "$ref".* ]]; then
        fail 2 "the action's ref $ref is not a release line of its Cargo.toml version $pkg: set version: vX.Y.Z (or build) explicitly"
      fi
      version="v$pkg"
      ;;
    *)
      if [[ "$ref" =~ ^[0-9a-f]{40}$ ]]; then
        [[ -n "$pkg" ]] || fail 2 "cannot read the version from $root_dir/Cargo.toml: set version: vX.Y.Z or version: build"
        # Pinned by commit: the release of the checkout's version, accepted only if its archive
        # was built from this very commit (install.sh compares the archive's COMMIT file).
        version="v$pkg"
        set_output commit "$ref"
      else
        echo "::notice title=health-predict action::the action ref '$ref' is not a release tag: building from source. Use the action at a release tag (@v1) or set version: vX.Y.Z to download."
        version=build
      fi
      ;;
  esac
fi

if [[ "$version" == "build" ]]; then
  [[ -f "$root_dir/Cargo.lock" ]] || fail 2 "no Cargo.lock in $root_dir: use the action from a checkout of the health-predict repository, or set version to a release tag"
  # Everything compiled into the binary: the crate sources and the manifests include_str!'d
  # from k8s/ and kind-config/; plus the runner image (ImageOS: ubuntu22, ubuntu24: its glibc)
  # and the toolchain, which change the output.
  hash="$(
    cd "$root_dir"
    {
      inputs=()
      for p in Cargo.toml Cargo.lock src k8s kind-config build.rs rust-toolchain.toml rust-toolchain; do
        [[ -e "$p" ]] && inputs+=("$p")
      done
      find "${inputs[@]}" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
      echo "image ${ImageOS:-unknown}"
      echo "rustc $(rustc --version 2>/dev/null || echo none)"
    } | sha256sum | cut -c1-32
  )"
  set_output mode build
  set_output build true
  set_output version build
  set_output root "$HOME/.cache/health-predict-action"
  set_output key "health-predict-${RUNNER_OS:-Linux}-${RUNNER_ARCH:-X64}-${ImageOS:-unknown}-$hash"
else
  set_output mode release
  set_output build false
  set_output version "$version"
fi
