"""The outbox relay: publishes committed outbox rows to Kafka, then deletes them.

Ordering: rows are read in position order and a row only becomes visible once its transaction
has committed. A writer of stream version N+1 must have read version N committed, so within a
stream positions follow commit order and per-key order on Kafka is kept. Nothing is skipped,
because the relay keeps no "last position" cursor: whatever is still in the table is unpublished
(the classic hazard of a cursor is shown in the tests). Only one relay per database publishes at a
time (a session advisory lock); a second one waits as a hot standby.

Read-your-writes: the delete and a notification on `outbox_published` commit together, so an
API process waiting for its rows (consistency.py) learns at once that they are in Kafka; the
notification names the positions (`outbox.announce_positions`), so it need not ask the table.

At-least-once: a relay killed after sending but before deleting sends those rows again on restart;
consumers drop the duplicates by event id.

Never stalled: a row Kafka refuses for good (too large, not authorised, an invalid topic) is moved
to `parked_message` with the error, in the transaction that deletes the published rows, and the
relay goes on; diagnostics report parked rows as critical and `python -m <service> outbox` lists,
retries or drops them. Any other failure (Kafka away) leaves every row in place for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy import Row, extract, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_platform import failpoints, metrics, tracing
from misp_platform.db import OUTBOX_CHANNEL, PUBLISHED_CHANNEL, libpq_url, outbox, parked_message
from misp_platform.outbox import announce_positions

log = structlog.get_logger(__name__)

_DELETE_AND_NOTIFY = text(f"""
    WITH gone AS (DELETE FROM outbox WHERE position = ANY(:positions) RETURNING 1)
    SELECT pg_notify('{PUBLISHED_CHANNEL}', :announced) FROM (SELECT count(*) FROM gone) AS g
""")
RELAY_LOCK_ID = 0x6D697370_72656C61  # "misprela": one relay per database
# The backlog gauges' query: after a round that published, at most once a second (one cheap
# statement on a table the drain just emptied); after idle rounds, every 10 s.
_BACKLOG = select(func.count(), extract("epoch", func.now() - func.min(outbox.c.created_at)))
BACKLOG_BUSY_S = 1.0
BACKLOG_IDLE_S = 10.0

# Refusals that no retry can change: the row is parked instead of blocking the ones after it.
REFUSED_FOR_GOOD: tuple[type[Exception], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
    TopicAuthorizationFailedError, InvalidTopicError, UnsupportedForMessageFormatError,
)


class OutboxRelay:
    """Drains the outbox of one service database into Kafka."""

    def __init__(self, engine: AsyncEngine, database_url: str, producer: AIOKafkaProducer, *,
                 batch_size: int = 1000, poll_interval_s: float = 1.0) -> None:
        self.engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.database_url = database_url
        self.producer = producer
        self.batch_size = batch_size
        self.poll_interval_s = poll_interval_s
        self.published = 0
        # The last backlog measurement (monotonic clock), and the oldest row's age then (None:
        # none).
        self._measured_at: float | None = None
        self._oldest_age_s: float | None = None

    async def publish_pending(self) -> int:
        """Publish every committed row, oldest first; returns how many were published."""
        total = 0
        # One connection, in autocommit, for the whole drain: a batch costs a query, Kafka and
        # one statement (delete and notify), not a checkout, BEGIN and COMMIT around each. On a
        # loaded machine every round trip saved is a wait for the CPU, and every write's answer
        # waits for this (consistency.py).
        async with self._autocommit.connect() as conn:
            while True:
                rows = (await conn.execute(
                    select(outbox.c.position, outbox.c.topic, outbox.c.message_key,
                           outbox.c.headers, outbox.c.payload, outbox.c.created_at)
                    .order_by(outbox.c.position).limit(self.batch_size)
                )).all()
                if not rows:
                    return total
                fetched = len(rows)
                refusals = await self._send(rows)
                failpoints.hit("relay.after_send")
                positions = [r.position for r in rows]
                if refusals:
                    await self._park(rows, refusals)
                else:
                    # One statement: the delete and the notification commit together.
                    await conn.execute(_DELETE_AND_NOTIFY, {
                        "positions": positions, "announced": announce_positions(positions)})
                rows = [r for r in rows if r.position not in refusals]
                total += len(rows)
                self.published += len(rows)
                metrics.events_published_total.inc(len(rows))
                if fetched < self.batch_size:
                    return total

    async def measure_backlog(self) -> None:
        """Count the outbox's rows and the oldest one's age into the backlog gauges (the age in
        the database's clock, as `created_at`)."""
        async with self._autocommit.connect() as conn:
            count, age = (await conn.execute(_BACKLOG)).one()
        self._measured_at = time.monotonic()
        self._oldest_age_s = float(age) if age is not None else None
        metrics.outbox_backlog.set(count)

    def oldest_age_s(self) -> float:
        """The oldest row's age now: as measured, plus the time since (a relay stuck in a drain
        shows an age that grows, not the last one it measured)."""
        if self._oldest_age_s is None or self._measured_at is None:
            return 0.0
        return self._oldest_age_s + time.monotonic() - self._measured_at

    async def _measure_when_due(self, published: int) -> None:
        since = None if self._measured_at is None else time.monotonic() - self._measured_at
        if since is not None and since < (BACKLOG_BUSY_S if published else BACKLOG_IDLE_S):
            return
        try:
            await self.measure_backlog()
        except Exception as exc:  # a gauge never stops the relay; the next drain says more
            log.warning("relay.backlog_not_measured", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _park(self, rows: Sequence[Row[Any, Any, Any, Any, Any, Any]],
                    refusals: dict[int, str]) -> None:
        """Move the refused rows to `parked_message` and delete the batch, in one transaction."""
        parked = [(r, refusals[r.position]) for r in rows if r.position in refusals]
        async with self.engine.begin() as conn:
            await conn.execute(insert(parked_message), [
                {"position": r.position, "topic": r.topic,
                 "message_key": r.message_key, "headers": r.headers,
                 "payload": r.payload, "created_at": r.created_at, "error": error}
                for r, error in parked])
            positions = [r.position for r in rows]
            await conn.execute(_DELETE_AND_NOTIFY, {
                "positions": positions, "announced": announce_positions(positions)})
        for r, error in parked:
            log.error("relay.message_parked", position=r.position, topic=r.topic, error=error)
        metrics.outbox_parked_total.inc(len(parked))

    async def _send(self, rows: Sequence[Row[Any, Any, Any, Any, Any, Any]]) -> dict[int, str]:
        """Send the rows in position order and wait for Kafka; the positions refused for good,
        with the error. Any other failure raises: nothing is deleted, all is sent again."""
        refusals: dict[int, str] = {}
        waiting = []
        spans = self._producer_spans(rows) if tracing.enabled() else {}
        for r in rows:
            try:
                waiting.append((r.position, await self.producer.send(
                    r.topic,
                    value=r.payload,
                    key=r.message_key.encode() if r.message_key is not None else None,
                    headers=[(name, value.encode()) for name, value in r.headers],
                )))
            except REFUSED_FOR_GOOD as exc:  # checked by the client (e.g. over its size limit)
                refusals[r.position] = f"{type(exc).__name__}: {exc}"[:2000]
        try:
            outcomes = await asyncio.gather(*(f for _, f in waiting), return_exceptions=True)
            for (position, _), outcome in zip(waiting, outcomes, strict=True):
                if isinstance(outcome, REFUSED_FOR_GOOD):
                    refusals[position] = f"{type(outcome).__name__}: {outcome}"[:2000]
                elif isinstance(outcome, BaseException):
                    raise outcome
        finally:
            for position, span in spans.items():
                if position in refusals:
                    span.set_status(StatusCode.ERROR, "refused by Kafka")
                span.end()
        return refusals

    @staticmethod
    def _producer_spans(rows: Sequence[Row[Any, Any, Any, Any, Any, Any]]) -> dict[int, Span]:
        """A producer span per row written inside a trace, child of the context the row's
        event carries (its `ce_traceparent` header), open until Kafka has answered."""
        spans: dict[int, Span] = {}
        for r in rows:
            parent = tracing.context_of_headers(r.headers)
            if parent is None:
                continue  # written outside of any trace (heartbeats, schedules): no span
            attributes = {"messaging.system": "kafka", "messaging.operation.type": "send",
                          "messaging.destination.name": r.topic}
            for name, value in r.headers:
                if name in ("ce_id", "ce_type"):
                    attributes["cloudevents.event_" + name[3:]] = value
            span = tracing.start_span(f"send {r.topic}", kind=SpanKind.PRODUCER, parent=parent,
                                      attributes=attributes)
            if span is not None:
                spans[r.position] = span
        return spans

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the relay lock, then publish on every commit notification (or poll interval)."""
        async with await psycopg.AsyncConnection.connect(libpq_url(self.database_url),
                                                         autocommit=True) as listen:
            await self._acquire_lock(listen, stop)
            if stop.is_set():
                return
            await listen.execute(f"LISTEN {OUTBOX_CHANNEL}")
            log.info("relay.started")
            metrics.outbox_oldest_age_seconds.set_function(self.oldest_age_s)
            while not stop.is_set():
                await self._measure_when_due(await self.publish_pending())
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
