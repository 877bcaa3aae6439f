"""`python -m settings get NAME` and `python -m settings set NAME VALUE [--force]`: the one way to
change `cli_only` settings. The value is read as JSON when it parses (`true`, `12`, `"x"`),
else as text, then cast like MISP's form input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from misp_contracts.envelope import Actor
from misp_platform.cli_support import FAILED, OK, epilog, with_settings
from misp_platform.config import DATABASE, ServiceSettings
from misp_platform.db import engine_for
from settings.adapters import queries
from settings.domain.errors import SettingsDomainError
from settings.domain.settings import lookup, shown_value
from settings.handlers.settings import change_setting


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


async def _get(settings: ServiceSettings, name: str) -> None:
    definition = lookup(name)
    engine = engine_for(settings)
    try:
        async with engine.connect() as conn:
            current = await queries.current_setting(conn, name)
    finally:
        await engine.dispose()
    click.echo(json.dumps({name: shown_value(definition, current)}))


async def _set(settings: ServiceSettings, name: str, raw: str, force: bool) -> None:
    engine = engine_for(settings)
    try:
        event = await change_setting(engine, name=name, value=_parse(raw), force=force,
                                     via_cli=True,
                                     actor=Actor(email="CLI", org_name="SYSTEM"))
    finally:
        await engine.dispose()
    click.echo(json.dumps({"message": "Field updated", "setting": name,
                           "value": event.value, "forced": event.forced}))


@click.command(name="get", epilog=epilog("no such setting"))
@click.argument("name")
@with_settings(DATABASE)
def get_command(settings: ServiceSettings, name: str) -> int:
    """Print a setting's value in force as JSON.

    NAME is the setting's MISP name (`MISP.baseurl`); a secret shows as `*****`.
    """
    try:
        asyncio.run(_get(settings, name))
    except SettingsDomainError as exc:
        click.echo(exc.message, err=True)
        return FAILED
    return OK


# A VALUE may start with "-" (`-3`): unknown options are taken as arguments.
@click.command(name="set", epilog=epilog("no such setting, or the value was refused"),
               context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("value")
@click.option("--force", is_flag=True,
              help="Save a value that fails the setting's test (never one of the wrong type).")
@with_settings(DATABASE)
def set_command(settings: ServiceSettings, name: str, value: str, force: bool) -> int:
    """Change a setting, `cli_only` ones included.

    NAME is the setting's MISP name (`MISP.baseurl`); VALUE is read as JSON when it parses
    (`true`, `12`, `"x"`), else as text, then cast like MISP's form input. Prints the change as
    JSON.
    """
    try:
        asyncio.run(_set(settings, name, value, force))
    except SettingsDomainError as exc:
        click.echo(exc.message, err=True)
        return FAILED
    return OK
