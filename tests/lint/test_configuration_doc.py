"""docs/configuration.md cannot drift from the code: it is what deploy/configuration_doc.py
prints, it lists every field of every service's settings class with its variable and current
default, it shows no secret's default, and it names every variable the sources read themselves."""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr

from misp_contracts.topics import SERVICES
from misp_platform.config import DEV_PEPPER, ServiceSettings
from misp_platform.testing import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "configuration_doc.py"
DOC = ROOT / "docs" / "configuration.md"
# A name in quotes that looks like an environment variable, in a module that reads os.environ.
VARIABLE = re.compile(r"""["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']""")


@functools.cache
def generator() -> ModuleType:
    """deploy/configuration_doc.py, loaded from its path (deploy/ is not a package)."""
    return load_script(SCRIPT, "configuration_doc")


def settings_class(service: str) -> type[ServiceSettings]:
    cls = importlib.import_module(f"{service}.bootstrap").spec.settings
    assert isinstance(cls, type) and issubclass(cls, ServiceSettings)
    return cls


def clean_defaults(cls: type[ServiceSettings]) -> dict[str, Any]:
    """What a process of the service holds when no variable is set."""
    with generator().environment():
        settings = cls()
    return {name: getattr(settings, name) for name in cls.model_fields}


def rows_of(service: str) -> dict[str, list[str]]:
    """The service's section of the doc: {variable: [type, default, meaning]}."""
    text = DOC.read_text()
    start = text.index(f"\n## {service} (")
    end = text.find("\n## ", start + 1)
    rows: dict[str, list[str]] = {}
    for line in text[start:end if end != -1 else None].splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


def test_the_doc_is_what_the_generator_prints() -> None:
    assert DOC.read_text() == generator().render(), (
        "docs/configuration.md is out of date: .venv/bin/python deploy/configuration_doc.py "
        "--write")


@pytest.mark.parametrize("service", SERVICES)
def test_every_field_of_the_service_is_listed_with_its_current_default(service: str) -> None:
    cls = settings_class(service)
    render_default = generator().render_default
    rows = rows_of(service)
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    assert prefix == f"{service.upper()}_"
    for name, value in clean_defaults(cls).items():
        variable = f"{prefix}{name.upper()}"
        assert variable in rows, f"{variable} is missing from docs/configuration.md"
        _type, default, meaning = rows[variable]
        assert meaning, variable
        if cls.model_fields[name].annotation is SecretStr:
            assert default.startswith(("required", "optional", "generated")), (variable, default)
        else:
            assert default == render_default(value), (variable, default, value)
    documented = {v for v in rows if v.startswith(prefix)}
    assert documented == {f"{prefix}{n.upper()}" for n in cls.model_fields}, "stale rows"


def test_no_secret_default_is_shown() -> None:
    text = DOC.read_text()
    assert DEV_PEPPER not in text
    for service in SERVICES:
        for name, value in clean_defaults(settings_class(service)).items():
            if isinstance(value, SecretStr) and value.get_secret_value():
                assert value.get_secret_value() not in text, f"{service}: {name}"


def test_every_variable_the_sources_read_is_listed() -> None:
    text = DOC.read_text()
    readers = [path for pattern in ("libs/*/src/**/*.py", "services/*/src/**/*.py")
               for path in ROOT.glob(pattern)
               if re.search(r"\bos\.(environ|getenv)\b|\bfrom os import\b", path.read_text())]
    names = {name for path in readers for name in VARIABLE.findall(path.read_text())}
    assert {"MISP_PG_URL", "MISP_PEPPER", "MISP_FAILPOINTS"} <= names
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert missing == [], f"read by the sources, not in docs/configuration.md: {missing}"


def test_every_setting_of_the_console_is_listed_with_its_current_default() -> None:
    """The web console is not a service of the catalogue; its own class is documented too."""
    cls = getattr(importlib.import_module(generator().CONSOLE_MODULE), generator().CONSOLE_CLASS)
    rows = rows_of("console")
    with generator().environment():
        settings = cls()
    for name, field in cls.model_fields.items():
        own, *fallback = generator().console_variables(cls, name)
        assert own == f"CONSOLE_{name.upper()}", own
        assert own in rows, f"{own} is missing from docs/configuration.md"
        _type, default, meaning = rows[own]
        assert meaning and all(f"Unset: `{v}`." in meaning for v in fallback), own
        value = getattr(settings, name)
        if field.annotation is SecretStr:
            assert default.startswith("optional"), (own, default)
        elif value is None:
            assert default == "unset", (own, default)
        else:
            assert default == generator().render_default(value), (own, default, value)
    assert set(rows) == {f"CONSOLE_{n.upper()}" for n in cls.model_fields}, "stale rows"
    assert "`MISP_GATEWAY_TLS_NAME`" in DOC.read_text()
