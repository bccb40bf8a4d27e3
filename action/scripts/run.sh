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

# AWS: the binary assumes the role itself with the job's OIDC token (no configure-aws-credentials).
if [[ -n "${HP_ROLE_TO_ASSUME:-}" ]]; then
  export HEALTH_PREDICT_AWS_ROLE_ARN="$HP_ROLE_TO_ASSUME"
fi
if [[ -n "${HP_AWS_REGION:-}" ]]; then
  export AWS_REGION="$HP_AWS_REGION"
fi
if [[ -n "${HP_KIND_CLUSTER:-}" ]]; then
  export HEALTH_PREDICT_KIND_CLUSTER="$HP_KIND_CLUSTER"
fi
truthy() {
  case "${1:-false}" in
    true) return 0 ;;
    false | "") return 1 ;;
    *) fail 2 "expected 'true' or 'false', got '$1'" ;;
  esac
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
    opt --image-registry "${HP_IMAGE_REGISTRY:-}"
    opt --namespace "${HP_NAMESPACE:-}"
    opt --state-dir "${HP_STATE_DIR:-}"
    if truthy "${HP_ECR:-false}"; then
      args+=(--ecr)
    fi
    if truthy "${HP_FORCE_RETRAIN:-false}"; then
      args+=(--force-retrain)
    fi
    ;;
  deploy)
    [[ -n "${HP_NAMESPACE:-}" ]] || fail 2 "command deploy needs the namespace input"
    image="${HP_IMAGE:-}"
    version=""
    if [[ -z "$image" ]]; then
      [[ -n "${HP_MODEL:-}" ]] || fail 2 "command deploy needs the image input, or the model input (a version or alias) to look the image up in the registry"
      registry="${HP_REGISTRY:-${HP_STATE_DIR:-.health-predict}/registry}"
      set +e
      shown="$(health-predict --output json registry show "$HP_MODEL" --registry "$registry")"
      code=$?
      set -e
      [[ "$code" -eq 0 ]] || fail "$code" "cannot resolve model '$HP_MODEL' in the registry $registry (is state-branch or registry set to where the pipeline keeps it?)"
      image="$(jq -r '.image // empty' <<<"$shown")"
      version="$(jq -r '.version // empty' <<<"$shown")"
      [[ -n "$image" ]] || fail 6 "model '$HP_MODEL' (version ${version:-?}) has no recorded image: only versions the pipeline built an image for can be deployed by model"
    fi
    [[ "$image" == *@sha256:* ]] || echo "::warning title=health-predict deploy::$(escape_data "$image") is not pinned by digest"
    set_output image "$image"
    set_output model-version "$version"
    if truthy "${HP_DRY_RUN:-false}"; then
      {
        echo "### Deploy plan (dry run: nothing changed)"
        echo ""
        echo "| | |"
        echo "| --- | --- |"
        echo "| Model | \`${HP_MODEL:-(image given)}\` |"
        echo "| Version | ${version:-n/a} |"
        echo "| Image | \`$image\` |"
        echo "| Namespace | \`$HP_NAMESPACE\` |"
      } >>"${GITHUB_STEP_SUMMARY:-/dev/null}"
      echo "dry run: would deploy $image to namespace $HP_NAMESPACE"
      set_output exit-code 0
      exit 0
    fi
    args=(deploy --image "$image" --namespace "$HP_NAMESPACE")
    opt --expect-version "$version"
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
    if [[ -n "${HP_K8S_SERVICE:-}" ]]; then
      opt --namespace "${HP_NAMESPACE:-}"
    fi
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
if [[ "$HP_COMMAND" == api-test ]]; then
  set_output junit "${HP_JUNIT:-}"
fi
if [[ "$code" -ne 0 ]]; then
  echo "::error title=health-predict $HP_COMMAND::exited with code $code (3 gate refused, 4 tests failed, 5 infrastructure, 6 invalid input, 7 deploy failed)"
fi
exit "$code"
