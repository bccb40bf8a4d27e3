#!/usr/bin/env bash
# On failure: collect what explains it into one directory (output `path`) for upload: the run
# directory's records, the binary's version and, when a namespace is known and kubectl can reach
# the cluster, pods, events, the deployment and recent logs. Never prints secrets: only named,
# non-secret variables are recorded.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$(work_dir)/diagnostics"
mkdir -p "$out"
{
  echo "command=${HP_COMMAND:-}"
  echo "exit-code=${HP_EXIT_CODE:-}"
  echo "runner=${RUNNER_OS:-} ${RUNNER_ARCH:-}"
  echo "event=${GITHUB_EVENT_NAME:-} ref=${GITHUB_REF:-} sha=${GITHUB_SHA:-}"
  if command -v health-predict >/dev/null; then health-predict --version || true; fi
} >"$out/context.txt" 2>&1

run_dir="${HP_OUT_RUN_DIR:-${HP_RUN_DIR:-}}"
if [[ -n "$run_dir" && -d "$run_dir" ]]; then
  find "$run_dir" -maxdepth 2 -type f -printf '%s\t%p\n' >"$out/run-dir-files.txt" 2>/dev/null || true
  for f in run.json gate.json gate.md metrics.json summary.md junit.xml drift/drift.json; do
    if [[ -f "$run_dir/$f" ]]; then
      cp "$run_dir/$f" "$out/$(tr '/' '_' <<<"$f")"
    fi
  done
fi

if [[ -n "${HP_NAMESPACE:-}" ]] && command -v kubectl >/dev/null && kubectl version --request-timeout=5s >/dev/null 2>&1; then
  while IFS= read -r ns; do
    [[ -n "$ns" ]] || continue
    k="$out/kubernetes-$ns"
    mkdir -p "$k"
    kubectl -n "$ns" get deploy,rs,pods,svc -o wide >"$k/resources.txt" 2>&1 || true
    kubectl -n "$ns" get events --sort-by=.lastTimestamp >"$k/events.txt" 2>&1 || true
    kubectl -n "$ns" describe deploy >"$k/deployments.txt" 2>&1 || true
    kubectl -n "$ns" describe pods >"$k/pods.txt" 2>&1 || true
    kubectl -n "$ns" logs -l app.kubernetes.io/name=health-predict --all-containers --tail=200 --prefix >"$k/logs.txt" 2>&1 || true
  done < <(tr ', ' '\n' <<<"$HP_NAMESPACE")
fi

echo "::notice title=health-predict action::diagnostics collected in $(escape_data "$out")"
set_output path "$out"
