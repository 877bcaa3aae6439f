"""The consumer runner: at-least-once delivery, effectively-once effects, a DLQ for poison.

For each message the runner records `(consumer, event id)` in `processed_message` in the same
transaction as the handler's effect, and commits Kafka offsets only after that transaction. A
redelivered message finds its mark and is skipped. A message that cannot be decoded, or whose
handler still fails after retries, is written to `misp.<service>.dlq.v1` through the outbox (same
transaction as its `dead_lettered` mark) and the consumer goes on.

Fast path: a whole batch in one transaction. If anything in it fails, the batch is rolled back
and replayed message by message, each in a savepoint, with retries and backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError
from sqlalchemy import column, select, text, values
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.types import String
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from misp_contracts.envelope import Envelope, from_kafka
from misp_contracts.topics import dlq_topic
from misp_platform import failpoints, metrics
from misp_platform.db import processed_message
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
        type_ = next((v for k, v in record.headers if k == "ce_type"), None)
        if type_ is not None and type_.decode("utf-8", "replace") not in handled:
            return  # a type this consumer does not handle: skipped without decoding
        try:
            self.envelope = from_kafka(record.headers, record.value)
            self.message_id = self.envelope.id
        except Exception as exc:  # anything undecodable is poison, whatever the cause
            self.error = f"undecodable message: {type(exc).__name__}: {exc}"


class ConsumerRunner:
    """Runs one consumer group of a service over its topics (or a topic pattern)."""

    def __init__(self, *, service: str, group: str, engine: AsyncEngine,
                 bootstrap_servers: str, handlers: Mapping[str, Handler],
                 batch_handlers: Mapping[str, BatchHandler] | None = None,
                 topics: Sequence[str] = (), pattern: str | None = None,
                 max_attempts: int = 3, backoff_s: float = 0.2, batch_max: int = 500) -> None:
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
        self.applied = 0
        self.dead_lettered = 0

    def create_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group,
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
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=300, max_records=self.batch_max)
                if ready is not None and consumer.assignment():
                    ready.set()
                records = [r for rs in batches.values() for r in rs]
                if not records:
                    continue
                await self.process(records)
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items()}
                try:
                    await consumer.commit(offsets)
                except (CommitFailedError, KafkaError) as exc:
                    # A rebalance took the partitions: the next owner redelivers, marks dedupe.
                    log.warning("consumer.commit_failed", group=self.group, error=str(exc))
        finally:
            await consumer.stop()
            log.info("consumer.stopped", group=self.group, applied=self.applied,
                     dead_lettered=self.dead_lettered)

    async def process(self, records: Sequence[ConsumerRecord]) -> None:
        """Apply a batch effectively once; retries the batch while the database is unreachable."""
        decoded = [Decoded(r, self.batch_handlers) for r in records]
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(TRANSIENT_DB_ERRORS),
            wait=wait_exponential(multiplier=self.backoff_s, max=10), reraise=True,
        ):
            with attempt:
                try:
                    await self._process_fast(decoded)
                except TRANSIENT_DB_ERRORS:
                    raise
                except Exception as exc:
                    log.info("consumer.batch_fallback", group=self.group, error=str(exc))
                    await self._process_one_by_one(decoded)

    async def _process_fast(self, batch: Sequence[Decoded]) -> None:
        if any(d.error for d in batch):
            raise ValueError("batch holds an undecodable message")
        wanted = [d for d in batch if d.envelope and d.envelope.type in self.batch_handlers]
        applied = 0
        async with self.engine.begin() as conn:
            fresh = await self._claim(conn, wanted)
            run: list[Envelope] = []
            for d in wanted:
                if d.message_id not in fresh:
                    continue  # applied before (a redelivery)
                fresh.discard(d.message_id)  # a duplicate inside the batch runs once
                assert d.envelope is not None
                if run and run[-1].type != d.envelope.type:
                    await self.batch_handlers[run[0].type](conn, run)
                    run = []
                run.append(d.envelope)
                applied += 1
            if run:
                await self.batch_handlers[run[0].type](conn, run)
            failpoints.hit("consumer.before_commit")
        failpoints.hit("consumer.after_commit")
        self.applied += applied
        metrics.messages_consumed_total.labels(outcome="applied").inc(applied)

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

    async def _process_one_by_one(self, batch: Sequence[Decoded]) -> None:
        async with self.engine.begin() as conn:
            for d in batch:
                if d.error:
                    await self._dead_letter(conn, d, d.error)
                elif d.envelope and d.envelope.type in self.batch_handlers:
                    await self._apply_with_retries(conn, d)
            failpoints.hit("consumer.before_commit")
        failpoints.hit("consumer.after_commit")

    async def _apply_with_retries(self, conn: AsyncConnection, d: Decoded) -> None:
        assert d.envelope is not None
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with conn.begin_nested():
                    if not await self._claim(conn, [d]):
                        return  # applied before: a redelivery
                    await self.batch_handlers[d.envelope.type](conn, [d.envelope])
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
        self.dead_lettered += 1
        metrics.messages_consumed_total.labels(outcome="dead_lettered").inc()
        log.error("consumer.dead_lettered", group=self.group, event_id=d.message_id,
                  topic=record.topic, offset=record.offset, error=error[:500])


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
