#!/usr/bin/env bash
# The pipeline's state directory (registry, accepted batches, ledger, run history) kept on a git
# branch between runs, so a scheduled run sees the production model and the batches of the runs
# before it. A throwaway runner starts with nothing; this step brings the branch's latest commit
# back (`pull`) and commits and pushes what the run changed (`push`).
#
# The branch holds only state, never code (an orphan branch); each push is one commit, so the
# history of the registry is the branch's log. Authentication: the job's token as an HTTP header
# (as actions/checkout does), never in the remote URL, masked in logs.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

branch="${HP_STATE_BRANCH:?state.sh needs HP_STATE_BRANCH}"
git check-ref-format "refs/heads/$branch" || fail 2 "state-branch '$branch' is not a valid branch name"

# git with the token header for https remotes (nothing for local paths, as in tests).
git_auth() {
  local remote
  remote="$(git -C "$dir" remote get-url origin 2>/dev/null || true)"
  if [[ -n "${GITHUB_TOKEN:-}" && "$remote" == https://* ]]; then
    local basic
    basic="$(printf 'x-access-token:%s' "$GITHUB_TOKEN" | base64 -w0)"
    echo "::add-mask::$basic"
    git -C "$dir" -c "http.extraheader=AUTHORIZATION: basic $basic" "$@"
  else
    git -C "$dir" "$@"
  fi
}

case "${1:-}" in
  pull)
    dir="${HP_STATE_DIR:-${RUNNER_TEMP:-/tmp}/health-predict-state}"
    remote="${HP_STATE_REPOSITORY:-${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:?}.git}"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [[ ! -d "$dir/.git" ]]; then
      git init -q "$dir"
      git -C "$dir" remote add origin "$remote"
    else
      git -C "$dir" remote set-url origin "$remote"
    fi
    set +e
    git_auth ls-remote --exit-code --heads origin "refs/heads/$branch" >/dev/null
    found=$?
    set -e
    case "$found" in
      0)
        git_auth fetch -q origin "+refs/heads/$branch:refs/remotes/origin/$branch" ||
          fail 5 "cannot fetch state-branch '$branch' from the state repository"
        git -C "$dir" checkout -q -B "$branch" "refs/remotes/origin/$branch"
        echo "state: $branch at $(git -C "$dir" rev-parse --short HEAD) ($(git -C "$dir" log -1 --format=%s))"
        ;;
      2)
        git -C "$dir" checkout -q --orphan "$branch"
        echo "::notice title=health-predict state::state-branch '$branch' does not exist yet: this first run starts with an empty registry; the branch is created when it pushes"
        ;;
      *) fail 5 "cannot reach the state repository to read state-branch '$branch' (permissions: contents: read at least; contents: write to push)" ;;
    esac
    # Locks are per process, never state.
    printf '%s\n' '.lock' '*.lock' '*.tmp' '.tmp-*' >"$dir/.gitignore"
    set_output dir "$dir"
    ;;
  push)
    dir="${HP_STATE_DIR:?state.sh push needs the directory pull made}"
    [[ -d "$dir/.git" ]] || fail 2 "$dir is not a state checkout (run state.sh pull first)"
    git -C "$dir" add -A
    if git -C "$dir" diff --cached --quiet; then
      echo "state: unchanged, nothing to push"
      set_output commit ""
      exit 0
    fi
    message="health-predict state: ${GITHUB_WORKFLOW:-run} run ${GITHUB_RUN_ID:-local}.${GITHUB_RUN_ATTEMPT:-1} (exit ${HP_EXIT_CODE:-?})"
    git -C "$dir" -c user.name="github-actions[bot]" \
      -c user.email="41898282+github-actions[bot]@users.noreply.github.com" \
      commit -q -m "$message"
    if ! git_auth push -q origin "HEAD:refs/heads/$branch"; then
      fail 5 "could not push state-branch '$branch': another run updated it meanwhile (give the workflow a concurrency group) or the token lacks contents: write"
    fi
    commit="$(git -C "$dir" rev-parse HEAD)"
    echo "state: pushed $branch at ${commit:0:12}"
    set_output commit "$commit"
    ;;
  *) fail 2 "usage: state.sh pull|push" ;;
esac
