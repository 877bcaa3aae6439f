"""A service's dead-letter topic: reading it, and replaying a dead letter (the operator's
commands are in `dlq_commands`).

`replay` runs the original message through the service's handler again, in one transaction with
its processed mark (which moves from `dead_lettered` to `applied`), so a replay is effective once
however often it is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import from_kafka
from misp_contracts.topics import dlq_topic
from misp_platform.consumer import DLQ_HEADER_PREFIX, Handler
from misp_platform.db import flagged_stream, processed_message
from misp_platform.kafka import client_options


@dataclass(frozen=True)
class DeadLetter:
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes

    @property
    def original_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode()) for k, v in self.headers.items()
                if not k.startswith(DLQ_HEADER_PREFIX)]

    def summary(self) -> dict[str, str | int | None]:
        return {
            "offset": self.offset,
            "original": "{}[{}]@{}".format(self.headers.get("dlq_original_topic"),
                                           self.headers.get("dlq_original_partition"),
                                           self.headers.get("dlq_original_offset")),
            "type": self.headers.get("ce_type"),
            "message_id": self.headers.get("dlq_message_id"),
            "consumer": self.headers.get("dlq_consumer"),
            "failed_at": self.headers.get("dlq_failed_at"),
            "error": self.headers.get("dlq_error"),
        }


async def read_dead_letters(bootstrap_servers: str, service: str) -> list[DeadLetter]:
    """Every record of the service's DLQ topic, oldest first (no consumer group involved)."""
    topic = dlq_topic(service)
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers))
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [p["partition"] for d in described if d.get("error_code", 0) == 0
                  for p in d.get("partitions", [])]
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    if not tps:
        return []
    consumer = AIOKafkaConsumer(**client_options(bootstrap_servers), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[DeadLetter] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                out.extend(
                    DeadLetter(offset=r.offset,
                               key=r.key.decode("utf-8", "replace") if r.key else None,
                               headers={k: v.decode("utf-8", "replace") for k, v in r.headers},
                               value=r.value or b"")
                    for r in records)
        return sorted(out, key=lambda d: d.offset)
    finally:
        await consumer.stop()


async def _mark(conn: AsyncConnection, consumer_group: str, message_id: str, *,
                lock: bool = False) -> str | None:
    query = select(processed_message.c.outcome).where(
        processed_message.c.consumer == consumer_group,
        processed_message.c.message_id == message_id)
    return (await conn.execute(query.with_for_update() if lock else query)).scalar()


async def planned(engine: AsyncEngine, consumer_group: str, handlers: Mapping[str, Handler],
                  letter: DeadLetter) -> str:
    """What `replay` would do now (would-apply, already-applied, no-handler), changing nothing."""
    envelope = from_kafka(letter.original_headers, letter.value)
    if envelope.type not in handlers:
        return "no-handler"
    async with engine.connect() as conn:
        mark = await _mark(conn, consumer_group, envelope.id)
    return "already-applied" if mark == "applied" else "would-apply"


async def replay(engine: AsyncEngine, consumer_group: str, handlers: Mapping[str, Handler],
                 letter: DeadLetter) -> str:
    """Apply one dead letter again; returns what happened (applied, already-applied, ...)."""
    envelope = from_kafka(letter.original_headers, letter.value)
    handler = handlers.get(envelope.type)
    if handler is None:
        return "no-handler"
    async with engine.begin() as conn:
        mark = await _mark(conn, consumer_group, envelope.id, lock=True)
        if mark == "applied":
            return "already-applied"
        await handler(conn, envelope)
        await conn.execute(delete(flagged_stream).where(
            flagged_stream.c.consumer == consumer_group,
            flagged_stream.c.message_id == envelope.id))
        if mark is None:
            await conn.execute(pg_insert(processed_message).values(
                consumer=consumer_group, message_id=envelope.id, outcome="applied",
                topic=letter.headers.get("dlq_original_topic")).on_conflict_do_nothing())
        else:
            await conn.execute(update(processed_message).where(
                processed_message.c.consumer == consumer_group,
                processed_message.c.message_id == envelope.id).values(outcome="applied"))
    return "applied"
