"""The outbox relay against the real PostgreSQL and Kafka: order, no skipped row, crashes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor
from misp_platform import metrics
from misp_platform.db import outbox
from misp_platform.eventstore import ConcurrencyError, EventStore
from misp_platform.kafka import create_producer
from misp_platform.relay import OutboxRelay

from .support import counter_event, envelopes, read_topic

store = EventStore("test")
actor = Actor.system()


async def append(engine: AsyncEngine, model, stream: str, version: int, n: int) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await store.append(conn, stream_id=stream, stream_type="counter",
                           expected_version=version, events=[model(n=n)], actor=actor)


async def test_a_late_commit_is_published_although_a_cursor_reader_would_skip_it(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(engine, platform_db, producer)
    try:
        late = await engine.connect()
        # The late transaction takes its outbox position first, then stays open.
        await store.append(late, stream_id=str(uuid.uuid4()), stream_type="counter",
                           expected_version=0, events=[Counter(n=0)], actor=actor)
        late_position = (await late.execute(select(func.max(outbox.c.position)))).scalar_one()
        for n in (1, 2):
            await append(engine, Counter, str(uuid.uuid4()), 0, n)

        # A naive reader of "everything above the last position seen":
        async with engine.connect() as conn:
            seen = (await conn.execute(select(outbox.c.position)
                                       .order_by(outbox.c.position))).scalars().all()
        cursor = max(seen)
        assert late_position not in seen and late_position < cursor

        assert await relay.publish_pending() == 2  # the committed ones; the open one is invisible
        await late.commit()
        await late.close()
        async with engine.connect() as conn:
            after_cursor = (await conn.execute(select(outbox.c.position)
                                               .where(outbox.c.position > cursor))).all()
        assert after_cursor == []  # ...so the naive reader would never publish the late row
        assert await relay.publish_pending() == 1  # ours does
    finally:
        await producer.stop()
    published = envelopes(await read_topic(kafka_bootstrap, topic, 3))
    assert sorted(e.data["n"] for e in published) == [0, 1, 2]


async def test_concurrent_writers_every_event_published_once_in_stream_order(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    streams = [str(uuid.uuid4()) for _ in range(8)]
    per_stream = 25

    async def writer(stream: str) -> None:
        version = 0
        while version < per_stream:
            async with engine.connect() as conn:
                try:
                    await store.append(conn, stream_id=stream, stream_type="counter",
                                       expected_version=version,
                                       events=[Counter(n=version + 1)], actor=actor)
                    # Hold some transactions open a little while others commit.
                    await asyncio.sleep(random.random() * 0.01)
                    await conn.commit()
                    version += 1
                except ConcurrencyError:
                    await conn.rollback()  # another writer won: reload and decide again
                    version = len(await store.load(conn, stream))
                    await conn.rollback()

    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    relay = OutboxRelay(engine, platform_db, producer, batch_size=7, poll_interval_s=0.05)
    relay_task = asyncio.create_task(relay.run(stop))
    try:
        await asyncio.gather(*(writer(s) for s in streams), *(writer(s) for s in streams[:3]))
        total = len(streams) * per_stream
        records = await read_topic(kafka_bootstrap, topic, total)
    finally:
        stop.set()
        await relay_task
        await producer.stop()
    by_stream: dict[str, list[int]] = defaultdict(list)
    for record, env in zip(records, envelopes(records), strict=True):
        assert record.key.decode() == env.subject
        by_stream[env.subject or ""].append(env.streamversion or 0)
    assert len(records) == total
    for stream in streams:
        assert by_stream[stream] == list(range(1, per_stream + 1))


async def test_records_past_a_partitions_batch_wait_for_the_next_round_and_keep_their_order(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    streams = [str(uuid.uuid4()) for _ in range(3)]
    per_stream = 20
    async with engine.begin() as conn:
        for version in range(per_stream):
            for stream in streams:
                await store.append(conn, stream_id=stream, stream_type="counter",
                                   expected_version=version, events=[Counter(n=version + 1)],
                                   actor=actor)
    # A record batch holds a few records: a round sends one batch per partition, the rest
    # of the round's rows are read again for the next rounds.
    producer = create_producer(kafka_bootstrap, max_batch_size=2048)
    await producer.start()
    try:
        assert await OutboxRelay(engine, platform_db, producer).publish_pending() == 60
    finally:
        await producer.stop()
    records = await read_topic(kafka_bootstrap, topic, 60)
    assert len(records) == 60  # each once
    by_stream: dict[str, list[int]] = defaultdict(list)
    for env in envelopes(records):
        by_stream[env.subject or ""].append(env.streamversion or 0)
    assert all(by_stream[s] == list(range(1, per_stream + 1)) for s in streams)
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(outbox))).scalar_one() == 0


async def test_a_drain_told_more_is_coming_leaves_its_rows_to_the_next_that_deletes_them_once(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(engine, platform_db, producer)

    async def waiting() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()

    try:
        for n in range(3):
            await append(engine, Counter, str(uuid.uuid4()), 0, n)
        async with relay._autocommit.connect() as conn:
            assert await relay._drain(conn, more_coming=lambda: True) == 3
            assert await waiting() == 3  # published, deleted by the next drain
            await append(engine, Counter, str(uuid.uuid4()), 0, 3)
            assert await relay._drain(conn) == 1  # the new row only: the others are not resent
            assert await waiting() == 0
            assert await relay._drain(conn) == 0
            # the deletes' commits did not wait for the disk, theirs alone: not the connection's
            assert (await conn.execute(text("SHOW synchronous_commit"))).scalar() == "on"
    finally:
        await producer.stop()
    records = await read_topic(kafka_bootstrap, topic, 5, timeout_s=10)
    assert sorted(e.data["n"] for e in envelopes(records)) == [0, 1, 2, 3]


async def test_a_second_relay_waits_as_a_standby_and_takes_over_when_the_first_stops(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    producers = [create_producer(kafka_bootstrap) for _ in range(2)]
    for producer in producers:
        await producer.start()
    relays = [OutboxRelay(engine, platform_db, p, poll_interval_s=0.1) for p in producers]
    stops = [asyncio.Event(), asyncio.Event()]
    active = asyncio.create_task(relays[0].run(stops[0]))
    standby: asyncio.Task[None] | None = None
    try:
        for n in range(3):
            await append(engine, Counter, str(uuid.uuid4()), 0, n)
        await read_topic(kafka_bootstrap, topic, 3)
        standby = asyncio.create_task(relays[1].run(stops[1]))
        for n in range(3, 6):
            await append(engine, Counter, str(uuid.uuid4()), 0, n)
        await read_topic(kafka_bootstrap, topic, 6)
        assert (relays[0].published, relays[1].published) == (6, 0)  # the lock's holder only

        stops[0].set()
        await active
        for n in range(6, 9):
            await append(engine, Counter, str(uuid.uuid4()), 0, n)
        published = envelopes(await read_topic(kafka_bootstrap, topic, 9))
        assert sorted(e.data["n"] for e in published) == list(range(9))
        assert relays[1].published == 3  # the standby took over
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(active, *([standby] if standby else []))
        for producer in producers:
            await producer.stop()


async def test_a_relay_killed_mid_batch_republishes_on_restart_without_loss(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    total = 45
    async with engine.begin() as conn:
        for n in range(total):
            await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="counter",
                               expected_version=0, events=[Counter(n=n)], actor=actor)
    script = Path(__file__).with_name("relay_process.py")
    env = {**os.environ, "MISP_FAILPOINTS": "relay.after_send=2"}
    crashed = subprocess.run([sys.executable, str(script), platform_db, kafka_bootstrap],
                             env=env, timeout=120, capture_output=True)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    async with engine.connect() as conn:
        left = (await conn.execute(select(func.count()).select_from(outbox))).scalar_one()
    assert left == total - 10  # the first batch was deleted, the second sent but not deleted

    env.pop("MISP_FAILPOINTS")
    restarted = subprocess.run([sys.executable, str(script), platform_db, kafka_bootstrap],
                               env=env, timeout=120, capture_output=True)
    assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
    published = envelopes(await read_topic(kafka_bootstrap, topic, total + 10))
    assert sorted({e.data["n"] for e in published}) == list(range(total))  # nothing lost
    assert len(published) == total + 10  # the unacknowledged batch went out twice


async def test_the_backlog_gauges_count_the_waiting_rows_and_age_the_oldest(
        engine: AsyncEngine, platform_db: str) -> None:
    Counter = counter_event("misp.test.backlog.v1")
    producer = create_producer("127.0.0.1:1")  # never started: the rows go by a DELETE
    relay = OutboxRelay(engine, platform_db, producer)
    try:
        for n in range(3):
            await append(engine, Counter, str(uuid.uuid4()), 0, n)
        await asyncio.sleep(0.3)
        await relay.measure_backlog()
        assert metrics.REGISTRY.get_sample_value("outbox_backlog") == 3
        first = relay.oldest_age_s()
        assert first >= 0.3
        await asyncio.sleep(0.2)
        assert relay.oldest_age_s() >= first + 0.2  # it ages between measurements

        async with engine.begin() as conn:
            await conn.execute(outbox.delete())
        await relay.measure_backlog()
        assert metrics.REGISTRY.get_sample_value("outbox_backlog") == 0
        assert relay.oldest_age_s() == 0.0
    finally:
        await producer.stop()
