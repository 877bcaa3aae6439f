"""Identity's background jobs (`python -m identity worker <queue>`): `purge_expired_sessions`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters import store
from misp_platform.config import ServiceSettings
from misp_platform.worker import JobContext, JobHandler


async def purge_expired_sessions(conn: AsyncConnection, ctx: JobContext) -> str:
    """Delete the login sessions past their expiry (they no longer authenticate anyone)."""
    ctx.checkpoint()
    purged = await store.purge_expired_sessions(conn, datetime.now(UTC))
    return f"Purged {purged} expired session(s)."


def job_handlers(_settings: ServiceSettings) -> Mapping[str, JobHandler]:
    return {"purge_expired_sessions": purge_expired_sessions}
