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

At-least-once: a relay killed after sending but before deleting sends those rows again on restart,
as does one whose delete a crash of the database lost (a delete's commit does not wait for the
disk: the rows are in Kafka already); consumers drop the duplicates by event id.

Throughput: the relay works in rounds on one connection. A round's rows go out as one record
batch per partition (built by the relay, so no per-record future, linger or accumulator work);
while Kafka takes them, the previous round's rows are deleted and the next round's are read
(skipping the rows on their way, from the table's start: still no cursor). A round is sent only
once Kafka has acknowledged the previous one, and a row that does not fit its partition's batch
waits for the next round with every later row of that partition: per-key order holds, and a
batch Kafka refuses is sent again record by record with nothing after it already published.
Commit notifications are read as they arrive and wake one drain, however many came meanwhile.
Latency: when commits were announced during a drain, its last rows are deleted by the next one
while Kafka takes that drain's first round, not before it starts; the backlog gauges are
measured in the background, off the path of any row.

Never stalled: a row Kafka refuses for good (too large, not authorised, an invalid topic) is moved
to `parked_message` with the error, in the transaction that deletes the published rows, and the
relay goes on; diagnostics report parked rows as critical and `python -m <service> outbox` lists,
retries or drops them. Any other failure (Kafka away) leaves every row in place for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from opentelemetry.trace import Span, SpanKind, StatusCode
from sqlalchemy import Row, extract, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_platform import failpoints, metrics, tracing
from misp_platform.db import OUTBOX_CHANNEL, PUBLISHED_CHANNEL, libpq_url, outbox, parked_message
from misp_platform.outbox import announce_positions, position_runs

log = structlog.get_logger(__name__)

_Row = Row[Any]

# The oldest rows but those on their way to Kafka (a multirange of positions; '{}': none). The
# headers come as JSON text, parsed by orjson: the driver's json module took a third of the
# relay's time.
_FETCH = text("""
    SELECT position, topic, message_key, CAST(headers AS text) AS headers, payload, created_at
    FROM outbox
    WHERE NOT (position <@ CAST(:skip AS int8multirange))
    ORDER BY position LIMIT :n
""")
# The range makes it an index scan even before the table was ever analyzed (a fresh database
# taking a large backlog); alone, `= ANY` was planned as a scan of the whole table per round.
# The delete's commit does not wait for its WAL to reach the disk (`synchronous_commit` off for
# this transaction alone): the rows are in Kafka already, so a delete lost with a crash of the
# database only publishes them again, which consumers drop by event id (at-least-once, as a
# relay killed before its delete). Every other write of the service keeps its durable commit.
_DELETE_AND_NOTIFY = text(f"""
    WITH gone AS (DELETE FROM outbox WHERE position BETWEEN :first AND :last
                  AND position = ANY(:positions) RETURNING 1)
    SELECT pg_notify('{PUBLISHED_CHANNEL}', :announced),
           set_config('synchronous_commit', 'off', true)
    FROM (SELECT count(*) FROM gone) AS g
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


# How many keys' partitions are remembered: a stream's key comes back with each of its events,
# and murmur2 in Python costs microseconds a key.
PARTITION_CACHE_KEYS = 65536


@functools.lru_cache(maxsize=PARTITION_CACHE_KEYS)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition the producer's own partitioner (murmur2 of the key, as Java's) gives `key`
    among `partitions` numbered 0..partitions-1: the one `send` would have chosen. Remembered
    per (key, partition count): a topic that grows gets its keys hashed anew."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@functools.lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data`: aiokafka's `murmur2` (the reference, in the tests), its 4-byte
    words read at once and its redundant masks left out. aiokafka's took about 30 us a new key,
    a tenth of the relay's CPU when every key is new (a stream's first event); no compiled
    murmur2 on PyPI is well kept."""
    length = len(data)
    h = 0x9747B28C ^ length
    for k in _words(length >> 2).unpack_from(data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & 3
    if tail:
        last = length - tail
        if tail == 3:
            h ^= data[last + 2] << 16
        if tail >= 2:
            h ^= data[last + 1] << 8
        h = ((h ^ data[last]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


_PARTITIONER = DefaultPartitioner()


@dataclass
class _PartitionBatch:
    """The records of one round for one partition: one Kafka record batch."""

    tp: TopicPartition
    builder: BatchBuilder
    rows: list[_Row] = field(default_factory=list)


class OutboxRelay:
    """Drains the outbox of one service database into Kafka."""

    def __init__(self, engine: AsyncEngine, database_url: str, producer: AIOKafkaProducer, *,
                 batch_size: int = 2000, poll_interval_s: float = 1.0) -> None:
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
        self._measuring: asyncio.Task[None] | None = None
        # Positions published and not deleted yet, left by a drain to the next one (only while
        # `run` drains again at once).
        self._held: list[int] = []

    async def publish_pending(self, conn: AsyncConnection | None = None) -> int:
        """Publish every committed row, oldest first; returns how many were published. On
        `conn` (a connection in autocommit) when given, else on one of its own."""
        if conn is not None:
            return await self._drain(conn)
        async with self._autocommit.connect() as own:
            return await self._drain(own)

    async def _drain(self, conn: AsyncConnection, *,
                     more_coming: Callable[[], bool] = lambda: False) -> int:
        """Rounds until a read finds nothing. One connection, in autocommit: a round costs a
        read and one statement (delete and notify), no BEGIN and COMMIT around them. While
        Kafka takes a round's records, the previous round's rows are deleted and the next
        round's are read (outside of those on their way), so the waits overlap; a round is
        only sent once Kafka has acknowledged the one before.

        When `more_coming()` says at the end that commits were announced meanwhile, the last
        round's rows are deleted by the next drain, while Kafka takes its first round, instead
        of before it starts: the new rows wait for one statement less (their reader learns it
        one read and one send later)."""
        acknowledged = self._held  # published, not deleted yet
        self._held = []
        try:
            return await self._rounds(conn, acknowledged, more_coming)
        except BaseException:
            # Whatever was published stays known as such: the next drain deletes it.
            self._held = self._held or acknowledged
            raise

    async def _rounds(self, conn: AsyncConnection, acknowledged: list[int],
                      more_coming: Callable[[], bool]) -> int:
        """The drain's rounds; `acknowledged` (published, not deleted yet) is updated in
        place, so a failure leaves it saying what is published."""
        total = 0
        rows = await self._fetch(conn, acknowledged)
        while rows:
            batches, refusals = await self._batches(rows)
            sent = [r for b in batches.values() for r in b.rows]
            # This round's rows: those sent and those of topics refused as a whole.
            done = sent + [r for r in rows if r.position in refusals]
            spans = self._producer_spans(sent) if tracing.enabled() else {}
            try:
                deliveries = []
                for b in batches.values():
                    b.builder.close()  # complete: sent at once, no linger
                    deliveries.append(await self.producer.send_batch(
                        b.builder, b.tp.topic, partition=b.tp.partition))
                if acknowledged:
                    await self._delete(conn, acknowledged)
                    acknowledged.clear()
                following = await self._fetch(conn, [r.position for r in done])
                refusals.update(await self._settle(list(batches.values()), deliveries))
            finally:
                for position, span in spans.items():
                    if position in refusals:
                        span.set_status(StatusCode.ERROR, "refused by Kafka")
                    span.end()
            failpoints.hit("relay.after_send")
            if refusals:
                await self._park(done, refusals)
            else:
                acknowledged.extend(r.position for r in done)
            published = len(done) - len(refusals)
            total += published
            self.published += published
            metrics.events_published_total.inc(published)
            rows = following
        if acknowledged and more_coming():
            self._held = list(acknowledged)
        elif acknowledged:
            await self._delete(conn, acknowledged)
            acknowledged.clear()
        return total

    async def _fetch(self, conn: AsyncConnection, on_their_way: Sequence[int]) -> list[_Row]:
        """The oldest committed rows, from the table's start (no cursor), but for those sent
        and not deleted yet."""
        skip = "{" + ",".join(f"[{a},{b}]" for a, b in position_runs(on_their_way)) + "}"
        return list((await conn.execute(_FETCH, {"skip": skip, "n": self.batch_size})).all())

    async def _delete(self, conn: AsyncConnection, positions: Sequence[int]) -> None:
        """Delete published rows and say so on `outbox_published`, in one statement."""
        await conn.execute(_DELETE_AND_NOTIFY, {
            "first": min(positions), "last": max(positions), "positions": positions,
            "announced": announce_positions(positions)})

    async def _batches(self, rows: Sequence[_Row]) -> tuple[
            dict[TopicPartition, _PartitionBatch], dict[int, str]]:
        """The round's records, a batch per partition, in position order, and the rows of
        topics refused as a whole (invalid, forbidden), with the error. A record that does not
        fit its partition's batch waits for the next round with every later record of that
        partition, so a partition never has two batches of the relay in flight: if Kafka
        refuses one, nothing after it in that partition is already published."""
        refused_topics: dict[str, str] = {}
        partitions: dict[str, list[int]] = {}
        for topic in {r.topic for r in rows}:
            try:
                partitions[topic] = sorted(await self.producer.partitions_for(topic))
            except REFUSED_FOR_GOOD as exc:
                refused_topics[topic] = _error(exc)
        refusals: dict[int, str] = {}
        batches: dict[TopicPartition, _PartitionBatch] = {}
        full: set[TopicPartition] = set()
        for r in rows:
            if r.topic in refused_topics:
                refusals[r.position] = refused_topics[r.topic]
                continue
            key = r.message_key.encode() if r.message_key is not None else None
            every = partitions[r.topic]
            if key is None:
                tp = TopicPartition(r.topic, _PARTITIONER(None, every, every))
            else:
                tp = TopicPartition(r.topic, every[partition_of(key, len(every))])
            if tp in full:
                continue
            batch = batches.get(tp)
            if batch is None:
                batch = batches[tp] = _PartitionBatch(tp, self.producer.create_batch())
            # The first record always fits, whatever its size: Kafka judges it.
            if batch.builder.append(timestamp=None, key=key, value=r.payload,
                                    headers=_headers(r.headers)) is None:
                full.add(tp)
                continue
            batch.rows.append(r)
        return batches, refusals

    async def _settle(self, batches: Sequence[_PartitionBatch],
                      deliveries: Sequence[Awaitable[object]]) -> dict[int, str]:
        """Wait for Kafka's answers; the positions refused for good, with the error. A batch
        refused for good is sent again record by record, to park only the records at fault.
        Any other failure raises: nothing is deleted, all is sent again."""
        refusals: dict[int, str] = {}
        outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
        for batch, outcome in zip(batches, outcomes, strict=True):
            if isinstance(outcome, REFUSED_FOR_GOOD):
                self._rewind_sequence(batch.tp, len(batch.rows))
                refusals.update(await self._send_one_by_one(batch.tp, batch.rows))
            elif isinstance(outcome, BaseException):
                raise outcome
        return refusals

    async def _send_one_by_one(self, tp: TopicPartition, rows: Sequence[_Row]) -> dict[int, str]:
        """Send each row of a partition and wait for Kafka before the next; the refusals, with
        the error."""
        refusals: dict[int, str] = {}
        for r in rows:
            try:
                delivery = await self.producer.send(
                    r.topic, value=r.payload, partition=tp.partition,
                    key=r.message_key.encode() if r.message_key is not None else None,
                    headers=_headers(r.headers))
            except REFUSED_FOR_GOOD as exc:  # by the client: over its size limit
                refusals[r.position] = _error(exc)
                continue
            try:
                await delivery
            except REFUSED_FOR_GOOD as exc:  # by the broker
                refusals[r.position] = _error(exc)
                self._rewind_sequence(tp, 1)
        return refusals

    def _rewind_sequence(self, tp: TopicPartition, records: int) -> None:
        """Give back the sequence numbers of records the broker refused. aiokafka's idempotent
        producer counts them as sent (Java's adjusts them), so the partition's next batch would
        be refused as out of order; no other batch of the relay is in flight there meanwhile."""
        manager = getattr(self.producer, "_txn_manager", None)
        if manager is not None:
            manager.increment_sequence_number(tp, -records)

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

    def _measure_when_due(self, published: int) -> None:
        """Measure the backlog in the background when due: off the path of the next drain."""
        if self._measuring is not None and not self._measuring.done():
            return
        since = None if self._measured_at is None else time.monotonic() - self._measured_at
        if since is not None and since < (BACKLOG_BUSY_S if published else BACKLOG_IDLE_S):
            return
        self._measured_at = time.monotonic()  # not due again while this one runs
        self._measuring = asyncio.create_task(self._measure_quietly())

    async def _measure_quietly(self) -> None:
        try:
            await self.measure_backlog()
        except Exception as exc:  # a gauge never stops the relay; the next drain says more
            log.warning("relay.backlog_not_measured", error=f"{type(exc).__name__}: {exc}"[:300])

    async def _park(self, rows: Sequence[_Row], refusals: dict[int, str]) -> None:
        """Move the refused rows to `parked_message` and delete the round's, in one
        transaction."""
        parked = [(r, refusals[r.position]) for r in rows if r.position in refusals]
        async with self.engine.begin() as conn:
            await conn.execute(insert(parked_message), [
                {"position": r.position, "topic": r.topic,
                 "message_key": r.message_key, "headers": orjson.loads(r.headers),
                 "payload": r.payload, "created_at": r.created_at, "error": error}
                for r, error in parked])
            await self._delete(conn, [r.position for r in rows])
        for r, error in parked:
            log.error("relay.message_parked", position=r.position, topic=r.topic, error=error)
        metrics.outbox_parked_total.inc(len(parked))

    @staticmethod
    def _producer_spans(rows: Sequence[_Row]) -> dict[int, Span]:
        """A producer span per row written inside a trace, child of the context the row's
        event carries (its `ce_traceparent` header), open until Kafka has answered."""
        spans: dict[int, Span] = {}
        for r in rows:
            headers = orjson.loads(r.headers)
            parent = tracing.context_of_headers(headers)
            if parent is None:
                continue  # written outside of any trace (heartbeats, schedules): no span
            attributes = {"messaging.system": "kafka", "messaging.operation.type": "send",
                          "messaging.destination.name": r.topic}
            for name, value in headers:
                if name in ("ce_id", "ce_type"):
                    attributes["cloudevents.event_" + name[3:]] = value
            span = tracing.start_span(f"send {r.topic}", kind=SpanKind.PRODUCER, parent=parent,
                                      attributes=attributes)
            if span is not None:
                spans[r.position] = span
        return spans

    async def run(self, stop: asyncio.Event) -> None:
        """Hold the relay lock, then publish on commit notifications (or each poll interval).
        The notifications are read as they come and wake one drain however many arrived
        meanwhile; the drains share one connection, taken for the relay's life."""
        async with await psycopg.AsyncConnection.connect(libpq_url(self.database_url),
                                                         autocommit=True) as listen:
            await self._acquire_lock(listen, stop)
            if stop.is_set():
                return
            await listen.execute(f"LISTEN {OUTBOX_CHANNEL}")
            log.info("relay.started")
            metrics.outbox_oldest_age_seconds.set_function(self.oldest_age_s)
            wake = asyncio.Event()
            listener = asyncio.create_task(_wake_on_notifications(listen, wake))
            stopping = asyncio.create_task(_wake_on_stop(stop, wake))
            try:
                async with self._autocommit.connect() as conn:
                    while not stop.is_set():
                        wake.clear()  # a commit from now on wakes the next drain
                        self._measure_when_due(await self._drain(
                            conn, more_coming=lambda: wake.is_set() and not stop.is_set()))
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(self.poll_interval_s):
                                await wake.wait()
                        if listener.done():
                            listener.result()  # the LISTEN connection failed: so does the role
                            raise RuntimeError("the relay's LISTEN connection stopped")
                    await self._drain(conn)
            finally:
                tasks = [listener, stopping, *([self._measuring] if self._measuring else [])]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
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


async def _wake_on_notifications(listen: psycopg.AsyncConnection, wake: asyncio.Event) -> None:
    try:
        async for _ in listen.notifies():
            wake.set()
    finally:
        wake.set()  # ended or failed: the loop looks at why


async def _wake_on_stop(stop: asyncio.Event, wake: asyncio.Event) -> None:
    await stop.wait()
    wake.set()


def _headers(stored: str) -> list[tuple[str, bytes]]:
    """Kafka headers from the outbox's `[[name, text], ...]` (as JSON text)."""
    return [(name, value.encode()) for name, value in orjson.loads(stored)]


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]
