"""The API and the handlers leave their SQL to adapters/store.py and adapters/queries.py."""

from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

import pytest

from jobs.api import routes
from jobs.handlers import jobs, tasks


@pytest.mark.parametrize("module", [routes, jobs, tasks])
def test_routes_and_handlers_build_no_sql(module: ModuleType) -> None:
    """SQLAlchemy only for the connection's type, and no table: every statement is a function
    of the adapters."""
    tree = ast.parse(Path(str(module.__file__)).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {m for m in imported if m and (
        (m.startswith("sqlalchemy") and m != "sqlalchemy.ext.asyncio")
        or m in ("jobs.adapters.tables", "misp_platform.auth.principals"))}
