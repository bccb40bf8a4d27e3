#!/usr/bin/env python3
"""The `cargo deny check bans licenses sources` policy of deny.toml, enforced without cargo-deny.

cargo-deny itself takes ~12 min to compile on the CI machine, so `.ci/run` runs this instead and
the GitHub workflow's `deny` job runs cargo-deny proper. Both read the same deny.toml: the banned
crates, the license allow-list (with `[[licenses.clarify]]` overrides) and the allowed sources
(crates.io only). The dependency set is `cargo tree --target all` with normal, build and dev
edges, i.e. the feature-resolved graph cargo-deny checks, not every package in Cargo.lock.
"""
import re
import subprocess
import sys
import tomllib
from pathlib import Path

CRATES_IO = "https://github.com/rust-lang/crates.io-index"


def tree(root: Path) -> dict:
    """{(name, version): (license expression, extra-source or None)} for every package."""
    out = subprocess.run(
        ["cargo", "tree", "--locked", "--target", "all", "-e", "normal,build,dev",
         "--prefix", "none", "--format", "{p}|{l}"],
        cwd=root, check=True, capture_output=True, text=True).stdout
    pkgs = {}
    for line in out.splitlines():
        line = line.strip()
        if line.endswith("(*)"):  # a package cargo tree already printed
            line = line[:-3].rstrip()
        if not line:
            continue
        head, _, lic = line.rpartition("|")
        m = re.match(r"^(\S+) v(\S+)(.*)$", head)
        if not m:
            sys.exit(f"deny.py: cannot parse cargo tree line: {line!r}")
        name, version, rest = m.groups()
        groups = [g for g in re.findall(r"\(([^()]*)\)", rest) if g not in ("*", "proc-macro")]
        pkgs[(name, version)] = (lic.strip(), groups[0] if groups else None)
    return pkgs


def tokens(expr: str):
    return re.findall(r"\(|\)|[^\s()]+", expr.replace("/", " OR "))


def satisfied(expr: str, allow: set) -> bool:
    """Evaluates an SPDX expression (OR binds looser than AND; `X WITH Y` is one term)."""
    toks = tokens(expr)
    pos = 0

    def term():
        nonlocal pos
        if pos >= len(toks):
            raise ValueError("unexpected end")
        t = toks[pos]
        pos += 1
        if t == "(":
            v = disj()
            if pos >= len(toks) or toks[pos] != ")":
                raise ValueError("missing )")
            pos += 1
            return v
        if pos + 1 < len(toks) and toks[pos] == "WITH":
            t = f"{t} WITH {toks[pos + 1]}"
            pos += 2
        return t in allow

    def conj():
        nonlocal pos
        v = term()
        while pos < len(toks) and toks[pos] == "AND":
            pos += 1
            v = term() and v
        return v

    def disj():
        nonlocal pos
        v = conj()
        while pos < len(toks) and toks[pos] == "OR":
            pos += 1
            v = conj() or v
        return v

    v = disj()
    if pos != len(toks):
        raise ValueError(f"trailing {toks[pos:]}")
    return v


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    policy = tomllib.loads((root / "deny.toml").read_text())
    banned = {d["crate"]: d.get("reason", "") for d in policy.get("bans", {}).get("deny", [])}
    allow = set(policy.get("licenses", {}).get("allow", []))
    clarify = {c["crate"]: c["expression"] for c in policy.get("licenses", {}).get("clarify", [])}
    registries = set(policy.get("sources", {}).get("allow-registry", [CRATES_IO]))
    if registries - {CRATES_IO}:
        sys.exit("deny.py: only crates.io is supported as an allowed registry; run cargo-deny")
    own = tomllib.loads((root / "Cargo.toml").read_text())["package"]["name"]

    errors = []
    for (name, version), (lic, source) in sorted(tree(root).items()):
        if name == own and source and Path(source).resolve() == root:
            continue
        if name in banned:
            errors.append(f"banned crate {name} v{version} ({banned[name]}); "
                          f"see `cargo tree -i {name} --target all`")
        if source is not None:
            errors.append(f"{name} v{version} comes from {source}, not crates.io [sources]")
        expr = clarify.get(name, lic)
        try:
            ok = bool(expr) and satisfied(expr, allow)
        except ValueError as e:
            ok = False
            expr = f"{expr} (unparsable: {e})"
        if not ok:
            errors.append(f"{name} v{version}: license {expr or '(none declared)'} is not "
                          "satisfied by deny.toml [licenses] allow")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        print(f"deny.py: {len(errors)} problem(s); fix the dependency or, after review, deny.toml",
              file=sys.stderr)
        return 1
    print(f"deny.py: bans ok ({', '.join(sorted(banned))} absent), licenses ok, sources ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
