"""The audit's logging settings never go back in time: a replayed older change of
`MISP.log_client_ip` (a redelivery, `dlq replay`) does not bring an old value back."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.projections.log import Options, project
from misp_contracts.envelope import Envelope
from misp_platform.testing import setting_change

NAME = "MISP.log_client_ip"


def change(value: object, version: int) -> Envelope:
    return setting_change(NAME, value, version)


async def recorded(engine: AsyncEngine) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT value FROM setting_value WHERE name = :n"),
                                   {"n": NAME})).scalar_one()


async def test_an_older_setting_change_does_not_undo_a_newer_one(
        audit_engine: AsyncEngine) -> None:
    options = Options(publish=False, principals=False)
    for envelope in (change(True, 1), change(False, 2), change(True, 1)):
        async with audit_engine.begin() as conn:
            await project(conn, [(envelope, None)], options)
    assert await recorded(audit_engine) is False
    async with audit_engine.begin() as conn:  # a newer change still applies
        await project(conn, [(change(True, 3), None)], options)
    assert await recorded(audit_engine) is True
