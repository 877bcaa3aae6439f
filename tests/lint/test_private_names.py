"""No module of the libraries or services uses another module's private names (`_name`). Ruff's
PLC2701 (pyproject.toml) sees imports across top-level packages only; this also sees them inside
one package (`from identity.handlers.users import _visible` in identity.api) and the
`module._name` form."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"misp_contracts", "misp_platform", "identity", "orgs", "audit", "jobs", "mailer",
               "settings"}


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(path: Path) -> list[str]:
    """`line: what` for each private name of a first-party module that `path` uses."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    modules: set[str] = set()  # local names bound to first-party modules
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in FIRST_PARTY:
                continue
            for alias in node.names:
                if is_private(alias.name) or any(map(is_private, node.module.split("."))):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
                else:
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FIRST_PARTY:
                    if any(map(is_private, alias.name.split("."))):
                        found.append(f"{node.lineno}: import {alias.name}")
                    modules.add(alias.asname or alias.name.split(".")[0])
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and is_private(node.attr)
                and isinstance(node.value, ast.Name) and node.value.id in modules):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_no_source_module_uses_a_private_name_of_another() -> None:
    sources = sorted(ROOT.glob("libs/*/src/**/*.py")) + sorted(ROOT.glob("services/*/src/**/*.py"))
    assert any("identity" in p.parts for p in sources)
    found = [f"{p.relative_to(ROOT)}:{use}" for p in sources for use in private_uses(p)]
    assert not found, "\n".join(found)


def test_the_check_sees_a_private_import_inside_one_package(tmp_path: Path) -> None:
    module = tmp_path / "operators.py"
    module.write_text("from identity.handlers import users\n"
                      "from identity.handlers.users import _visible\n"
                      "users._check_gpg({})\n")
    assert private_uses(module) == ["2: from identity.handlers.users import _visible",
                                    "3: users._check_gpg"]
