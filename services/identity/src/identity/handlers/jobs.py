"""Identity's background jobs (`python -m identity worker <queue>`): `purge_expired_sessions`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.tables import login_session
from misp_platform.config import ServiceSettings
from misp_platform.worker import JobContext, JobHandler


async def purge_expired_sessions(conn: AsyncConnection, ctx: JobContext) -> str:
    """Delete the login sessions past their expiry (they no longer authenticate anyone)."""
    ctx.checkpoint()
    result = await conn.execute(delete(login_session).where(
        login_session.c.expires_at <= datetime.now(UTC)))
    return f"Purged {result.rowcount or 0} expired session(s)."


def job_handlers(_settings: ServiceSettings) -> Mapping[str, JobHandler]:
    return {"purge_expired_sessions": purge_expired_sessions}
