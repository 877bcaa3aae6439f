"""Identity's job run by its worker on the real database: `purge_expired_sessions` deletes
the expired login sessions only, in the transaction of its `job_run` mark; the diagnostics
counter (`session_counts`) counts them before and none after."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity.adapters.store import session_counts
from identity.adapters.tables import login_session
from identity.handlers.jobs import job_handlers
from identity.settings import IdentitySettings
from misp_platform.testing import run_job


@pytest.fixture
async def engine(fresh_database: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(fresh_database)
    yield engine
    await engine.dispose()


async def test_a_purge_job_deletes_the_expired_sessions_only(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    expiries = [now - timedelta(hours=1), now - timedelta(days=3), now + timedelta(hours=2)]
    async with engine.begin() as conn:
        await conn.execute(insert(login_session), [
            {"session_hmac": secrets.token_hex(32), "user_id": 1, "expires_at": at}
            for at in expiries])

    async with engine.connect() as conn:
        assert await session_counts(conn, now) == (1, 2)  # the diagnostics counter

    done = await run_job(engine, service="identity", queue="default",
                         job_type="purge_expired_sessions",
                         handlers=job_handlers(IdentitySettings()))

    assert done["outcome"] == "succeeded", done
    assert done["message"] == "Purged 2 expired session(s)."
    async with engine.connect() as conn:
        left = (await conn.execute(select(login_session.c.expires_at))).scalars().all()
        mark = (await conn.execute(text("SELECT outcome, message FROM job_run"))).one()
    assert left == [expiries[2]]
    async with engine.connect() as conn:
        assert await session_counts(conn, datetime.now(UTC)) == (1, 0)
    assert tuple(mark) == ("succeeded", done["message"])
