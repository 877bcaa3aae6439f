"""A write that other services decide by waits for their consumer groups (propagation.py), on
the real Kafka and PostgreSQL: it returns once every existing reader group has committed what
Kafka held, which a group does only after the transaction of its effects; a group that does not
exist is not waited for, and one that does not move is waited for up to the bound."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_platform.consumer import ConsumerRunner
from misp_platform.kafka import create_producer
from misp_platform.propagation import CommittedOffsets, wait_for_readers
from misp_platform.testing import start_group_at_end

from .support import counter_event

COUNTER = "misp.test.counter.incremented.v1"
MESSAGES = 40


@pytest.fixture
async def effect_log(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effect_log (event_id text)"))
    return engine


async def slow_effect(conn: AsyncConnection, envelope: Envelope) -> None:
    await asyncio.sleep(0.02)  # slower than the producer: the group lags behind Kafka
    await conn.execute(text("INSERT INTO effect_log (event_id) VALUES (:id)"),
                       {"id": envelope.id})


async def produce(bootstrap: str, topic: str, count: int) -> dict[TopicPartition, int]:
    """`count` counter events on the topic's one partition; its end offset after them."""
    Counter = counter_event(topic)
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for n in range(count):
            event = Counter(n=n)
            envelope = Envelope(source="/test", type=event.type, actor=Actor.system(),
                                data=event.model_dump(mode="json"))
            headers, value = to_kafka(envelope)
            await producer.send_and_wait(topic, value, key=b"k", headers=headers)
    finally:
        await producer.stop()
    return {TopicPartition(topic, 0): count}


async def applied(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM effect_log"))).scalar_one())


async def test_a_write_returns_once_every_reader_group_has_applied_it(
        effect_log: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    engine = effect_log
    topic = await new_topic(partitions=1)
    reader, absent = f"g-{uuid.uuid4().hex}", f"g-{uuid.uuid4().hex}"
    runner = ConsumerRunner(service="test", group=reader, engine=engine,
                            bootstrap_servers=kafka_bootstrap, topics=[topic],
                            handlers={COUNTER: slow_effect}, batch_max=5)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(runner.run(stop, ready=ready))
    committed = CommittedOffsets(kafka_bootstrap, timeout_s=30)
    try:
        await asyncio.wait_for(ready.wait(), 60)
        ends = await produce(kafka_bootstrap, topic, MESSAGES)
        assert await applied(engine) < MESSAGES  # 20 ms a message: the reader is behind
        assert await wait_for_readers(committed, ends, [reader, absent], timeout_s=30)
        assert await applied(engine) == MESSAGES
        assert await committed.existing([reader, absent]) == [reader]
    finally:
        stop.set()
        await task
        await committed.reset()


async def test_a_reader_that_does_not_move_is_waited_for_up_to_the_bound(
        kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic(partitions=1)
    stuck, absent = f"g-{uuid.uuid4().hex}", f"g-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, stuck, [topic])  # a group whose consumer is down
    ends = await produce(kafka_bootstrap, topic, 1)
    committed = CommittedOffsets(kafka_bootstrap, timeout_s=10)
    try:
        begin = time.monotonic()
        assert not await wait_for_readers(committed, ends, [stuck, absent], timeout_s=0.5)
        assert time.monotonic() - begin >= 0.5
        assert await wait_for_readers(committed, ends, [absent], timeout_s=0.5)
        # What tells the two apart: the stuck group's committed offset, not the broker's list.
        assert await committed.of(absent, list(ends)) == dict.fromkeys(ends, -1)
        assert await committed.of(stuck, list(ends)) == dict.fromkeys(ends, 0)
    finally:
        await committed.reset()

