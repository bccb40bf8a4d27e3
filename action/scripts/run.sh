#!/usr/bin/env bash
# Step 3: run the chosen subcommand with arguments built from the inputs (never through a shell
# string: each input is one argument). The binary writes its own step outputs (decision,
# model-version, image, drift-share, tests-*, run-dir, summary, junit); this script adds the
# exit code and the outputs a command implies when the binary does not set them.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Adds `--flag value` when value is non-empty.
args=()
opt() {
  if [[ -n "${2:-}" ]]; then
    args+=("$1" "$2")
  fi
}
# Splits a comma/space/newline separated list.
list() {
  tr ',\n' '  ' <<<"${1:-}" | xargs -n1 2>/dev/null || true
}

case "${HP_COMMAND:-}" in
  pipeline)
    args=(pipeline run)
    opt --data "${HP_DATA:-}"
    opt --batch "${HP_BATCH:-}"
    opt --run-dir "${HP_RUN_DIR:-}"
    opt --registry "${HP_REGISTRY:-}"
    opt --deploy "${HP_DEPLOY:-}"
    opt --image-repo "${HP_IMAGE_REPO:-}"
    if [[ "${HP_FORCE_RETRAIN:-false}" == "true" ]]; then
      args+=(--force-retrain)
    fi
    ;;
  deploy)
    [[ -n "${HP_IMAGE:-}" ]] || fail 2 "command deploy needs the image input"
    [[ -n "${HP_NAMESPACE:-}" ]] || fail 2 "command deploy needs the namespace input"
    args=(deploy --image "$HP_IMAGE" --namespace "$HP_NAMESPACE")
    ;;
  refresh-secret)
    [[ -n "${HP_NAMESPACE:-}" ]] || fail 2 "command refresh-secret needs the namespace input (comma-separated for several)"
    args=(ecr refresh-secret)
    while IFS= read -r ns; do
      opt --namespace "$ns"
    done < <(list "$HP_NAMESPACE")
    opt --service-account "${HP_SERVICE_ACCOUNT:-}"
    ;;
  api-test)
    [[ -n "${HP_BASE_URL:-}${HP_K8S_SERVICE:-}" ]] || fail 2 "command api-test needs base-url or k8s-service"
    args=(api-test)
    opt --base-url "${HP_BASE_URL:-}"
    opt --junit "${HP_JUNIT:-}"
    opt --k8s-service "${HP_K8S_SERVICE:-}"
    ;;
  publish)
    args=(report publish)
    if [[ -f "${HP_RUN_DIR:-}/run.json" ]]; then
      args+=(--run-dir "$HP_RUN_DIR")
    fi
    while IFS= read -r f; do
      opt --junit "$f"
    done < <(list "${HP_JUNIT:-}")
    opt --summary "${HP_SUMMARY:-}"
    opt --check-name "${HP_CHECK_NAME:-}"
    opt --comment "${HP_COMMENT:-}"
    ;;
  *)
    fail 2 "unknown command '${HP_COMMAND:-}': use pipeline, deploy, refresh-secret, api-test or publish"
    ;;
esac

# Extra arguments: one per line, taken literally.
while IFS= read -r line; do
  if [[ -n "$line" ]]; then
    args+=("$line")
  fi
done <<<"${HP_ARGS:-}"

echo "::group::health-predict $(escape_data "${args[*]}")"
set +e
health-predict "${args[@]}"
code=$?
set -e
echo "::endgroup::"

set_output exit-code "$code"
case "$HP_COMMAND" in
  api-test) set_output junit "${HP_JUNIT:-}" ;;
  deploy) set_output image "$HP_IMAGE" ;;
esac
if [[ "$code" -ne 0 ]]; then
  echo "::error title=health-predict $HP_COMMAND::exited with code $code (3 gate refused, 4 tests failed, 5 infrastructure, 6 invalid input, 7 deploy failed)"
fi
exit "$code"
