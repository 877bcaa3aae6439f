"""Records queued by COPY (`outbox.copy_messages`) are the rows `enqueue_messages` writes: the
relay is woken by their commit and publishes them in order, under the same cap."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor, Envelope
from misp_platform.db import outbox
from misp_platform.kafka import create_producer
from misp_platform.outbox import (
    MessageTooLargeError,
    OutboxRow,
    OutgoingMessage,
    copy_messages,
    enqueue_messages,
    limit_message_bytes,
    message_limit,
    written_positions,
)
from misp_platform.relay import OutboxRelay

from .support import envelopes, read_topic


def _message(topic: str, n: int) -> OutgoingMessage:
    envelope = Envelope(source="/test", type="misp.test.copied.v1", subject=str(n),
                        actor=Actor(user_id=n, email="é@x.test"), data={"n": n, "s": "\x01é"})
    return OutgoingMessage.of(envelope, topic=topic, key="one-stream")


async def test_copied_records_wake_the_relay_and_are_published_in_order_with_the_others(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    sent = [_message(topic, n) for n in range(6)]
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    # Polled once an hour: only the outbox trigger's notification can wake it in time.
    relay = OutboxRelay(engine, platform_db, producer, poll_interval_s=3600)
    relay_task = asyncio.create_task(relay.run(stop))
    try:
        async with engine.begin() as conn:
            await enqueue_messages(conn, sent[:1])
        assert len(await read_topic(kafka_bootstrap, topic, 1)) == 1  # the relay listens
        async with engine.begin() as conn:
            await enqueue_messages(conn, sent[1:2])
            await copy_messages(conn, [OutboxRow.of(m) for m in sent[2:5]])
            await enqueue_messages(conn, sent[5:])
        records = await read_topic(kafka_bootstrap, topic, len(sent))
    finally:
        stop.set()
        await relay_task
        await producer.stop()
    assert len(records) == len(sent)
    assert [e.data["n"] for e in envelopes(records)] == list(range(6))
    for record, message in zip(records, sent, strict=True):
        assert record.key == message.key.encode()  # type: ignore[union-attr]
        assert record.value == message.value
        assert list(record.headers) == message.headers


async def test_a_copied_record_over_the_cap_stores_nothing(engine: AsyncEngine,
                                                           new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    previous = message_limit()
    limit_message_bytes(2048)
    try:
        big = OutgoingMessage(topic, "k", [("ce_id", b"x")], b"x" * 2048)
        with pytest.raises(MessageTooLargeError):
            async with engine.begin() as conn:
                await copy_messages(conn, [OutboxRow.of(_message(topic, 1)), OutboxRow.of(big)])
    finally:
        limit_message_bytes(previous)
    async with engine.connect() as conn:
        count = select(func.count()).select_from(outbox).where(outbox.c.topic == topic)
        assert (await conn.execute(count)).scalar_one() == 0


async def test_within_a_request_copied_records_give_their_positions(engine: AsyncEngine,
                                                                    new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    with written_positions() as positions:
        async with engine.begin() as conn:
            await copy_messages(conn, [OutboxRow.of(_message(topic, n)) for n in range(3)])
    async with engine.connect() as conn:
        stored = (await conn.execute(select(outbox.c.position).where(outbox.c.topic == topic)
                                     .order_by(outbox.c.position))).scalars().all()
    assert positions == list(stored) and len(stored) == 3
