"""The code stays clean: ruff over everything, mypy over every package's sources with a cold
cache (a warm one once hid errors that a fresh run reports), and the import rules (import-linter's
contracts in pyproject.toml). The same checks as `make lint`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, **(env or {})})


def test_ruff_finds_nothing() -> None:
    done = run(str(BIN / "ruff"), "check", "libs", "services", "tests", "deploy", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_finds_nothing_from_a_cold_cache(tmp_path: Path) -> None:
    sources = sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("*/*/src") if p.is_dir()
                     and p.parts[-3] in ("libs", "services"))
    assert any(s.startswith("services/") for s in sources)
    done = run(str(BIN / "mypy"), "--cache-dir", str(tmp_path / "cache"), *sources,
               env={"MYPYPATH": os.pathsep.join(sources)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


def test_import_contracts_are_kept() -> None:
    done = run(str(BIN / "lint-imports"), "--no-cache", "--no-logo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 broken." in done.stdout, done.stdout
