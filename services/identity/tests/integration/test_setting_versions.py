"""Identity's projection of server settings never goes back in time: a replayed older change
(a redelivery, `dlq replay`) does not bring an old value back."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.settings import setting
from identity.consumer import when_setting_changed_record
from misp_contracts.envelope import Envelope
from misp_platform.testing import setting_change

NAME = "MISP.disable_user_add"


def change(value: object, version: int) -> Envelope:
    return setting_change(NAME, value, version)


async def test_an_older_setting_change_does_not_undo_a_newer_one(fresh_database: str) -> None:
    engine = create_async_engine(fresh_database)
    try:
        for envelope in (change(True, 1), change(False, 2), change(True, 1)):
            async with engine.begin() as conn:
                await when_setting_changed_record(conn, envelope)
        async with engine.connect() as conn:
            assert await setting(conn, NAME) is False
        async with engine.begin() as conn:  # a newer change still applies
            await when_setting_changed_record(conn, change(True, 3))
        async with engine.connect() as conn:
            assert await setting(conn, NAME) is True
    finally:
        await engine.dispose()
