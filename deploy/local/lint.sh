#!/usr/bin/env bash
# `make lint`: ruff on everything Python, mypy on the libraries and services (src layouts).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_venv
cd "$ROOT"
rc=0
.venv/bin/ruff check libs services tests deploy bench || rc=1
srcs=(libs/*/src services/*/src)
MYPYPATH="$(IFS=:; echo "${srcs[*]}")" .venv/bin/mypy "${srcs[@]}" || rc=1
exit "$rc"
