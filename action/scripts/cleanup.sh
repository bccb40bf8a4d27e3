#!/usr/bin/env bash
# Always, last: remove what this action created in the job (downloads, symlinks, scratch files).
# Diagnostics are kept when a failure produced them, so a later upload step can take them.
# The binary cleans up its own children (port-forwards, local servers) on exit and on SIGTERM.
set -euo pipefail

dir="${RUNNER_TEMP:-/tmp}/health-predict-action"
if [[ -d "$dir" ]]; then
  find "$dir" -mindepth 1 -maxdepth 1 ! -name diagnostics -exec rm -rf {} +
  rmdir "$dir" 2>/dev/null || true
fi
echo "health-predict action: cleaned up"
