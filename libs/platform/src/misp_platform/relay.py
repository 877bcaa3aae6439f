"""The outbox relay: publishes committed outbox rows to Kafka, then deletes them.

Ordering: rows are read in position order and a row only becomes visible once its transaction
has committed. A writer of stream version N+1 must have read version N committed, so within a
stream positions follow commit order and per-key order on Kafka is kept. Nothing is skipped,
because the relay keeps no "last position" cursor: whatever is still in the table is unpublished
(the classic hazard of a cursor is shown in the tests). Only one relay per database publishes at a
time (a session advisory lock); a second one waits as a hot standby.

Read-your-writes: the delete and a notification on `outbox_published` commit together, so an
API process waiting for its rows (consistency.py) learns at once that they are in Kafka.

At-least-once: a relay killed after sending but before deleting sends those rows again on restart;
consumers drop the duplicates by event id.
"""

from __future__ import annotations

import asyncio
import contextlib

import psycopg
import structlog
from aiokafka import AIOKafkaProducer
from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform import failpoints, metrics
from misp_platform.db import OUTBOX_CHANNEL, PUBLISHED_CHANNEL, libpq_url, outbox

log = structlog.get_logger(__name__)

_NOTIFY_PUBLISHED = text(f"SELECT pg_notify('{PUBLISHED_CHANNEL}', '')")
RELAY_LOCK_ID = 0x6D697370_72656C61  # "misprela": one relay per database


class OutboxRelay:
    """Drains the outbox of one service database into Kafka."""

    def __init__(self, engine: AsyncEngine, database_url: str, producer: AIOKafkaProducer, *,
                 batch_size: int = 1000, poll_interval_s: float = 1.0) -> None:
        self.engine = engine
        self.database_url = database_url
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.published = 0

    async def publish_pending(self) -> int:
        """Publish every committed row, oldest first; returns how many were published."""
        total = 0
        while True:
            async with self.engine.connect() as conn:
                rows = (await conn.execute(
                    select(outbox.c.position, outbox.c.topic, outbox.c.message_key,
                           outbox.c.headers, outbox.c.payload)
                    .order_by(outbox.c.position).limit(self.batch_size)
                )).all()
            if not rows:
                return total
            futures = [
                await self.producer.send(
                    r.topic,
                    value=r.payload,
                    key=r.message_key.encode() if r.message_key is not None else None,
                    headers=[(name, value.encode()) for name, value in r.headers],
                )
                for r in rows
            ]
            await asyncio.gather(*futures)
            failpoints.hit("relay.after_send")
            positions = [r.position for r in rows]
            async with self.engine.begin() as conn:
                await conn.execute(delete(outbox).where(outbox.c.position.in_(positions)))
                await conn.execute(_NOTIFY_PUBLISHED)
            total += len(rows)
            self.published += len(rows)
            metrics.events_published_total.inc(len(rows))
            if len(rows) < self.batch_size:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the relay lock, then publish on every commit notification (or poll interval)."""
        async with await psycopg.AsyncConnection.connect(libpq_url(self.database_url),
                                                         autocommit=True) as listen:
            await self._acquire_lock(listen, stop)
            if stop.is_set():
                return
            await listen.execute(f"LISTEN {OUTBOX_CHANNEL}")
            log.info("relay.started")
            while not stop.is_set():
                await self.publish_pending()
                # Wake on the first commit notification, or poll when none comes.
                async for _ in listen.notifies(timeout=self.poll_interval_s, stop_after=1):
                    pass
            await self.publish_pending()
            log.info("relay.stopped", published=self.published)

    async def _acquire_lock(self, conn: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        while not stop.is_set():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_ID,))
            row = await cur.fetchone()
            if row and row[0]:
                return
            log.info("relay.standby", reason="another relay holds the lock")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=2.0)
