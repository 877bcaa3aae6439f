"""The CLI (the one way to change cli_only settings) and the once-only first-run seeding."""

from __future__ import annotations

import asyncio
import io
import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from settings.cli import get_command, set_command
from settings.handlers.first_run import seed
from settings.settings import SettingsSettings


async def test_the_cli_sets_a_cli_only_setting_and_reads_it_back(
        service_settings: SettingsSettings, settings_engine: AsyncEngine) -> None:
    out, err = io.StringIO(), io.StringIO()
    rc = await asyncio.to_thread(set_command, service_settings,
                                 ["MISP.system_setting_db", "true"], out=out, err=err)
    assert rc == 0, err.getvalue()
    out = io.StringIO()
    assert await asyncio.to_thread(get_command, service_settings, ["MISP.system_setting_db"],
                                   out=out) == 0
    assert json.loads(out.getvalue()) == {"MISP.system_setting_db": True}
    err = io.StringIO()
    assert await asyncio.to_thread(set_command, service_settings, ["SecureAuth.amount", "-3"],
                                   err=err) == 1
    assert "greater or equal 0" in err.getvalue()
    async with settings_engine.connect() as conn:
        via_cli = (await conn.execute(text(
            "SELECT data->>'via_cli' FROM event WHERE data->>'name' = 'MISP.system_setting_db'"
        ))).scalar()
    assert via_cli == "true"


async def test_seeding_happens_once(settings_engine: AsyncEngine) -> None:
    assert await seed(settings_engine) is False  # the fixture seeded already
    async with settings_engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM regexp"))).scalar()
    assert count == 29
