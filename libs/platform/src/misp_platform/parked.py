"""Parked messages: outbox rows Kafka refused for good (relay.py), listed, retried (moved back
to the end of the outbox, so the relay tries them once more) or dropped by an operator."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_platform.db import outbox, parked_message


@dataclass(frozen=True)
class ParkedMessage:
    position: int
    topic: str
    key: str | None
    size: int
    error: str
    created_at: datetime
    parked_at: datetime

    def summary(self) -> dict[str, Any]:
        return {"position": self.position, "topic": self.topic, "key": self.key,
                "bytes": self.size, "error": self.error,
                "created_at": self.created_at.isoformat(), "parked_at": self.parked_at.isoformat()}


async def count_parked(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(func.count()).select_from(parked_message)))
               .scalar_one())


async def list_parked(conn: AsyncConnection, limit: int | None = None) -> list[ParkedMessage]:
    """The parked messages, oldest first (without their payloads)."""
    p = parked_message.c
    stmt = (select(p.position, p.topic, p.message_key, func.length(p.payload).label("size"),
                   p.error, p.created_at, p.parked_at).order_by(p.position))
    if limit is not None:
        stmt = stmt.limit(limit)
    return [ParkedMessage(position=r.position, topic=r.topic, key=r.message_key, size=r.size,
                          error=r.error, created_at=r.created_at, parked_at=r.parked_at)
            for r in await conn.execute(stmt)]


async def retry_parked(conn: AsyncConnection, positions: Sequence[int] | None) -> list[int]:
    """Move the parked messages (all when `positions` is None) back into the outbox, in their
    order; returns the positions moved. The relay publishes them (or parks them again)."""
    p = parked_message.c
    chosen = select(p.position, p.topic, p.message_key, p.headers, p.payload)
    if positions is not None:
        chosen = chosen.where(p.position.in_(positions))
    rows = (await conn.execute(chosen.order_by(p.position).with_for_update())).all()
    if rows:
        await conn.execute(insert(outbox), [
            {"topic": r.topic, "message_key": r.message_key, "headers": r.headers,
             "payload": r.payload} for r in rows])
        await conn.execute(delete(parked_message).where(
            p.position.in_([r.position for r in rows])))
    return [r.position for r in rows]


async def drop_parked(conn: AsyncConnection, positions: Sequence[int] | None) -> list[int]:
    """Delete parked messages for good (all when `positions` is None); the positions deleted."""
    stmt = delete(parked_message).returning(parked_message.c.position)
    if positions is not None:
        stmt = stmt.where(parked_message.c.position.in_(positions))
    return sorted(int(r[0]) for r in await conn.execute(stmt))
