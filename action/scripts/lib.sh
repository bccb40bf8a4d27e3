#!/usr/bin/env bash
# Shared helpers for the composite action's steps. Sourced, never run.

# set_output NAME VALUE: a step output with a random heredoc delimiter, so no value (a path, a
# message) can end the entry early or inject another output.
set_output() {
  local name="$1" value="$2" delim
  delim="ghadelimiter_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  if [[ "$value" == *"$delim"* ]]; then
    echo "::error title=health-predict action::output $name contains its delimiter" >&2
    return 1
  fi
  if [[ -z "${GITHUB_OUTPUT:-}" ]]; then
    echo "::error title=health-predict action::GITHUB_OUTPUT is not set" >&2
    return 1
  fi
  printf '%s<<%s\n%s\n%s\n' "$name" "$delim" "$value" "$delim" >>"$GITHUB_OUTPUT"
}

# escape_data TEXT: a workflow command's message, escaped as the runner expects.
escape_data() {
  local s="$1"
  s="${s//'%'/'%25'}"
  s="${s//$'\r'/'%0D'}"
  s="${s//$'\n'/'%0A'}"
  printf '%s' "$s"
}

# fail CODE MESSAGE: an error annotation, then exit with CODE.
fail() {
  local code="$1"
  shift
  echo "::error title=health-predict action::$(escape_data "$*")"
  exit "$code"
}

# work_dir: the action's scratch directory for this job (removed by cleanup.sh).
work_dir() {
  local d="${RUNNER_TEMP:-/tmp}/health-predict-action"
  mkdir -p "$d"
  printf '%s' "$d"
}
