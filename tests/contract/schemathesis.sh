#!/usr/bin/env bash
# Property-based contract test of a running `health-predict serve` with schemathesis (PyPI):
# every check (no 5xx, status codes, content types, headers and response bodies conform to
# /openapi.json, schema-valid requests accepted, invalid ones rejected), at least MIN_CASES
# generated cases.
#
#   tests/contract/schemathesis.sh http://127.0.0.1:8000 [REPORT_DIR]
#
# Env: MAX_EXAMPLES (per operation, default 300), SEED (default 1), MIN_CASES (default 1000),
# SCHEMATHESIS (the `st` program, default from PATH).
set -euo pipefail
base="${1:?usage: schemathesis.sh BASE_URL [REPORT_DIR]}"
report_dir="${2:-$(mktemp -d)}"
st="${SCHEMATHESIS:-st}"
min_cases="${MIN_CASES:-1000}"
mkdir -p "$report_dir"
log="$report_dir/schemathesis.log"

set +e
"$st" run "$base/openapi.json" \
  --checks all \
  --max-examples "${MAX_EXAMPLES:-300}" \
  --seed "${SEED:-1}" \
  --no-color \
  --request-timeout 10 \
  --report junit --report-junit-path "$report_dir/schemathesis-junit.xml" \
  >"$log" 2>&1
status=$?
set -e
cat "$log"

generated=$(sed -n 's/^ *\([0-9][0-9]*\) generated.*/\1/p' "$log" | tail -n1)
if [[ -z "$generated" ]]; then
  echo "schemathesis.sh: could not read the number of generated cases" >&2
  exit 1
fi
if ((status != 0)); then
  echo "schemathesis.sh: schemathesis reported failures (exit $status) in $generated cases" >&2
  exit "$status"
fi
if ((generated < min_cases)); then
  echo "schemathesis.sh: only $generated cases generated, fewer than $min_cases" >&2
  exit 1
fi
echo "schemathesis.sh: $generated cases, no failures"
