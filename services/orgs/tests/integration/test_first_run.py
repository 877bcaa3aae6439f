"""First run: organisation 1, named by MISP.org, created once whatever the restarts or races."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from misp_platform.server_settings import record_setting
from orgs.adapters.store import SqlUnitOfWork
from orgs.handlers.organisations import ensure_host_organisation


async def host_events(engine: AsyncEngine) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    async with engine.connect() as conn:
        return [(r.type, r.data) for r in await conn.execute(text(
            "SELECT e.type, e.data FROM event e JOIN organisation o ON o.stream_id = e.stream_id"
            " WHERE o.id = 1 ORDER BY e.version"))]


async def test_the_host_organisation_is_created_once_with_the_default_name(
        orgs_engine: AsyncEngine) -> None:
    assert await ensure_host_organisation(SqlUnitOfWork(orgs_engine)) is True
    assert await ensure_host_organisation(SqlUnitOfWork(orgs_engine)) is False  # a restart
    events = await host_events(orgs_engine)
    assert len(events) == 1 and events[0][0] == "misp.orgs.organisation.created.v1"
    org = events[0][1]["organisation"]
    assert org["id"] == 1 and org["name"] == "ORGNAME" and org["type"] == "ADMIN"
    assert org["local"] is True and events[0][1]["reason"] == "first-run"
    async with orgs_engine.connect() as conn:
        outbox = (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar()
        row = (await conn.execute(text("SELECT uuid, name FROM organisation WHERE id = 1"))).one()
    assert outbox == 1 and row.uuid == org["uuid"]


async def test_concurrent_first_runs_create_one_organisation_with_the_latest_misp_org(
        orgs_db: str) -> None:
    engines = [create_async_engine(orgs_db) for _ in range(6)]
    try:
        async with engines[0].begin() as conn:
            await record_setting(conn, "MISP.org", "Host CERT")
        created = await asyncio.gather(*(ensure_host_organisation(SqlUnitOfWork(e))
                                         for e in engines))
        assert sorted(created) == [False] * 5 + [True]
        events = await host_events(engines[0])
        assert len(events) == 1 and events[0][1]["organisation"]["name"] == "Host CERT"
        async with engines[0].connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM outbox"))).scalar() == 1
    finally:
        for engine in engines:
            await engine.dispose()
