#!/usr/bin/env bash
# `make bench`: start everything (as `make up`: some benchmarks drive the real services through
# the gateway; BENCH_INFRA_ONLY=1 starts only PostgreSQL, Kafka and the gateway), run bench/run.py
# with the environment of .local/env, then stop it all.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=lib.sh
. "$HERE/lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  bash "$HERE/down.sh" || echo "warning: down.sh reported a problem" >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "${BENCH_INFRA_ONLY:-0}" = 1 ]; then bash "$HERE/up.sh" infra; else bash "$HERE/up.sh"; fi
load_env
cd "$ROOT"
[ -f bench/run.py ] || die "bench/run.py does not exist yet"
"$VENV_PY" bench/run.py "$@"
