"""Read-your-writes on the real Kafka and PostgreSQL (consistency.py): a reader that waits with
`caught_up` sees every effect of what Kafka held when it asked, however slow the consumer; a
writer's `published` returns once the relay has published its rows, and both give up at their
bound instead of hanging."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor, Envelope
from misp_platform import consistency as consistency_module
from misp_platform.consistency import Consistency
from misp_platform.consumer import ConsumerRunner
from misp_platform.kafka import create_producer
from misp_platform.outbox import enqueue, written_positions
from misp_platform.relay import OutboxRelay

from .support import counter_event

COUNTER = "misp.test.counter.incremented.v1"


@pytest.fixture
async def effect_log(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effect_log (event_id text, n int)"))
    return engine


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM effect_log"))).scalar_one())


async def slow_effect(conn: AsyncConnection, envelope: Envelope) -> None:
    await asyncio.sleep(0.02)  # a handler slower than the producer: the consumer lags
    await conn.execute(text("INSERT INTO effect_log (event_id, n) VALUES (:id, :n)"),
                       {"id": envelope.id, "n": envelope.data["n"]})


async def enqueue_counters(engine: AsyncEngine, topic: str, numbers: range) -> list[int]:
    Counter = counter_event(topic)
    with written_positions() as positions:
        async with engine.begin() as conn:
            for n in numbers:
                event = Counter(n=n)
                await enqueue(conn, Envelope(source="/test", type=event.type,
                                             actor=Actor.system(),
                                             data=event.model_dump(mode="json")),
                              topic=topic, key=str(n % 7))
    return list(positions)


async def test_a_reader_that_waits_sees_every_effect_kafka_held_when_it_asked(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    engine = effect_log
    topic = await new_topic()
    group = f"g-{uuid.uuid4().hex}"
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    relay = OutboxRelay(engine, platform_db, producer, poll_interval_s=0.1)
    runner = ConsumerRunner(service="test", group=group, engine=engine,
                            bootstrap_servers=kafka_bootstrap, topics=[topic],
                            handlers={COUNTER: slow_effect}, batch_max=20)
    consistency = Consistency(engine, kafka_bootstrap, publish_timeout_s=10,
                              read_timeout_s=30)
    await consistency.start()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(runner.run(stop))]
    try:
        for round_ in range(3):
            numbers = range(round_ * 60, (round_ + 1) * 60)
            positions = await enqueue_counters(engine, topic, numbers)
            assert len(positions) == 60
            assert await consistency.published(positions)
            # Kafka holds all 60 now; the consumer (20 ms a message) is seconds behind.
            assert await count(engine) < numbers.stop
            assert await consistency.caught_up(group, [topic])
            assert await count(engine) == numbers.stop
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await consistency.close()
        await producer.stop()


async def test_concurrent_misses_share_one_request_for_the_end_offsets(
        engine: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    consistency = Consistency(engine, kafka_bootstrap, read_timeout_s=5)
    await consistency.start()
    try:
        await consistency.caught_up("nobody", [topic])  # warms the client
        before = consistency.end_offsets.requests
        results = await asyncio.gather(*(consistency.caught_up("nobody", [topic])
                                         for _ in range(50)))
        assert all(results)  # an empty topic: nothing to wait for
        assert consistency.end_offsets.requests - before <= 2
    finally:
        await consistency.close()


async def test_waits_give_up_at_their_bound(
        effect_log: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    engine = effect_log
    topic = await new_topic()
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x", key=b"k")
    finally:
        await producer.stop()
    consistency = Consistency(engine, kafka_bootstrap, publish_timeout_s=0.5,
                              read_timeout_s=0.5)
    await consistency.start()
    try:
        # No relay runs: the rows stay in the outbox, and the answer goes out after the bound.
        positions = await enqueue_counters(engine, topic, range(3))
        assert not await consistency.published(positions)  # a wait past its bound never ends
        assert consistency.publish_timeouts == 1
        # No consumer of this group: the read decides with what there is after the bound.
        assert not await consistency.caught_up(f"g-{uuid.uuid4().hex}", [topic])
        assert consistency.read_timeouts == 1
    finally:
        await consistency.close()


async def test_positions_are_recorded_with_the_effects_and_never_move_back(
        effect_log: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    from misp_platform.consumer import save_positions

    engine = effect_log
    topic = await new_topic(partitions=1)
    group = f"g-{uuid.uuid4().hex}"
    from aiokafka import TopicPartition

    tp = TopicPartition(topic, 0)
    async with engine.begin() as conn:
        await save_positions(conn, group, {tp: 10})
        await save_positions(conn, group, {tp: 4})  # a redelivery after a rebalance
    async with engine.connect() as conn:
        stored = (await conn.execute(text(
            "SELECT next_offset FROM consumer_position WHERE consumer = :g"),
            {"g": group})).scalar_one()
    assert stored == 10



async def listening(consistency: Consistency) -> None:
    deadline = time.monotonic() + 10
    while not consistency.published_channel.listening:
        assert time.monotonic() < deadline, "the published listener never listened"
        await asyncio.sleep(0.01)


async def parked(consistency: Consistency, after: int = -1) -> None:
    """Until a writer waits for a notification after the last one received (so it has taken
    that one in, and goes on waiting), once one after generation `after` came."""
    channel = consistency.published_channel
    deadline = time.monotonic() + 10
    while channel.generation <= after or not channel.parked[channel.generation]:
        assert time.monotonic() < deadline, f"no writer waiting at {channel.generation}"
        await asyncio.sleep(0.005)


@asynccontextmanager
async def waiting_writer(engine: AsyncEngine, kafka_bootstrap: str, topic: str,
                         publish_timeout_s: float = 5,
                         ) -> AsyncIterator[tuple[list[int], asyncio.Task[bool], Consistency]]:
    """Three rows in the outbox (no relay runs) and a writer waiting for them to be published."""
    consistency = Consistency(engine, kafka_bootstrap, publish_timeout_s=publish_timeout_s)
    await consistency.start()
    try:
        await listening(consistency)
        positions = await enqueue_counters(engine, topic, range(3))
        waiting = asyncio.create_task(consistency.published(positions))
        await parked(consistency)
        assert not waiting.done()
        yield positions, waiting, consistency
        assert consistency.publish_timeouts == 0
    finally:
        await consistency.close()


async def notify_published(engine: AsyncEngine, payload: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_notify('outbox_published', :p)"), {"p": payload})


async def test_a_writer_trusts_a_notification_that_names_its_positions(
        engine: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    async with waiting_writer(engine, kafka_bootstrap, await new_topic()) as (
            positions, waiting, consistency):
        before = consistency.published_channel.generation
        await notify_published(engine, f"{positions[-1] + 100}-{positions[-1] + 110}")
        await parked(consistency, after=before)
        assert not waiting.done()  # another batch: not ours, the writer waits on
        # Named, though still in the table (no relay here): the notification is enough.
        await notify_published(engine, f"{positions[0]}-{positions[-1]}")
        assert await asyncio.wait_for(waiting, 2)


async def test_a_notification_that_names_nothing_sends_the_writer_to_the_table(
        engine: AsyncEngine, kafka_bootstrap: str, new_topic,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    # No safety poll and no bound within the test: only the notification can wake the writer.
    monkeypatch.setattr(consistency_module, "SAFETY_POLL_S", 3600)
    async with waiting_writer(engine, kafka_bootstrap, await new_topic(),
                              publish_timeout_s=3600) as (positions, waiting, _):
        async with engine.begin() as conn:  # as a relay whose batch was too long to name
            await conn.execute(text("DELETE FROM outbox WHERE position = ANY(:p)"),
                               {"p": positions})
        await notify_published(engine, "")
        assert await asyncio.wait_for(waiting, 30)


async def test_a_writer_that_listened_before_writing_needs_not_ask_the_table(
        engine: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    consistency = Consistency(engine, kafka_bootstrap, publish_timeout_s=0.5)
    await consistency.start()
    try:
        await listening(consistency)
        since = consistency.published_channel.generation  # as the middleware, at the request
        positions = await enqueue_counters(engine, topic, range(3))
        await notify_published(engine, f"{positions[0]}-{positions[-1]}")
        await consistency.published_channel.wait(since, 2)
        assert consistency.published_channel.generation != since
        # Still in the table (no relay here), but named since the request began.
        assert await asyncio.wait_for(consistency.published(positions, since=since), 2)
        # A writer that did not listen first asks the table, where the rows still are.
        assert not await consistency.published(positions)
    finally:
        await consistency.close()
