"""Orgs' projection of server settings never goes back in time: a replayed older change (a
redelivery, `dlq replay`) does not bring an old value back."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Envelope
from misp_platform.testing import setting_change
from orgs.adapters.settings_feed import when_setting_changed_record
from orgs.adapters.settings_store import get_setting

NAME = "Security.hide_organisation_index_from_users"


def change(value: object, version: int) -> Envelope:
    return setting_change(NAME, value, version)


async def test_an_older_setting_change_does_not_undo_a_newer_one(
        orgs_engine: AsyncEngine) -> None:
    for envelope in (change(True, 1), change(False, 2), change(True, 1)):
        async with orgs_engine.begin() as conn:
            await when_setting_changed_record(conn, envelope)
    async with orgs_engine.connect() as conn:
        assert await get_setting(conn, NAME) is False
    async with orgs_engine.begin() as conn:  # a newer change still applies
        await when_setting_changed_record(conn, change(True, 3))
    async with orgs_engine.connect() as conn:
        assert await get_setting(conn, NAME) is True
