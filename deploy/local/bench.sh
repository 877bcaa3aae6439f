#!/usr/bin/env bash
# `make bench`: PostgreSQL, Kafka and the gateway, the self-contained benchmarks; then the
# services too (as `make up`) and the benchmarks that drive them through the gateway
# (BENCH_INFRA_ONLY=1 skips those); then stop it all.
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

# The self-contained benchmarks first, on a quiet machine; then the services and those that
# drive them through the gateway.
bash "$HERE/up.sh" infra
load_env
cd "$ROOT"
rc=0
# BENCH_ONLY=pipeline,jobs: just those benchmarks (bench/run.py --only)
only=()
[ -z "${BENCH_ONLY:-}" ] || only=(--only "$BENCH_ONLY")
"$VENV_PY" bench/run.py --stage infra "${only[@]}" || rc=1
if [ "${BENCH_INFRA_ONLY:-0}" != 1 ]; then
  bash "$HERE/up.sh"
  "$VENV_PY" bench/run.py --stage services "${only[@]}" || rc=1
fi
exit "$rc"
