"""The CLI (the one way to change cli_only settings) and the once-only first-run seeding."""

from __future__ import annotations

import asyncio
import json
import uuid

from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor
from misp_platform.cli import build_cli
from misp_platform.cli_support import CliContext
from settings.bootstrap import spec
from settings.handlers.first_run import seed
from settings.handlers.settings import change_setting
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


async def test_the_first_run_gives_the_instance_a_uuid_once_unless_one_was_set(
        settings_engine: AsyncEngine) -> None:
    async def instance_uuid() -> tuple[object, int]:
        async with settings_engine.connect() as conn:
            value = (await conn.execute(text(
                "SELECT value FROM setting_override WHERE name = 'MISP.uuid'"))).scalar()
            events = (await conn.execute(text(
                "SELECT count(*) FROM event WHERE data->>'name' = 'MISP.uuid'"))).scalar()
        return value, int(events or 0)

    generated, events = await instance_uuid()  # the fixture's first run made it
    assert isinstance(generated, str) and str(uuid.UUID(generated)) == generated
    assert events == 1
    await seed(settings_engine)
    assert await instance_uuid() == (generated, 1)

    # An instance whose operator set its UUID before the step ran keeps the operator's.
    async with settings_engine.begin() as conn:
        await conn.execute(text("DELETE FROM first_run WHERE step = 'instance-uuid'"))
    chosen = "5f1e7b2c-0a1b-4c2d-8e3f-123456789abc"
    await change_setting(settings_engine, name="MISP.uuid", value=chosen, actor=Actor.system())
    await seed(settings_engine)
    assert await instance_uuid() == (chosen, 2)
