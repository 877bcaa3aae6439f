"""SQL lives in a service's `adapters/` (tables, stores, queries) and its `migrations/`: every
other module of a service (handlers, api, projections, consumers, commands) reaches the database
through the adapters' functions and sees SQLAlchemy only as the connection it passes on and the
errors it may catch (`sqlalchemy.ext.asyncio`, `sqlalchemy.exc`). A `testing.py` module (test
support shipped with the service) is exempt. Issue 13, item 1."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ("sqlalchemy.ext.asyncio", "sqlalchemy.exc")
EXEMPT_DIRS = ("adapters", "migrations")
EXEMPT_FILES = ("testing.py",)


def sqlalchemy_imports(path: Path) -> list[str]:
    """`line: module` for each import of SQLAlchemy that `path` makes beyond ALLOWED."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if module.split(".")[0] == "sqlalchemy" and not module.startswith(ALLOWED):
                found.append(f"{node.lineno}: {module}")
    return found


def outside_adapters(service_src: Path) -> list[Path]:
    return [p for p in sorted(service_src.rglob("*.py"))
            if not set(p.relative_to(service_src).parts[:-1]) & set(EXEMPT_DIRS)
            and p.name not in EXEMPT_FILES]


def test_no_service_module_outside_adapters_builds_sql() -> None:
    sources = [p for src in sorted(ROOT.glob("services/*/src/*")) if src.is_dir()
               for p in outside_adapters(src)]
    assert any(p.parts[-2:] == ("handlers", "users.py") for p in sources)
    found = [f"{p.relative_to(ROOT)}:{use}" for p in sources for use in sqlalchemy_imports(p)]
    assert not found, "SQL outside adapters/ and migrations/:\n" + "\n".join(found)


def test_the_check_sees_sql_and_lets_connections_through(tmp_path: Path) -> None:
    src = tmp_path / "svc"
    (src / "handlers").mkdir(parents=True)
    (src / "adapters").mkdir()
    handler = src / "handlers" / "things.py"
    handler.write_text("from sqlalchemy.ext.asyncio import AsyncConnection\n"
                       "from sqlalchemy.exc import IntegrityError\n"
                       "from sqlalchemy import select\n"
                       "import sqlalchemy.dialects.postgresql as pg\n")
    (src / "adapters" / "store.py").write_text("from sqlalchemy import select\n")
    assert outside_adapters(src) == [handler]
    assert sqlalchemy_imports(handler) == ["3: sqlalchemy", "4: sqlalchemy.dialects.postgresql"]
