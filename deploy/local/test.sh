#!/usr/bin/env bash
# `make test`: start everything (as `make up`), run pytest with the environment of .local/env
# (CI passes through), then ALWAYS stop everything. The exit code is pytest's (or the set-up's
# when the set-up fails). Extra arguments go to pytest. MISP_KEEP_UP=1 skips the final stop
# (for a local run against a stack that others are using; CI never sets it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "${MISP_KEEP_UP:-0}" = 1 ]; then
    echo "MISP_KEEP_UP=1: leaving everything running (make down stops it)" >&2
  else
    bash "$HERE/down.sh" || echo "warning: down.sh reported a problem" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash "$HERE/up.sh"
load_env
[ -n "${CI:-}" ] && export CI
cd "$ROOT"
set +e
# Every test's time is kept in the logs (a slow suite is looked into from this file).
"$VENV_PY" -m pytest --junitxml="$LOGS/pytest-junit.xml" "$@"
rc=$?
set -e
exit "$rc"
