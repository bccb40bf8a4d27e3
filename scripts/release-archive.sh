#!/usr/bin/env bash
# Builds one release archive the way .github/workflows/release.yml does, here or on a runner:
#
#   scripts/release-archive.sh --version v1.2.3 --target x86_64-unknown-linux-musl --out dist
#                              [--binary PATH] [--commit SHA]
#
# - builds `cargo build --release --locked --target TARGET` (or takes --binary, already built
#   for TARGET: the tests pass the debug binary, as building release there is too slow);
# - writes OUT/health-predict-VERSION-TARGET.tar.gz holding one directory of the same name with
#   health-predict, LICENSE, README.md, CHANGELOG.md and COMMIT (the source commit, which the
#   action checks when it is pinned by SHA);
# - the archive is reproducible: sorted names, owner 0, mtime = the commit's time (or
#   SOURCE_DATE_EPOCH), gzip without a timestamp;
# - adds or replaces the archive's line in OUT/SHA256SUMS (`sha256sum` format, sorted).
# The version must be the Cargo.toml [package] version with a `v`: a tag that does not match
# the crate would publish a binary that reports another version.
set -euo pipefail
caller="$(pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$(pwd)"

die() {
  echo "release-archive: $*" >&2
  exit 2
}

version="" target="" out="" binary="" commit=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --version) version="${2:-}"; shift 2 ;;
    --target) target="${2:-}"; shift 2 ;;
    --out) out="${2:-}"; shift 2 ;;
    --binary) binary="${2:-}"; shift 2 ;;
    --commit) commit="${2:-}"; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n "$version" && -n "$target" && -n "$out" ]] || die "--version, --target and --out are required (see --help)"
# Paths are the caller's, not the repository root's.
[[ "$out" == /* ]] || out="$caller/$out"
[[ -z "$binary" || "$binary" == /* ]] || binary="$caller/$binary"
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "--version must look like v1.2.3, got '$version'"
[[ "$target" =~ ^[a-z0-9_]+-[a-z0-9_]+-[a-z0-9_]+(-[a-z0-9_]+)?$ ]] || die "--target must be a target triple, got '$target'"

crate_version="$(awk '/^\[/ { in_pkg = ($0 == "[package]") } in_pkg && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' Cargo.toml)"
[[ "$version" == "v$crate_version" ]] || die "--version $version does not match Cargo.toml's version $crate_version: bump Cargo.toml (and CHANGELOG.md) before tagging"
grep -q "^## \[${crate_version}\]" CHANGELOG.md || die "CHANGELOG.md has no '## [$crate_version]' section: write the release notes before tagging"

if [[ -z "$commit" ]]; then
  commit="$(git rev-parse HEAD 2>/dev/null)" || die "not a git checkout: pass --commit SHA"
fi
[[ "$commit" =~ ^[0-9a-f]{40}$ ]] || die "--commit must be a full 40-hex commit SHA, got '$commit'"
epoch="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct "$commit" 2>/dev/null || echo 0)}"

if [[ -z "$binary" ]]; then
  echo "release-archive: cargo build --release --locked --target $target" >&2
  cargo build --release --locked --target "$target" --bin health-predict
  binary="${CARGO_TARGET_DIR:-$root/target}/$target/release/health-predict"
fi
[[ -f "$binary" && -x "$binary" ]] || die "binary '$binary' is not an executable file"

name="health-predict-$version-$target"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/$name"
install -m 0755 "$binary" "$stage/$name/health-predict"
install -m 0644 LICENSE README.md CHANGELOG.md "$stage/$name/"
printf '%s\n' "$commit" >"$stage/$name/COMMIT"
chmod 0644 "$stage/$name/COMMIT"

archive="$name.tar.gz"
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -cf - "$name" | gzip -9 -n >"$stage/$archive"
mv "$stage/$archive" "$out/$archive"

sum="$(cd "$out" && sha256sum "$archive")"
{
  [[ -f "$out/SHA256SUMS" ]] && awk -v a="$archive" '$2 != a && $2 != "*" a' "$out/SHA256SUMS"
  printf '%s\n' "$sum"
} | LC_ALL=C sort -k2 >"$stage/SHA256SUMS"
mv "$stage/SHA256SUMS" "$out/SHA256SUMS"

echo "$out/$archive"
echo "$sum"
