#!/usr/bin/env bash
# Step 4 (after pipeline/api-test, even when they failed): publish the results with
# `health-predict report publish`: check run, job summary, PR comment, outputs. Nothing to
# publish (no run.json, no JUnit file) is a skip, not an error.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

args=(report publish)
have=0
run_dir="${HP_OUT_RUN_DIR:-${HP_RUN_DIR:-}}"
if [[ -n "$run_dir" && -f "$run_dir/run.json" ]]; then
  args+=(--run-dir "$run_dir")
  have=1
fi
junit="${HP_OUT_JUNIT:-${HP_JUNIT:-}}"
if [[ -n "$junit" && -f "$junit" ]]; then
  args+=(--junit "$junit")
  have=1
fi
summary="${HP_OUT_SUMMARY:-}"
if [[ -n "$summary" && -f "$summary" ]]; then
  args+=(--summary "$summary")
fi
if [[ "$have" -eq 0 ]]; then
  echo "::notice title=health-predict action::nothing to publish (no run.json and no JUnit file)"
  exit 0
fi
if [[ -n "${HP_CHECK_NAME:-}" ]]; then
  args+=(--check-name "$HP_CHECK_NAME")
fi
if [[ -n "${HP_COMMENT:-}" ]]; then
  args+=(--comment "$HP_COMMENT")
fi

set +e
health-predict "${args[@]}"
code=$?
set -e
# Failed tests (4) were already reported by the run step; only publishing problems fail here.
if [[ "$code" -eq 4 ]]; then
  exit 0
fi
exit "$code"
