#!/usr/bin/env bash
# `make lint`: ruff on everything Python, mypy on the libraries and services (src layouts), and
# the import rules (import-linter contracts in pyproject.toml).
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
require_venv
cd "$ROOT"
rc=0
.venv/bin/ruff check libs services tests deploy bench || rc=1
srcs=(libs/*/src services/*/src)
MYPYPATH="$(IFS=:; echo "${srcs[*]}")" .venv/bin/mypy "${srcs[@]}" || rc=1
.venv/bin/lint-imports --no-cache --no-logo || rc=1
exit "$rc"
