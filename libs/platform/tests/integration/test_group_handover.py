"""Consumers of one group handing partitions over while events keep coming: every event is
applied once, and no key's projection ever goes back, though a consumer that loses a partition
may still hold a prefetched batch of it and commits its offsets to Kafka in the background.

Why it holds: a consumer's batches are contiguous and in order per partition, and each event's
processed mark commits with its effect; a redelivered event finds its mark, and the new owner
starts at or before the first event the old one had not applied."""

from __future__ import annotations

import asyncio
import functools
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_platform.consumer import ConsumerRunner
from misp_platform.kafka import create_producer
from misp_platform.testing import eventually

STEP = "misp.test.step.taken.v1"
KEYS = [f"key-{i}" for i in range(12)]


async def _tables(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE step_state (key text PRIMARY KEY, seq int)"))
        await conn.execute(text("CREATE TABLE step_applied (event_id text, key text, seq int)"))
        await conn.execute(text("CREATE TABLE step_backwards (key text, seq int, last int)"))


async def apply_step(conn: AsyncConnection, envelope: Envelope) -> None:
    """The projection: a key's last step. A step at or below the last one is recorded as a
    violation (a double or a projection going back)."""
    key, seq = envelope.data["key"], envelope.data["seq"]
    last = (await conn.execute(text("SELECT seq FROM step_state WHERE key = :k FOR UPDATE"),
                               {"k": key})).scalar()
    if last is not None and seq <= last:
        await conn.execute(text("INSERT INTO step_backwards VALUES (:k, :s, :l)"),
                           {"k": key, "s": seq, "l": last})
    await conn.execute(text(
        "INSERT INTO step_state VALUES (:k, :s) ON CONFLICT (key) DO UPDATE SET seq = :s"),
        {"k": key, "s": seq})
    await conn.execute(text("INSERT INTO step_applied VALUES (:id, :k, :s)"),
                       {"id": envelope.id, "k": key, "s": seq})
    await asyncio.sleep(0.001)  # a handler that takes time: batches overlap the hand-overs


async def _produce(bootstrap: str, topic: str, steps: range) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for seq in steps:
            for key in KEYS:
                envelope = Envelope(source="/test", type=STEP, subject=key, actor=Actor.system(),
                                    data={"key": key, "seq": seq})
                headers, value = to_kafka(envelope)
                await producer.send(topic, value, key=key.encode(), headers=headers)
        await producer.flush()
    finally:
        await producer.stop()


async def _applied(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM step_applied"))).scalar_one())


async def test_partitions_handed_over_mid_stream_apply_each_event_once_and_in_order(
        engine: AsyncEngine, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    await _tables(engine)
    topic = await new_topic(partitions=4)
    group = f"g-{uuid.uuid4().hex}"

    def runner() -> ConsumerRunner:
        # Small batches: a consumer holds a prefetched batch at most hand-overs.
        return ConsumerRunner(service="test", group=group, engine=engine,
                              bootstrap_servers=kafka_bootstrap, topics=[topic],
                              handlers={STEP: apply_step}, batch_max=20)

    # Five hand-overs, each while a wave of events is being applied: one joins, another
    # joins, the first leaves, a fourth joins, the second leaves.
    changes = ["join", "join", "leave", "join", "leave"]
    waves = len(changes) + 1
    steps = 20
    total = len(KEYS) * steps * waves
    members: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def join() -> None:
        stop = asyncio.Event()
        members.append((stop, asyncio.create_task(runner().run(stop))))

    async def reached(count: int) -> bool | None:
        return True if await _applied(engine) >= count else None

    try:
        join()
        for wave in range(waves):
            await _produce(kafka_bootstrap, topic, range(wave * steps, (wave + 1) * steps))
            # Mid-wave: a third of its events applied, the rest on their way.
            mid_wave = len(KEYS) * (wave * steps + steps // 3)
            await eventually(functools.partial(reached, mid_wave), timeout_s=60)
            if wave < len(changes):
                if changes[wave] == "join":
                    join()
                else:
                    leaving = next(m for m in members if not m[0].is_set())
                    leaving[0].set()
        await eventually(lambda: reached(total), timeout_s=60)
        await asyncio.sleep(1.0)  # anything applied twice would land by now
    finally:
        for stop, _ in members:
            stop.set()
        await asyncio.gather(*(task for _, task in members))

    async with engine.connect() as conn:
        backwards = (await conn.execute(text("SELECT * FROM step_backwards"))).all()
        applied = (await conn.execute(text(
            "SELECT count(*), count(DISTINCT (key, seq)) FROM step_applied"))).one()
        rows = await conn.execute(text("SELECT key, seq FROM step_state"))
        last: dict[str, int] = {key: seq for key, seq in rows}
    assert backwards == []
    assert tuple(applied) == (total, total)
    assert last == {key: steps * waves - 1 for key in KEYS}
