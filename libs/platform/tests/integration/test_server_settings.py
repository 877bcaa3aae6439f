"""The one read model of server settings (server_settings.py), on the real PostgreSQL: values
over the catalogue's defaults, never back in time (a replayed older change does not undo a newer
one), and no secret recorded."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Envelope
from misp_platform import server_settings
from misp_platform.server_settings import (
    all_settings,
    read_settings,
    setting,
    when_setting_changed_record,
)
from misp_platform.testing import setting_change

FLAG = "MISP.disable_user_add"


@pytest.fixture
async def settings_db(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.run_sync(server_settings.metadata.create_all)
    return engine


async def apply(engine: AsyncEngine, *envelopes: Envelope) -> None:
    for envelope in envelopes:
        async with engine.begin() as conn:
            await when_setting_changed_record(conn, envelope)


async def test_an_older_change_does_not_undo_a_newer_one(settings_db: AsyncEngine) -> None:
    await apply(settings_db, setting_change(FLAG, True, 1), setting_change(FLAG, False, 2),
                setting_change(FLAG, True, 1))  # a redelivery, or a `dlq replay`
    async with settings_db.connect() as conn:
        assert await setting(conn, FLAG) is False
    await apply(settings_db, setting_change(FLAG, True, 3))
    async with settings_db.connect() as conn:
        assert await setting(conn, FLAG) is True


async def test_values_stand_over_the_catalogue_defaults(settings_db: AsyncEngine) -> None:
    async with settings_db.connect() as conn:
        before = await all_settings(conn)
    await apply(settings_db, setting_change("MISP.org", "Host CERT", 1))
    async with settings_db.connect() as conn:
        after = await all_settings(conn)
        assert await read_settings(conn, ["MISP.org", FLAG]) == {
            "MISP.org": "Host CERT", FLAG: before[FLAG]}
    assert {k for k in after if after[k] != before[k]} == {"MISP.org"}


async def test_secrets_and_unknown_names_are_not_recorded(settings_db: AsyncEngine) -> None:
    await apply(settings_db, setting_change("GnuPG.password", "hunter2", 1),
                setting_change("Not.a_setting", 1, 1))
    async with settings_db.connect() as conn:
        rows = (await conn.execute(server_settings.setting_value.select())).all()
    assert rows == []
