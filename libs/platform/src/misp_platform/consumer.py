"""The consumer runner: at-least-once delivery, effectively-once effects, a DLQ for poison.

For each message the runner records `(consumer, event id)` in `processed_message` in the same
transaction as the handler's effect, and commits Kafka offsets only after that transaction. A
redelivered message finds its mark and is skipped. A message that cannot be decoded, or whose
handler still fails after retries, is written to `misp.<service>.dlq.v1` through the outbox (same
transaction as its `dead_lettered` mark) and the consumer goes on.

Fast path: a whole batch in one transaction. If anything in it fails, the batch is rolled back
and replayed message by message, each in a savepoint, with retries and backoff.

The same transaction moves the group's `consumer_position` past the batch and notifies
`consumer_progress`, so a reader can wait until this projection holds what Kafka held when it
asked (consistency.py). A dead-lettered message flags its stream (`flagged_stream`) until it
is replayed, so later events applied without it are visible in diagnostics.

Latency: `run` keeps one connection for its batches (no checkout and ping per batch), fetches
and decodes the next batch while one is applied and tops it up with what arrived meanwhile,
and commits Kafka offsets in the background, one commit at a time.

Sent after the commit: a handler that also writes a message to the outbox may ask, with
`send_after_commit(conn, messages)`, for a copy of it to go straight to Kafka once its
transaction commits (the jobs service's answers to claims: a worker waits for them). The
outbox copy stays the durable one; the direct one only saves the relay's crossing. While `run`
runs, the runner sends them with a producer it starts at the first such message and stops with
`run`; it awaits nothing but the record's place in the producer's buffer, and a send that fails
is only logged. A batch rolled back (or a message's savepoint, on the slow path) sends none of
what it asked for; outside `run` (`process`), nothing is sent directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Container,
    Iterator,
    Mapping,
    Sequence,
)
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy import column, select, text, values
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import String
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from misp_contracts.envelope import Envelope, from_kafka
from misp_contracts.topics import dlq_topic
from misp_platform import failpoints, metrics, tracing
from misp_platform.db import PROGRESS_CHANNEL, flagged_stream, processed_message
from misp_platform.kafka import client_options, commit_assigned, create_producer
from misp_platform.outbox import OutgoingMessage, enqueue_messages

log = structlog.get_logger(__name__)

Handler = Callable[[AsyncConnection, Envelope], Awaitable[None]]
# A projection that writes many rows at once (the audit log, ...) may take a run of messages of
# its type in one call; on the slow path it is called with one message at a time.
BatchHandler = Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[None]]

DLQ_HEADER_PREFIX = "dlq_"

CLAIM = text("""
    INSERT INTO processed_message (consumer, message_id, outcome, topic)
    SELECT :consumer, m.id, 'applied', m.topic
    FROM unnest(CAST(:ids AS text[]), CAST(:topics AS text[])) AS m(id, topic)
    ON CONFLICT DO NOTHING
    RETURNING message_id
""")

# Positions only move forward: a redelivery after a rebalance never moves one back. A member
# that records where it stands touches `updated_at` even when nothing moved (it has joined).
SAVE_POSITIONS = text(f"""
    WITH moved AS (
        INSERT INTO consumer_position (consumer, topic, partition, next_offset)
        SELECT :consumer, p.topic, p.partition, p.next_offset
        FROM unnest(CAST(:topics AS text[]), CAST(:partitions AS int[]),
                    CAST(:offsets AS bigint[])) AS p(topic, partition, next_offset)
        ON CONFLICT (consumer, topic, partition) DO UPDATE
        SET next_offset = EXCLUDED.next_offset, updated_at = now()
        WHERE consumer_position.next_offset <= EXCLUDED.next_offset
        RETURNING 1
    )
    SELECT pg_notify('{PROGRESS_CHANNEL}', :consumer) FROM (SELECT count(*) AS n FROM moved) m
    WHERE m.n > 0
""")

# The fast path's marks and positions in one statement (one round trip less per batch): the
# claimed ids come back, and a NULL row when the notification was sent.
CLAIM_AND_SAVE_POSITIONS = text(f"""
    WITH claimed AS (
        INSERT INTO processed_message (consumer, message_id, outcome, topic)
        SELECT :consumer, m.id, 'applied', m.topic
        FROM unnest(CAST(:ids AS text[]), CAST(:topics AS text[])) AS m(id, topic)
        ON CONFLICT DO NOTHING
        RETURNING message_id
    ), moved AS (
        INSERT INTO consumer_position (consumer, topic, partition, next_offset)
        SELECT :consumer, p.topic, p.partition, p.next_offset
        FROM unnest(CAST(:position_topics AS text[]), CAST(:partitions AS int[]),
                    CAST(:offsets AS bigint[])) AS p(topic, partition, next_offset)
        ON CONFLICT (consumer, topic, partition) DO UPDATE
        SET next_offset = EXCLUDED.next_offset, updated_at = now()
        WHERE consumer_position.next_offset <= EXCLUDED.next_offset
        RETURNING 1
    ), notified AS (
        SELECT pg_notify('{PROGRESS_CHANNEL}', :consumer) FROM (SELECT count(*) AS n FROM moved) m
        WHERE m.n > 0
    )
    SELECT message_id FROM claimed
    UNION ALL SELECT NULL FROM notified
""")

Positions = dict[TopicPartition, int]


async def save_positions(conn: AsyncConnection, group: str, positions: Positions) -> None:
    """Move the group's positions forward (never back), in the caller's transaction."""
    if not positions:
        return
    items = sorted(positions.items())
    await conn.execute(SAVE_POSITIONS, {
        "consumer": group, "topics": [tp.topic for tp, _ in items],
        "partitions": [tp.partition for tp, _ in items], "offsets": [o for _, o in items]})


class _AfterCommit:
    """What the handlers of the runner's transaction on `conn` asked to send once it commits."""

    __slots__ = ("conn", "messages")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.messages: list[OutgoingMessage] = []


_after_commit: contextvars.ContextVar[_AfterCommit | None] = contextvars.ContextVar(
    "misp_after_commit", default=None)


def send_after_commit(conn: AsyncConnection, messages: Sequence[OutgoingMessage]) -> None:
    """Send `messages` to Kafka once the consumer runner's transaction on `conn` commits: a
    faster copy of messages the handler also wrote to the outbox. Nothing is sent if the
    transaction (or the message's savepoint) rolls back, nor outside a runner's `run`."""
    pending = _after_commit.get()
    if pending is not None and pending.conn is conn:
        pending.messages.extend(messages)


@contextlib.contextmanager
def _unless_rolled_back() -> Iterator[None]:
    """Forget what is asked to be sent after the commit within this block if it raises (a
    savepoint rolled back)."""
    pending = _after_commit.get()
    kept = len(pending.messages) if pending is not None else 0
    try:
        yield
    except BaseException:
        if pending is not None:
            del pending.messages[kept:]
        raise


# Errors of the database itself (connection lost, server restarting): retry the whole batch.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


class Decoded:
    """One Kafka record and what we made of it."""

    __slots__ = ("envelope", "error", "message_id", "record")

    def __init__(self, record: ConsumerRecord, handled: Container[str]) -> None:
        self.record = record
        self.envelope: Envelope | None = None
        self.error: str | None = None
        self.message_id = f"{record.topic}:{record.partition}:{record.offset}"
        headers = dict(record.headers)
        type_ = headers.get("ce_type")
        if type_ is not None and type_.decode("utf-8", "replace") not in handled:
            return  # a type this consumer does not handle: skipped without decoding
        try:
            self.envelope = from_kafka(headers, record.value)
            self.message_id = self.envelope.id
        except Exception as exc:  # anything undecodable is poison, whatever the cause
            self.error = f"undecodable message: {type(exc).__name__}: {exc}"


class ConsumerRunner:
    """Runs one consumer group of a service over its topics (or a topic pattern)."""

    def __init__(self, *, service: str, group: str, engine: AsyncEngine,
                 bootstrap_servers: str, handlers: Mapping[str, Handler],
                 batch_handlers: Mapping[str, BatchHandler] | None = None,
                 topics: Sequence[str] = (), pattern: str | None = None,
                 max_attempts: int = 3, backoff_s: float = 0.2, batch_max: int = 500,
                 failpoint_scope: str = "consumer") -> None:
        if not topics and not pattern:
            raise ValueError("a consumer needs topics or a pattern")
        self.service = service
        self.group = group
        self.engine = engine
        self.bootstrap_servers = bootstrap_servers
        self.batch_handlers: dict[str, BatchHandler] = {
            **{t: _one_by_one(h) for t, h in handlers.items()}, **(batch_handlers or {})}
        self.topics = list(topics)
        self.pattern = pattern
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.batch_max = batch_max
        # Failpoints are named `<scope>.before_commit`...: `consumer` for a service's main
        # consumer, `principals` for its principals consumer (the same process runs both).
        self.failpoint_scope = failpoint_scope
        self.applied = 0
        self.dead_lettered = 0
        # The connection `run` keeps for its batches (None: take one at the next batch);
        # outside of `run`, each transaction takes one from the engine's pool.
        self._holding = False
        self._held: AsyncConnection | None = None
        # The producer of what handlers send after the commit: started at the first message,
        # stopped with `run`.
        self._producer: AIOKafkaProducer | None = None

    def create_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **client_options(self.bootstrap_servers), group_id=self.group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            metadata_max_age_ms=3000,  # a new topic matching the pattern is seen within seconds
            max_poll_records=self.batch_max,
        )

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        consumer = self.create_consumer()
        if self.pattern:
            consumer.subscribe(pattern=self.pattern)
        else:
            consumer.subscribe(self.topics)
        await consumer.start()
        log.info("consumer.started", group=self.group, topics=self.topics, pattern=self.pattern)
        saved: Positions = {}
        # The Kafka commit of the offsets applied runs while the next batches are fetched and
        # applied, one commit at a time: offsets applied meanwhile wait (`uncommitted`) for the
        # next, started once it ends, never awaited by the loop. The effects' transaction
        # already holds the marks and positions, so a commit lost with its process (or late)
        # only means a deduplicated replay.
        committing: asyncio.Task[None] | None = None
        uncommitted: Positions = {}

        def commit_when_free() -> None:
            nonlocal committing
            if committing is not None and committing.done():
                committing.result()  # what `_commit` does not expect ends the loop, as before
                committing = None
            if uncommitted and committing is None:
                committing = asyncio.create_task(self._commit(consumer, dict(uncommitted)))
                uncommitted.clear()
        # The next batch is fetched and decoded while this one is applied (its CPU work fills
        # this one's waits on the database); nothing of it is applied before this one commits,
        # and it takes in what arrived meanwhile (`_topped_up`).
        fetching = asyncio.create_task(self._fetch(consumer))
        self._holding = True
        try:
            while not stop.is_set():
                batches, decoded = await self._topped_up(consumer, *await fetching)
                if ready is not None and consumer.assignment():
                    ready.set()
                if not decoded:
                    commit_when_free()
                    await self._save_idle_positions(consumer, saved)
                    fetching = asyncio.create_task(self._fetch(consumer))
                    continue
                if not await _unless_stopped(
                        failpoints.pause(f"{self.failpoint_scope}.before_batch"), stop):
                    break  # stopped while the batch waited: unapplied, the next owner gets it
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items()}
                fetching = asyncio.create_task(self._fetch(consumer))
                await self.apply(decoded, offsets)
                saved.update(offsets)
                for tp, position in offsets.items():
                    self._measure_lag(consumer, tp, position)
                uncommitted.update(offsets)
                commit_when_free()
        finally:
            fetching.cancel()
            await asyncio.gather(fetching, return_exceptions=True)
            if committing is not None:
                await committing
            if uncommitted:
                await self._commit(consumer, uncommitted)
            self._holding = False
            await self._release()
            await self._stop_producer()
            await consumer.stop()
            log.info("consumer.stopped", group=self.group, applied=self.applied,
                     dead_lettered=self.dead_lettered)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for a batch: while `run` runs, on the connection it keeps (no pool
        checkout and liveness ping, a round trip, per batch); else on one of the engine's. A
        kept connection that failed with the database (lost, restarting) is closed: the next
        transaction connects anew."""
        if not self._holding:
            async with self.engine.begin() as conn:
                yield conn
            return
        if self._held is None:
            self._held = await self.engine.connect()
        conn = self._held
        after = _AfterCommit(conn)
        token = _after_commit.set(after)
        try:
            async with conn.begin():
                yield conn
        except BaseException as exc:
            if conn.invalidated or isinstance(exc, TRANSIENT_DB_ERRORS):
                await self._release()
            raise
        finally:
            _after_commit.reset(token)
        if after.messages:  # committed
            await self._send(after.messages)

    async def _send(self, messages: Sequence[OutgoingMessage]) -> None:
        """Hand committed messages to the producer (started the first time); a failure is
        logged, the outbox copies follow."""
        try:
            if self._producer is None:
                producer = create_producer(self.bootstrap_servers, linger_ms=0)
                await producer.start()
                self._producer = producer
            for m in messages:
                delivery = await m.send(self._producer)
                delivery.add_done_callback(self._log_failed_send)
        except Exception as exc:
            log.warning("consumer.direct_send_failed", group=self.group, error=str(exc))

    def _log_failed_send(self, delivery: asyncio.Future[Any]) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            log.warning("consumer.direct_send_failed", group=self.group,
                        error=str(delivery.exception()))

    async def _stop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _release(self) -> None:
        """Close the kept connection, if any (quietly: it may be broken already)."""
        conn, self._held = self._held, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> tuple[
            dict[TopicPartition, list[ConsumerRecord]], list[Decoded]]:
        """The next batch from Kafka (empty after a wait of 300 ms), decoded."""
        batches = await consumer.getmany(timeout_ms=300, max_records=self.batch_max)
        return batches, self.decode([r for rs in batches.values() for r in rs])

    async def _topped_up(self, consumer: AIOKafkaConsumer,
                         batches: dict[TopicPartition, list[ConsumerRecord]],
                         decoded: list[Decoded]) -> tuple[
            dict[TopicPartition, list[ConsumerRecord]], list[Decoded]]:
        """A prefetched batch with what arrived since it was fetched (while the one before
        was applied), up to `batch_max`: those records are applied now, not one batch later.
        Each partition's records stay in their order."""
        room = self.batch_max - len(decoded)
        if not decoded or room <= 0:
            return batches, decoded
        more = await consumer.getmany(timeout_ms=0, max_records=room)
        if not more:
            return batches, decoded
        for tp, records in more.items():
            batches.setdefault(tp, []).extend(records)
        return batches, decoded + self.decode([r for rs in more.values() for r in rs])

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: Positions) -> None:
        # Only the partitions still assigned: a batch applied while a rebalance took some of
        # its partitions would otherwise fail the whole commit. A refused commit is only
        # logged: the next owner redelivers, the marks dedupe.
        error = await commit_assigned(consumer, offsets)
        if error is not None:
            log.warning("consumer.commit_failed", group=self.group, error=str(error))

    def _measure_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                     position: int) -> None:
        """The lag gauge of a partition still assigned (a rebalance may have taken it while
        its batch was applied: aiokafka knows no highwater of it then)."""
        if tp not in consumer.assignment():
            return
        highwater = consumer.highwater(tp)
        if highwater is not None:
            metrics.consumer_lag.labels(self.group, tp.topic, str(tp.partition)).set(
                max(0, highwater - position))

    async def _save_idle_positions(self, consumer: AIOKafkaConsumer, saved: Positions) -> None:
        """Record where the group stands on partitions that brought nothing new (just assigned,
        or idle since before positions were kept): everything below was applied."""
        idle: Positions = {}
        for tp in consumer.assignment():
            position = _known_position(consumer, tp)
            if position is None:
                continue  # its committed offset is still being fetched: next time
            self._measure_lag(consumer, tp, position)
            if saved.get(tp) != position:
                idle[tp] = position
        if idle:
            try:
                async with self.transaction() as conn:
                    await save_positions(conn, self.group, idle)
            except TRANSIENT_DB_ERRORS as exc:
                log.warning("consumer.positions_not_saved", group=self.group, error=str(exc))
                return
            saved.update(idle)

    async def process(self, records: Sequence[ConsumerRecord],
                      positions: Positions | None = None) -> None:
        """Apply a batch effectively once, and move the group's positions to `positions` in the
        same transaction; retries the batch while the database is unreachable."""
        await self.apply(self.decode(records), positions)

    async def apply(self, decoded: Sequence[Decoded], positions: Positions | None = None) -> None:
        """`process` for a batch already decoded."""
        positions = positions or {}
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
            wait=wait_exponential(multiplier=self.backoff_s, max=10), reraise=True,
        ):
            with attempt:
                try:
                    await self._process_fast(decoded, positions)
                except TRANSIENT_DB_ERRORS:
                    raise
                except Exception as exc:
                    log.info("consumer.batch_fallback", group=self.group, error=str(exc))
                    await self._process_one_by_one(decoded, positions)

    def decode(self, records: Sequence[ConsumerRecord]) -> list[Decoded]:
        """The batch's records decoded (a record of a type this runner does not handle is left
        undecoded); a subclass may decode otherwise, or note what it needs of each record."""
        return [Decoded(r, self.batch_handlers) for r in records]

    async def _process_fast(self, batch: Sequence[Decoded], positions: Positions) -> None:
        if any(d.error for d in batch):
            raise ValueError("batch holds an undecodable message")
        wanted = [d for d in batch if d.envelope and d.envelope.type in self.batch_handlers]
        applied = 0
        # Traced, a run also ends where the trace context changes: each run is handled in the
        # span of its trace, and what the handler writes carries that span's context.
        traced = tracing.enabled()
        async with self.transaction() as conn:
            fresh = await self._claim_and_save_positions(conn, wanted, positions)
            run: list[Envelope] = []
            topic = ""
            for d in wanted:
                if d.message_id not in fresh:
                    continue  # applied before (a redelivery)
                fresh.discard(d.message_id)  # a duplicate inside the batch runs once
                assert d.envelope is not None
                if run and (run[-1].type != d.envelope.type or (
                        traced and run[-1].traceparent != d.envelope.traceparent)):
                    await self._handle(conn, run, topic)
                    run = []
                run.append(d.envelope)
                topic = d.record.topic
                applied += 1
            if run:
                await self._handle(conn, run, topic)
            failpoints.hit(f"{self.failpoint_scope}.before_commit")
        failpoints.hit(f"{self.failpoint_scope}.after_commit")
        self.applied += applied
        metrics.messages_consumed_total.labels(outcome="applied").inc(applied)

    async def _handle(self, conn: AsyncConnection, run: list[Envelope], topic: str) -> None:
        """Apply a run of one type (and, traced, one trace context) with its batch handler."""
        if not tracing.enabled():
            await self.batch_handlers[run[0].type](conn, run)
            return
        with tracing.consumer_span(run, topic=topic, group=self.group):
            await self.batch_handlers[run[0].type](conn, run)

    async def _claim(self, conn: AsyncConnection, batch: Sequence[Decoded]) -> set[str]:
        """Insert the processed marks; returns the ids that were not processed before."""
        if not batch:
            return set()
        # One statement with array parameters: compiled once, whatever the batch size.
        result = await conn.execute(CLAIM, {
            "consumer": self.group,
            "ids": [d.message_id for d in batch],
            "topics": [d.record.topic for d in batch],
        })
        return {r.message_id for r in result}

    async def _claim_and_save_positions(self, conn: AsyncConnection, batch: Sequence[Decoded],
                                        positions: Positions) -> set[str]:
        """`_claim` and `save_positions` in one statement (the same transaction either way)."""
        if not positions:
            return await self._claim(conn, batch)
        items = sorted(positions.items())
        result = await conn.execute(CLAIM_AND_SAVE_POSITIONS, {
            "consumer": self.group,
            "ids": [d.message_id for d in batch], "topics": [d.record.topic for d in batch],
            "position_topics": [tp.topic for tp, _ in items],
            "partitions": [tp.partition for tp, _ in items], "offsets": [o for _, o in items]})
        return {r.message_id for r in result if r.message_id is not None}

    async def _process_one_by_one(self, batch: Sequence[Decoded], positions: Positions) -> None:
        async with self.transaction() as conn:
            for d in batch:
                if d.error:
                    await self._dead_letter(conn, d, d.error)
                elif d.envelope and d.envelope.type in self.batch_handlers:
                    await self._apply_with_retries(conn, d)
            await save_positions(conn, self.group, positions)
            failpoints.hit(f"{self.failpoint_scope}.before_commit")
        failpoints.hit(f"{self.failpoint_scope}.after_commit")

    async def _apply_with_retries(self, conn: AsyncConnection, d: Decoded) -> None:
        assert d.envelope is not None
        for attempt in range(1, self.max_attempts + 1):
            try:
                with _unless_rolled_back():
                    async with conn.begin_nested():
                        if not await self._claim(conn, [d]):
                            return  # applied before: a redelivery
                        await self._handle(conn, [d.envelope], d.record.topic)
                self.applied += 1
                metrics.messages_consumed_total.labels(outcome="applied").inc()
                return
            except TRANSIENT_DB_ERRORS:
                raise
            except Exception as exc:
                if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                    raise
                log.warning("consumer.handler_failed", group=self.group, type=d.envelope.type,
                            event_id=d.message_id, attempt=attempt, error=str(exc))
                if attempt == self.max_attempts:
                    await self._dead_letter(conn, d, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))

    async def _dead_letter(self, conn: AsyncConnection, d: Decoded, error: str) -> None:
        record = d.record
        headers = [(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)]
        headers += [
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_consumer", self.group.encode()),
            ("dlq_message_id", d.message_id.encode()),
            ("dlq_error", error[:4000].encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        async with conn.begin_nested():
            stmt = pg_insert(processed_message).values(
                consumer=self.group, message_id=d.message_id, outcome="dead_lettered",
                topic=record.topic)
            await conn.execute(stmt.on_conflict_do_update(
                index_elements=[processed_message.c.consumer, processed_message.c.message_id],
                set_={"outcome": "dead_lettered"}))
            await enqueue_messages(conn, [OutgoingMessage(
                topic=dlq_topic(self.service), key=key, headers=headers,
                value=record.value or b"")])
            if key is not None:
                await conn.execute(pg_insert(flagged_stream).values(
                    consumer=self.group, topic=record.topic, stream_key=key,
                    message_id=d.message_id, error=error[:4000]).on_conflict_do_nothing())
        self.dead_lettered += 1
        metrics.messages_consumed_total.labels(outcome="dead_lettered").inc()
        log.error("consumer.dead_lettered", group=self.group, event_id=d.message_id,
                  topic=record.topic, offset=record.offset, error=error[:500])


async def _unless_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
    """Await `work` unless `stop` is set first (then it is cancelled); whether it finished. A
    stop must not wait for a delay armed at a failpoint (tests stall a consumer for minutes)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stopping):
            pending.cancel()
    if task.cancelled() or not task.done():
        return False
    task.result()  # its exception, if any
    return True


def _known_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The partition's position if the consumer knows it, without waiting: `position()` would
    wait for an unknown one, holding the whole loop (and every other partition) meanwhile."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
    except AttributeError:  # no subscription or assignment any more (a rebalance)
        return None
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


async def already_processed(conn: AsyncConnection, consumer: str, ids: Sequence[str]) -> set[str]:
    """Which of these message ids a consumer has a mark for (for tests and the DLQ tool)."""
    if not ids:
        return set()
    wanted = values(column("id", String), name="wanted").data([(i,) for i in ids])
    result = await conn.execute(
        select(processed_message.c.message_id)
        .where(processed_message.c.consumer == consumer)
        .where(processed_message.c.message_id.in_(select(wanted.c.id))))
    return {r.message_id for r in result}


def _one_by_one(handler: Handler) -> BatchHandler:
    async def each(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            await handler(conn, envelope)

    return each
