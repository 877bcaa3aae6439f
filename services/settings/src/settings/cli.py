"""`python -m settings get NAME` and `python -m settings set NAME VALUE [--force]`: the one way to
change `cli_only` settings. The value is read as JSON when it parses (`true`, `12`, `"x"`),
else as text, then cast like MISP's form input."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

from misp_contracts.envelope import Actor
from misp_platform.config import ServiceSettings
from misp_platform.db import create_engine
from settings.adapters import store
from settings.domain.errors import SettingsDomainError
from settings.domain.settings import lookup, shown_value
from settings.handlers.settings import change_setting

USAGE = ("usage: python -m settings get NAME\n"
         "       python -m settings set NAME VALUE [--force]")


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


async def _get(settings: ServiceSettings, name: str, out: TextIO) -> int:
    definition = lookup(name)
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            current = await store.current_setting(conn, name)
    finally:
        await engine.dispose()
    out.write(json.dumps({name: shown_value(definition, current)}) + "\n")
    return 0


async def _set(settings: ServiceSettings, name: str, raw: str, force: bool, out: TextIO) -> int:
    engine = create_engine(settings.database_url)
    try:
        event = await change_setting(engine, name=name, value=_parse(raw), force=force,
                                     via_cli=True,
                                     actor=Actor(email="CLI", org_name="SYSTEM"))
    finally:
        await engine.dispose()
    out.write(json.dumps({"message": "Field updated", "setting": name,
                          "value": event.value, "forced": event.forced}) + "\n")
    return 0


def get_command(settings: ServiceSettings, args: list[str], *, out: TextIO = sys.stdout,
                err: TextIO = sys.stderr) -> int:
    if len(args) != 1:
        err.write(USAGE + "\n")
        return 2
    try:
        return asyncio.run(_get(settings, args[0], out))
    except SettingsDomainError as exc:
        err.write(exc.message + "\n")
        return 1


def set_command(settings: ServiceSettings, args: list[str], *, out: TextIO = sys.stdout,
                err: TextIO = sys.stderr) -> int:
    force = "--force" in args
    rest = [a for a in args if a != "--force"]
    if len(rest) != 2:
        err.write(USAGE + "\n")
        return 2
    try:
        return asyncio.run(_set(settings, rest[0], rest[1], force, out))
    except SettingsDomainError as exc:
        err.write(exc.message + "\n")
        return 1
