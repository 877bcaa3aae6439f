"""The mailer's projection of server settings never goes back in time: a replayed older change
(a redelivery, `dlq replay`) does not bring an old value back."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters import store
from mailer.projections.users import when_setting_changed_project
from misp_contracts.envelope import Envelope
from misp_platform.testing import setting_change

NAME = "MISP.email_subject_tag"


def change(value: object, version: int) -> Envelope:
    return setting_change(NAME, value, version)


async def subject_tag(engine: AsyncEngine) -> object:
    async with engine.connect() as conn:
        return (await store.load_settings(conn)).get(NAME)


async def test_an_older_setting_change_does_not_undo_a_newer_one(
        mailer_engine: AsyncEngine) -> None:
    for envelope in (change("[old]", 1), change("[new]", 2), change("[old]", 1)):
        async with mailer_engine.begin() as conn:
            await when_setting_changed_project(conn, envelope)
    assert await subject_tag(mailer_engine) == "[new]"
    async with mailer_engine.begin() as conn:  # a newer change still applies
        await when_setting_changed_project(conn, change("[newer]", 3))
    assert await subject_tag(mailer_engine) == "[newer]"
