"""The consumer runner against the real Kafka and PostgreSQL: the whole pipeline, poison
messages to the DLQ, replay, and crashes that neither lose nor double an effect."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.topics import Topic, dlq_topic
from misp_platform import dlq, failpoints
from misp_platform.cli_support import CliContext
from misp_platform.config import ServiceSettings, settings_class
from misp_platform.consumer import ConsumerRunner, send_after_commit
from misp_platform.dlq_commands import dlq_group
from misp_platform.eventstore import EventStore
from misp_platform.kafka import create_producer, ensure_topics
from misp_platform.outbox import OutgoingMessage
from misp_platform.relay import OutboxRelay
from misp_platform.service import ServiceSpec
from misp_platform.testing import eventually

from .support import counter_event, read_topic

COUNTER = "misp.test.counter.incremented.v1"
store = EventStore("test")


@pytest.fixture
async def effect_log(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effect_log (event_id text, n int)"))
    return engine


async def effects(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text("SELECT event_id, n FROM effect_log"))]


async def record_effect(conn: AsyncConnection, envelope: Envelope) -> None:
    await conn.execute(text("INSERT INTO effect_log (event_id, n) VALUES (:id, :n)"),
                       {"id": envelope.id, "n": envelope.data["n"]})


async def append_counters(engine: AsyncEngine, model, count: int, start: int = 0) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        for n in range(start, start + count):
            await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="counter",
                               expected_version=0, events=[model(n=n)], actor=Actor.system())


async def test_append_outbox_kafka_consumer_projection_counts_are_equal(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    engine = effect_log
    topic = await new_topic()
    Counter = counter_event(topic)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    relay = OutboxRelay(engine, platform_db, producer, poll_interval_s=0.1)
    runner = ConsumerRunner(service="test", group=f"g-{uuid.uuid4().hex}", engine=engine,
                            bootstrap_servers=kafka_bootstrap, topics=[topic],
                            handlers={COUNTER: record_effect})
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(runner.run(stop))]
    try:
        await append_counters(engine, Counter, 150)
        rows = await eventually(lambda: _at_least(engine, 150))
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await producer.stop()
    assert sorted(n for _, n in rows) == list(range(150))
    assert len({event_id for event_id, _ in rows}) == 150


async def _at_least(engine: AsyncEngine, count: int) -> list[tuple[str, int]] | None:
    rows = await effects(engine)
    return rows if len(rows) >= count else None


async def test_poison_messages_go_to_the_dlq_and_the_consumer_goes_on_then_replay_applies_once(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    engine = effect_log
    service = f"t{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [Topic(dlq_topic(service), owner=service, partitions=1)])
    topic = await new_topic()
    Counter = counter_event(topic)
    broken = {"on": True}

    async def fussy(conn: AsyncConnection, envelope: Envelope) -> None:
        if envelope.data["n"] == 13 and broken["on"]:
            raise RuntimeError("thirteen is unlucky")
        await record_effect(conn, envelope)

    producer = create_producer(kafka_bootstrap)
    await producer.start()
    group = f"g-{uuid.uuid4().hex}"
    runner = ConsumerRunner(service=service, group=group, engine=engine,
                            bootstrap_servers=kafka_bootstrap, topics=[topic],
                            handlers={COUNTER: fussy}, max_attempts=2, backoff_s=0.01)
    stop = asyncio.Event()
    relay = OutboxRelay(engine, platform_db, producer, poll_interval_s=0.1)
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(runner.run(stop))]
    try:
        await append_counters(engine, Counter, 10, start=10)  # 10..19, 13 fails
        await producer.send_and_wait(topic, b"this is not a CloudEvent", key=b"junk")
        # A type nobody here handles is skipped unread (readers skip unknown types): no DLQ.
        await producer.send_and_wait(topic, b"{not json", key=b"other",
                                     headers=[("ce_type", b"misp.other.thing.happened.v1")])
        await append_counters(engine, Counter, 5, start=20)  # the consumer went on
        rows = await eventually(lambda: _at_least(engine, 14))
        letters = await read_topic(kafka_bootstrap, dlq_topic(service), 3, timeout_s=3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await producer.stop()
    assert sorted(n for _, n in rows) == [n for n in range(10, 25) if n != 13]
    errors = sorted(dict(r.headers)["dlq_error"].decode() for r in letters)
    assert len(letters) == 2
    assert "thirteen is unlucky" in errors[0]
    assert errors[1].startswith("undecodable message")
    assert all(dict(r.headers)["dlq_consumer"].decode() == group for r in letters)

    # Each stream with a dead letter is flagged (diagnostics show it) until it is replayed.
    assert await flagged_keys(engine, group) == {"junk", _stream_of(letters, COUNTER)}

    # The operator's tool: list, then replay once the bug is fixed; a second replay is a no-op.
    dead = await dlq.read_dead_letters(kafka_bootstrap, service)
    assert len(dead) == 2
    poisoned = next(d for d in dead if d.headers.get("ce_type") == COUNTER)
    broken["on"] = False
    handlers = {COUNTER: fussy}
    assert await dlq.replay(engine, group, handlers, poisoned) == "applied"
    assert await dlq.replay(engine, group, handlers, poisoned) == "already-applied"
    assert sorted(n for _, n in await effects(engine)) == list(range(10, 25))
    assert await flagged_keys(engine, group) == {"junk"}


async def test_what_a_handler_sends_after_the_commit_leaves_once_and_never_from_a_rollback(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    """A batch whose 13 fails is rolled back and replayed message by message (13's savepoint
    rolled back, then dead-lettered): what the handlers asked to send after the commit leaves
    once for each message applied, and nothing for the batch rolled back nor for 13."""
    engine = effect_log
    service = f"t{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [Topic(dlq_topic(service), owner=service, partitions=1)])
    topic, answers = await new_topic(), await new_topic()
    Counter = counter_event(topic)

    async def answering(conn: AsyncConnection, envelope: Envelope) -> None:
        await record_effect(conn, envelope)
        n = envelope.data["n"]
        send_after_commit(conn, [OutgoingMessage(topic=answers, key=str(n), headers=[],
                                                 value=str(n).encode())])
        if n == 13:
            raise RuntimeError("thirteen is unlucky")

    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    relay = OutboxRelay(engine, platform_db, producer, poll_interval_s=0.05)
    tasks = [asyncio.create_task(relay.run(stop))]
    runner = ConsumerRunner(service=service, group=f"g-{uuid.uuid4().hex}", engine=engine,
                            bootstrap_servers=kafka_bootstrap, topics=[topic],
                            handlers={COUNTER: answering}, max_attempts=2, backoff_s=0.01)
    try:
        await append_counters(engine, Counter, 5, start=10)  # 10..14, 13 fails
        # Published before the consumer starts: they come in one batch.
        await eventually(lambda: _outbox_empty(engine))
        tasks.append(asyncio.create_task(runner.run(stop)))
        rows = await eventually(lambda: _at_least(engine, 4))
        await eventually(lambda: asyncio.sleep(0, result=runner.dead_lettered == 1))
        sent = await read_topic(kafka_bootstrap, answers, 5, timeout_s=3)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await producer.stop()
    assert sorted(n for _, n in rows) == [10, 11, 12, 14]
    assert sorted(int(r.value) for r in sent) == [10, 11, 12, 14]


async def _outbox_empty(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT 1 FROM outbox LIMIT 1"))).first() is None


async def flagged_keys(engine: AsyncEngine, group: str) -> set[str]:
    async with engine.connect() as conn:
        return {r[0] for r in await conn.execute(text(
            "SELECT stream_key FROM flagged_stream WHERE consumer = :g"), {"g": group})}


def _stream_of(letters, type_: str) -> str:  # type: ignore[no-untyped-def]
    letter = next(r for r in letters if dict(r.headers).get("ce_type", b"").decode() == type_)
    return str(letter.key.decode())


def _dlq_cli(service: str, settings: ServiceSettings, *args: str) -> Result:
    """`python -m <service> dlq <args>` in-process (stdin is not a terminal)."""
    spec = ServiceSpec(name=service, settings=settings_class(service),
                       create_app=lambda _s: None,  # type: ignore[arg-type,return-value]
                       migrations_dir=Path("."), handlers=lambda _s: {COUNTER: record_effect})
    return CliRunner().invoke(dlq_group, list(args), obj=CliContext.of(settings, spec))


async def test_the_dlq_commands_list_and_replay_dead_letters_and_replay_all_asks_first(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str) -> None:
    service = f"t{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, [Topic(dlq_topic(service), owner=service, partitions=1)])
    settings = settings_class(service)(database_url=platform_db,
                                       kafka_bootstrap_servers=kafka_bootstrap)
    letter = Envelope(source="test", type=COUNTER, subject="c-1", data={"n": 7})
    headers, value = to_kafka(letter)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(dlq_topic(service), value, key=b"c-1", headers=[
        *headers, ("dlq_error", b"boom"), ("dlq_original_topic", b"t"),
        ("dlq_original_partition", b"0"), ("dlq_original_offset", b"7"),
        ("dlq_consumer", settings.main_group.encode())])
    await producer.stop()

    def cli(*args: str) -> Awaitable[Result]:
        return asyncio.to_thread(_dlq_cli, service, settings, *args)

    listed = await cli("list")
    assert listed.exit_code == 0, listed.output
    assert '"error": "boom"' in listed.stdout and "t[0]@7" in listed.stdout
    assert "1 dead letter(s)" in listed.stdout

    refused = await cli("replay", "--all")  # no --yes, and stdin is no terminal
    assert refused.exit_code == 1 and "--yes" in refused.stderr
    dry = await cli("replay", "--all", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout.splitlines()[0]) == {"offset": 0, "outcome": "would-apply"}
    assert "replaying dead letters: 1/1 done" in dry.stderr  # plain progress lines off a tty
    assert await effects(effect_log) == []

    applied = await cli("replay", "--all", "--yes")
    assert applied.exit_code == 0, applied.output
    assert json.loads(applied.stdout.splitlines()[0]) == {"offset": 0, "outcome": "applied"}
    again = await cli("replay", "0", "5")
    assert again.exit_code == 1  # offset 5 holds no dead letter
    assert [json.loads(line)["outcome"] for line in again.stdout.splitlines()] == [
        "not-found", "already-applied"]
    assert await effects(effect_log) == [(letter.id, 7)]
    assert (await cli("replay")).exit_code == 2  # neither offsets nor --all


@pytest.mark.parametrize("failpoint", ["consumer.before_commit=2", "consumer.after_commit=2"])
async def test_a_consumer_killed_mid_batch_neither_loses_nor_doubles_an_effect(
        effect_log: AsyncEngine, kafka_bootstrap: str, platform_db: str, new_topic,  # type: ignore[no-untyped-def]
        failpoint: str) -> None:
    engine = effect_log
    topic = await new_topic(partitions=1)
    Counter = counter_event(topic)
    total = 100
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    await append_counters(engine, Counter, total)
    await OutboxRelay(engine, platform_db, producer).publish_pending()
    await producer.stop()

    group = f"g-{uuid.uuid4().hex}"
    script = Path(__file__).with_name("consumer_process.py")
    args = [sys.executable, str(script), platform_db, kafka_bootstrap, topic, group, str(total)]
    env = {**os.environ, "MISP_FAILPOINTS": failpoint}
    crashed = subprocess.run(args, env=env, timeout=120, capture_output=True)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr.decode()[-2000:]
    partial = await effects(engine)
    assert 0 < len(partial) < total

    env.pop("MISP_FAILPOINTS")
    restarted = subprocess.run(args, env=env, timeout=120, capture_output=True)
    assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
    rows = await effects(engine)
    assert sorted(n for _, n in rows) == list(range(total))  # each effect exactly once


async def test_a_stop_does_not_wait_for_a_batch_stalled_at_a_failpoint_and_loses_nothing(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = effect_log
    topic = await new_topic()
    Counter = counter_event(topic)
    group = f"g-{uuid.uuid4().hex}"
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(engine, platform_db, producer)
    try:
        await append_counters(engine, Counter, 5)
        await relay.publish_pending()
    finally:
        await producer.stop()

    def runner() -> ConsumerRunner:
        return ConsumerRunner(service="test", group=group, engine=engine,
                              bootstrap_servers=kafka_bootstrap, topics=[topic],
                              handlers={COUNTER: record_effect})

    monkeypatch.setenv("MISP_FAILPOINTS", "consumer.before_batch=delay:600000")
    at_failpoint, real_pause = asyncio.Event(), failpoints.pause

    def pause(name: str) -> Awaitable[None]:  # the real delay, and a word when it starts
        if name == "consumer.before_batch":
            at_failpoint.set()
        return real_pause(name)

    monkeypatch.setattr(failpoints, "pause", pause)
    stop = asyncio.Event()
    stalled = asyncio.create_task(runner().run(stop))
    await asyncio.wait_for(at_failpoint.wait(), 30)  # its first batch is fetched, and waits
    stop.set()
    await asyncio.wait_for(stalled, 10)
    assert await effects(engine) == []

    monkeypatch.delenv("MISP_FAILPOINTS")
    stop = asyncio.Event()
    task = asyncio.create_task(runner().run(stop))
    try:
        rows = await eventually(lambda: _at_least(engine, 5))
    finally:
        stop.set()
        await task
    assert sorted(n for _, n in rows) == list(range(5))


async def test_a_consumer_whose_kept_connection_is_killed_reconnects_and_applies_once(
        effect_log: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    """`run` keeps one connection for its batches: its backend killed between batches, the
    next batch fails on it, is retried on a new connection, and every effect happens once."""
    engine = effect_log
    topic = await new_topic()
    Counter = counter_event(topic)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stop = asyncio.Event()
    relay = OutboxRelay(engine, platform_db, producer, poll_interval_s=0.1)
    runner = ConsumerRunner(service="test", group=f"g-{uuid.uuid4().hex}", engine=engine,
                            bootstrap_servers=kafka_bootstrap, topics=[topic],
                            handlers={COUNTER: record_effect}, backoff_s=0.05)
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(runner.run(stop))]
    try:
        await append_counters(engine, Counter, 20)
        await eventually(lambda: _at_least(engine, 20))
        kept = runner._held
        assert kept is not None
        backend = (await kept.get_raw_connection()).driver_connection.info.backend_pid
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        await append_counters(engine, Counter, 20, start=20)
        rows = await eventually(lambda: _at_least(engine, 40))
        assert runner._held is not None and runner._held is not kept
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await producer.stop()
    assert sorted(n for _, n in rows) == list(range(40))
    assert len({event_id for event_id, _ in rows}) == 40
    assert runner._held is None  # let go at the stop; a transaction after it uses the pool's
    async with runner.transaction() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
