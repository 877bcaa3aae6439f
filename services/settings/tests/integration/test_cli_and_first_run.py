"""The CLI (the one way to change cli_only settings) and the once-only first-run seeding."""

from __future__ import annotations

import asyncio
import json

from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform.cli import build_cli
from misp_platform.cli_support import CliContext
from settings.bootstrap import spec
from settings.handlers.first_run import seed
from settings.settings import SettingsSettings


def _cli(settings: SettingsSettings, *args: str) -> Result:
    """`python -m settings <args>` in-process, on the test's database."""
    return CliRunner().invoke(build_cli(spec), list(args), obj=CliContext.of(settings, spec))


async def test_the_cli_sets_a_cli_only_setting_and_reads_it_back(
        service_settings: SettingsSettings, settings_engine: AsyncEngine) -> None:
    done = await asyncio.to_thread(_cli, service_settings, "set", "MISP.system_setting_db",
                                   "true")
    assert done.exit_code == 0, done.output
    read = await asyncio.to_thread(_cli, service_settings, "get", "MISP.system_setting_db")
    assert read.exit_code == 0, read.output
    assert json.loads(read.stdout) == {"MISP.system_setting_db": True}
    refused = await asyncio.to_thread(_cli, service_settings, "set", "SecureAuth.amount", "-3")
    assert refused.exit_code == 1
    assert "greater or equal 0" in refused.stderr
    async with settings_engine.connect() as conn:
        via_cli = (await conn.execute(text(
            "SELECT data->>'via_cli' FROM event WHERE data->>'name' = 'MISP.system_setting_db'"
        ))).scalar()
    assert via_cli == "true"


async def test_set_with_force_after_the_value_saves_a_value_that_fails_its_test(
        service_settings: SettingsSettings) -> None:
    forced = await asyncio.to_thread(_cli, service_settings, "set", "MISP.baseurl",
                                     "not a url", "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout) == {"message": "Field updated", "setting": "MISP.baseurl",
                                         "value": "not a url", "forced": True}
    unknown = await asyncio.to_thread(_cli, service_settings, "get", "No.such_setting")
    assert unknown.exit_code == 1 and unknown.stderr


async def test_seeding_happens_once(settings_engine: AsyncEngine) -> None:
    assert await seed(settings_engine) is False  # the fixture seeded already
    async with settings_engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM regexp"))).scalar()
    assert count == 29
