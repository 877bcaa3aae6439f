"""Benchmark: the event pipeline (append -> outbox -> relay -> Kafka -> consumer -> projection).

Prints, each beside its baseline measured in the same run:
  1. throughput: events/s from the first append to the last applied projection row, beside a raw
     aiokafka produce-then-consume of the same records;
  2. latency: p50/p99 from commit to effect at a fixed 1,000 events/s, offered by writer
     processes (`--writers`) on a shared schedule; the rate offered is printed beside the one
     asked, and the figure split at the record's batch (a plain reader of the topic gives its
     timestamp): commit -> the relay builds the batch, batch -> the consumer's effect;
  3. the relay alone: commit -> visible in Kafka (a plain consumer reading the topic) p50/p99 at
     1,000 events/s, split into its hops by the records' timestamps (commit -> the relay builds
     the batch; batch -> the reader has it), and events/s draining a prefilled outbox, beside a
     raw aiokafka produce of the same records; Debezium's outbox connector's figures (issue 19,
     measured elsewhere on this machine, not in this run) are printed beside ours.
The relay, the consumer and the topic reader run as their own processes, as they are deployed.
Targets (issue 19): pipeline >= 25% of the raw rate; p99 <= 200 ms at 1,000 events/s; relay
p50 <= 12.6 ms and p99 <= 32 ms at 1,000 events/s, and more than 18,300 events/s.

    python bench/pipeline.py [--events 20000] [--rate 1000] [--seconds 10]
                             [--relay-events 50000] [--writers 3] [--only pipeline|relay]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.topics import Topic
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import PUBLISHED_CHANNEL, create_engine, libpq_url
from misp_platform.eventstore import Append, EventStore
from misp_platform.kafka import (
    client_options,
    create_producer,
    ensure_topics,
    topic_partitions,
)
from misp_platform.migrations import create_platform_tables
from misp_platform.outbox import (
    OutboxRow,
    OutgoingMessage,
    announced_positions,
    enqueue_messages,
)
from misp_platform.relay import OutboxRelay
from misp_platform.testing import ChildProcesses

EVENT_TYPE = "misp.bench.counter.incremented.v1"
RESULTS = Path(__file__).parent / "results"
# Debezium's PostgreSQL outbox connector on Kafka Connect, tuned (poll.interval.ms=10), as issue
# 19 measured it on this machine: a reference, not measured by this run.
DEBEZIUM = {"events_per_s": 18300.0, "p50_ms": 12.6, "p99_ms": 32.0}


def event_model(topic_name: str) -> type[DomainEvent]:
    class Incremented(DomainEvent):
        type: ClassVar[str] = EVENT_TYPE
        topic: ClassVar[str] = topic_name
        n: int
        sent_at: float

    return Incremented


# ---- roles run as separate processes ---------------------------------------------------------

async def role_relay(database_url: str, bootstrap: str) -> None:
    engine = create_engine(database_url)
    producer = create_producer(bootstrap)
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await OutboxRelay(engine, database_url, producer, poll_interval_s=0.5).run(stop)
    await producer.stop()
    await engine.dispose()


# A run's rows in one JSON parameter, one statement (as the event store writes its events): an
# executemany through SQLAlchemy compiled each row's parameters, a fifth of the consumer's CPU.
PROJECT = text("""
    INSERT INTO projection (stream_id, n, sent_at, applied_at)
    SELECT r.s, r.n, r.sent, extract(epoch from clock_timestamp())
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(s uuid, n int, sent double precision)
""")


async def apply(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """The projection: one row per event, written for a whole run of events at once."""
    rows = [{"s": e.subject, "n": e.data["n"], "sent": e.data["sent_at"]} for e in envelopes]
    await conn.execute(PROJECT, {"rows": orjson.dumps(rows).decode()})


async def role_consume(database_url: str, bootstrap: str, topic: str, group: str) -> None:
    engine = create_engine(database_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await ConsumerRunner(service="bench", group=group, engine=engine, bootstrap_servers=bootstrap,
                         topics=[topic], handlers={}, batch_handlers={EVENT_TYPE: apply},
                         batch_max=500).run(stop)
    await engine.dispose()


async def role_watch(bootstrap: str, topic: str, total: str) -> None:
    """A plain consumer of the topic (every partition from the start, no group): says `ready` on
    stdout, then, once it has every event, when it received each one (by the `n` of its data)."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    partitions = await topic_partitions(consumer, topic)
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    seen: dict[int, tuple[float, float]] = {}
    while len(seen) < int(total):
        batches = await consumer.getmany(timeout_ms=200)
        now = time.time()
        for records in batches.values():
            for r in records:
                # The record's timestamp is its CreateTime: when the relay built its batch.
                seen.setdefault(orjson.loads(r.value)["n"], (now, r.timestamp / 1000))
    await consumer.stop()
    sys.stdout.buffer.write(orjson.dumps(seen, option=orjson.OPT_NON_STR_KEYS) + b"\n")
    sys.stdout.flush()


# ---- measurements ------------------------------------------------------------------------------

async def raw_kafka(bootstrap: str, messages: list[tuple[list[tuple[str, bytes]], bytes, bytes]],
                    topic: str) -> float:
    """Messages/s of a bare idempotent aiokafka produce of the same records, then consume."""
    producer = create_producer(bootstrap)
    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap), auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=f"raw-{uuid.uuid4().hex}")
    await producer.start()
    await consumer.start()
    started = time.perf_counter()
    futures = [await producer.send(topic, value=v, key=k, headers=h) for h, v, k in messages]
    await asyncio.gather(*futures)
    got = 0
    while got < len(messages):
        batches = await consumer.getmany(timeout_ms=1000, max_records=500)
        got += sum(len(rs) for rs in batches.values())
    elapsed = time.perf_counter() - started
    await consumer.stop()
    await producer.stop()
    return len(messages) / elapsed


async def raw_produce(bootstrap: str, messages: Sequence[OutgoingMessage]) -> float:
    """Messages/s of a bare aiokafka produce (the relay's producer settings) of the records."""
    producer = create_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    futures = [await producer.send(m.topic, value=m.value, key=(m.key or "").encode(),
                                   headers=m.headers) for m in messages]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return len(messages) / elapsed


def bench_messages(topic: str, count: int, actor: Actor) -> list[OutgoingMessage]:
    """`count` records as the event store writes them (one event of a new stream each)."""
    model = event_model(topic)
    return [OutgoingMessage.of(Envelope(
        source="/bench", type=EVENT_TYPE, subject=(stream := str(uuid.uuid4())), streamversion=1,
        actor=actor, data=model(n=n, sent_at=0.0).model_dump()), topic=topic, key=stream)
        for n in range(count)]


async def relay_stage(args: argparse.Namespace, engine: AsyncEngine, url: str, bootstrap: str,
                      topics: dict[str, str], actor: Actor) -> dict[str, float]:
    """The relay alone: commit -> visible in Kafka at a fixed rate, then the drain of a
    prefilled outbox beside a raw produce of the same records."""
    results: dict[str, float] = {}
    total = int(args.rate * args.seconds)
    messages = bench_messages(topics["relay_lat"], total, actor)
    procs = [start_role("relay", url, bootstrap)]
    watch = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "watch", bootstrap, topics["relay_lat"], str(total),
        stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024)
    assert watch.stdout is not None
    try:
        if await asyncio.wait_for(watch.stdout.readline(), 60) != b"ready\n":
            raise RuntimeError("the topic reader did not start (bench/results/pipeline-*.log)")
        await asyncio.sleep(1)  # the relay has taken its lock
        results.update(await relay_latency(args, url, messages, watch.stdout))
    finally:
        if watch.returncode is None:
            watch.kill()
        await watch.wait()

    # Throughput: the same records committed in one transaction, drained by the running relay.
    count = args.relay_events
    messages = bench_messages(topics["relay_tput"], count, actor)
    results["relay_events"] = count
    results["raw_produce_events_per_s"] = await raw_produce(
        bootstrap, bench_messages(topics["raw_produce"], count, actor))
    # Done when the relay has announced every position on `outbox_published` (read-your-writes'
    # channel): no polling of the table while it drains.
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as listen:
        await listen.execute(f"LISTEN {PUBLISHED_CHANNEL}")
        async with engine.begin() as conn:
            for i in range(0, count, 5000):
                await enqueue_messages(conn, messages[i:i + 5000])
        started = time.perf_counter()
        announced = 0
        async with asyncio.timeout(300):
            async for notify in listen.notifies():
                runs = announced_positions(notify.payload)
                if runs is None:  # too many runs to name: ask the table
                    async with engine.connect() as conn:
                        if not (await conn.execute(text("SELECT count(*) FROM outbox"))
                                ).scalar_one():
                            break
                    continue
                announced += sum(b - a + 1 for a, b in runs)
                if announced >= count:
                    break
    results["relay_events_per_s"] = count / (time.perf_counter() - started)
    results["relay_ratio_to_raw_produce"] = (results["relay_events_per_s"]
                                             / results["raw_produce_events_per_s"])
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)
    return results


INSERT_ONE = ("INSERT INTO outbox (topic, message_key, headers, payload) "
              "VALUES (%s, %s, %s::jsonb, %s)")


def headers_json(m: OutgoingMessage) -> str:
    """The outbox's headers column for a message, as `enqueue_messages` writes it."""
    return orjson.dumps([[k, v.decode()] for k, v in m.headers]).decode()


async def relay_latency(args: argparse.Namespace, url: str,
                        messages: Sequence[OutgoingMessage],
                        watched: asyncio.StreamReader) -> dict[str, float]:
    """Commit one record per transaction at the fixed rate; the reader says when each arrived."""
    results: dict[str, float] = {}
    total = len(messages)
    committed: dict[int, float] = {}
    # The writers: plain psycopg connections in autocommit, one prepared INSERT per event (its
    # own transaction), so that one Python process offers 1,000 commits/s on a busy machine.
    connections = [await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True)
                   for _ in range(8)]
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def writer(conn: psycopg.AsyncConnection) -> None:
        while (n := await queue.get()) is not None:
            m = messages[n]
            # The time taken before the statement is sent is at or before its commit: the
            # figure errs against the relay, by the INSERT's own duration.
            committed[n] = time.time()
            await conn.execute(INSERT_ONE, (m.topic, m.key, headers_json(m), m.value),
                               prepare=True)

    writers = [asyncio.create_task(writer(c)) for c in connections]
    begin = time.perf_counter()
    for n in range(total):
        delay = begin + n / args.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(n)
    for _ in writers:
        queue.put_nowait(None)
    await asyncio.gather(*writers)
    for c in connections:
        await c.close()
    results["relay_latency_rate_offered_per_s"] = total / (time.perf_counter() - begin)
    results["relay_latency_rate_asked_per_s"] = args.rate
    seen = {int(n): t for n, t in orjson.loads(await asyncio.wait_for(
        watched.readline(), 120)).items()}
    lat = sorted((seen[n][0] - committed[n]) * 1000 for n in committed)
    results["relay_latency_p50_ms"] = statistics.median(lat)
    results["relay_latency_p99_ms"] = p99(lat)
    results["relay_latency_max_ms"] = lat[-1]
    # The hops: commit -> the relay builds the record's batch (its wake-up and read), then
    # batch built -> read from Kafka (the produce request, the broker's ack, the reader's fetch).
    # Kafka's timestamps are in milliseconds: each hop is within a millisecond.
    to_relay = sorted((seen[n][1] - committed[n]) * 1000 for n in committed)
    to_reader = sorted((seen[n][0] - seen[n][1]) * 1000 for n in committed)
    for name, hop in (("commit_to_batch", to_relay), ("batch_to_reader", to_reader)):
        results[f"relay_hop_{name}_p50_ms"] = statistics.median(hop)
        results[f"relay_hop_{name}_p99_ms"] = p99(hop)
    return results


def p99(ordered: Sequence[float]) -> float:
    return ordered[max(int(len(ordered) * 0.99) - 1, 0)]


# An append as the event store writes it (the event row and its outbox row, one transaction),
# in one prepared statement on a plain psycopg connection in autocommit.
APPEND_ONE = """
    WITH appended AS (
        INSERT INTO event (stream_id, version, event_id, stream_type, type, data, metadata)
        VALUES (%s, 1, %s, 'bench', %s, %s::jsonb, %s::jsonb))
    INSERT INTO outbox (topic, message_key, headers, payload) VALUES (%s, %s, %s::jsonb, %s)
"""
WRITER_CONNECTIONS = 6


async def role_write(url: str, topic: str, first: str, step: str, total: str,
                     rate: str) -> None:
    """One of the latency writers: says `ready` once its connections are open, reads the
    schedule's start (epoch seconds) on stdin, then commits events `first`, `first + step`, ...
    (below `total`) each at `start + n / rate`, one event per transaction, several in flight;
    prints when its last commit ended. The rows are the event store's (envelope, event row,
    outbox record), written by one prepared statement: what is measured is commit -> effect,
    and the store's SQLAlchemy path costs about 2 ms of CPU a commit, more than a share of this
    machine offers 1,000 times a second beside the relay, the consumer and PostgreSQL."""
    model = event_model(topic)
    actor = Actor(user_id=1, email="bench@admin.test", org_id=1, client_ip="127.0.0.1")
    connections: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
    for _ in range(WRITER_CONNECTIONS):
        connections.put_nowait(await psycopg.AsyncConnection.connect(libpq_url(url),
                                                                     autocommit=True))
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    begin = float(await asyncio.to_thread(sys.stdin.readline))

    async def one(n: int) -> None:
        conn = await connections.get()
        try:
            stream = str(uuid.uuid4())
            # Taken before the statement is sent: the figure errs against the pipeline by the
            # statement's own duration.
            env = Envelope(source="/bench", type=EVENT_TYPE, subject=stream, streamversion=1,
                           actor=actor, data=model(n=n, sent_at=time.time()).model_dump())
            m = OutboxRow.of_envelope(env, topic=topic, key=stream)  # as the store builds it
            await conn.execute(APPEND_ONE, (
                stream, env.id, env.type, orjson.dumps(env.data).decode(),
                orjson.dumps(env.model_dump(mode="json", exclude={"data"})).decode(),
                m.topic, m.key, orjson.dumps(m.headers).decode(), m.value), prepare=True)
        finally:
            connections.put_nowait(conn)

    tasks = []
    for n in range(int(first), int(total), int(step)):
        delay = begin + n / float(rate) - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n)))
    await asyncio.gather(*tasks)
    sys.stdout.write(f"{time.time()}\n")
    sys.stdout.flush()
    while not connections.empty():
        await connections.get_nowait().close()


async def offer_commits(url: str, topic: str, total: int, rate: float, writers: int) -> float:
    """Offer `total` commits at `rate` a second from `writers` processes, each taking every
    `writers`-th event of one schedule; returns the rate offered: the commits over the time
    until the last one ended."""
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, __file__, "write", url, topic, str(k), str(writers), str(total),
        str(rate), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        for k in range(writers)]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if await asyncio.wait_for(proc.stdout.readline(), 120) != b"ready\n":
                raise RuntimeError("a latency writer did not start")
        begin = time.time() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{begin!r}\n".encode())
            await proc.stdin.drain()
        ended = [float((await proc.communicate())[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return total / (max(ended) - begin)


async def warm_up(engine: AsyncEngine, store: EventStore, model: type[DomainEvent],
                  actor: Actor) -> None:
    """One event through the whole pipeline before measuring: the relay holds its lock and the
    consumer has joined its group (on a busy machine that takes longer than any fixed sleep)."""
    async with engine.begin() as conn:
        await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="bench",
                           expected_version=0, events=[model(n=-1, sent_at=time.time())],
                           actor=actor)
    await wait_applied(engine, 1, timeout_s=120)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE projection"))


async def wait_applied(engine: AsyncEngine, expected: int, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        async with engine.connect() as conn:
            done = (await conn.execute(text("SELECT count(*) FROM projection"))).scalar_one()
        if done >= expected:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"only {done} of {expected} events applied")


CHILDREN = ChildProcesses()


def start_role(*args: str) -> subprocess.Popen[bytes]:
    child: subprocess.Popen[bytes] = CHILDREN.start([sys.executable, __file__, *args],
                                                    RESULTS / f"pipeline-{args[0]}.log")
    return child



async def measure(args: argparse.Namespace) -> dict[str, float]:
    bootstrap = os.environ.get("MISP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    pg = os.environ.get("MISP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:55432")
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{pg}/{name}"
    engine = create_async_engine(url, pool_size=20)
    async with engine.begin() as conn:
        await conn.run_sync(create_platform_tables)
        await conn.execute(text("CREATE TABLE projection (stream_id uuid, n int, "
                                "sent_at double precision, applied_at double precision)"))
    topics = {k: f"bench.{k}.{uuid.uuid4().hex[:8]}"
              for k in ("raw", "raw_after", "tput", "lat", "relay_lat", "relay_tput",
                        "raw_produce")}
    await ensure_topics(bootstrap, [Topic(t, owner="bench", partitions=3) for t in topics.values()])
    store = EventStore("bench")
    actor = Actor(user_id=1, email="bench@admin.test", org_id=1, client_ip="127.0.0.1")
    results: dict[str, float] = {"events": args.events}
    try:
        if args.only in (None, "relay"):
            results.update(await relay_stage(args, engine, url, bootstrap, topics, actor))
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE outbox"))
        if args.only not in (None, "pipeline"):
            return results
        # Baseline: the very records the pipeline publishes, through bare aiokafka.
        model = event_model(topics["raw"])
        sample = []
        for n in range(args.events):
            env = Envelope(source="/bench", type=EVENT_TYPE, subject=str(uuid.uuid4()),
                           streamversion=1, actor=actor,
                           data=model(n=n, sent_at=time.time()).model_dump())
            headers, value = to_kafka(env)
            sample.append((headers, value, (env.subject or "").encode()))
        # Measured before and after the pipeline, on a machine whose load moves: the mean is
        # the baseline, both are reported.
        results["raw_kafka_before_events_per_s"] = await raw_kafka(bootstrap, sample,
                                                                   topics["raw"])

        # Throughput: appends in transactions of 100 events, relay and consumer in processes.
        model = event_model(topics["tput"])
        procs = [start_role("relay", url, bootstrap),
                 start_role("consume", url, bootstrap, topics["tput"], f"b-{uuid.uuid4().hex}")]
        await warm_up(engine, store, model, actor)
        started = time.perf_counter()
        chunks = iter(range(0, args.events, 100))

        async def writer() -> None:  # several writers, as several API requests would be
            for chunk in chunks:
                async with engine.begin() as conn:
                    await store.append_many(conn, [
                        Append(stream_id=str(uuid.uuid4()), stream_type="bench",
                               expected_version=0, events=(model(n=n, sent_at=0.0),),
                               actor=actor)
                        for n in range(chunk, min(chunk + 100, args.events))])

        await asyncio.gather(*(writer() for _ in range(4)))
        await wait_applied(engine, args.events)
        elapsed = time.perf_counter() - started
        results["raw_kafka_after_events_per_s"] = await raw_kafka(bootstrap, sample,
                                                                  topics["raw_after"])
        results["raw_kafka_events_per_s"] = (results["raw_kafka_before_events_per_s"]
                                             + results["raw_kafka_after_events_per_s"]) / 2
        results["pipeline_events_per_s"] = args.events / elapsed
        results["ratio_to_raw"] = results["pipeline_events_per_s"] / results[
            "raw_kafka_events_per_s"]
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)

        # Latency at a fixed rate: one event per transaction, on a schedule.
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE projection"))
        model = event_model(topics["lat"])
        procs = [start_role("relay", url, bootstrap),
                 start_role("consume", url, bootstrap, topics["lat"], f"b-{uuid.uuid4().hex}")]
        await warm_up(engine, store, model, actor)
        total = int(args.rate * args.seconds)
        # A plain reader of the topic splits commit -> effect at the record's batch: the
        # warm-up's record is on the topic too.
        watch = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "watch", bootstrap, topics["lat"], str(total + 1),
            stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024)
        assert watch.stdout is not None
        try:
            if await asyncio.wait_for(watch.stdout.readline(), 120) != b"ready\n":
                raise RuntimeError("the topic reader did not start")
            offered = await offer_commits(url, topics["lat"], total, args.rate, args.writers)
            await wait_applied(engine, total)
            seen = {int(n): t for n, t in orjson.loads(await asyncio.wait_for(
                watch.stdout.readline(), 120)).items()}
        finally:
            if watch.returncode is None:
                watch.kill()
            await watch.wait()
        async with engine.connect() as conn:
            applied = (await conn.execute(
                text("SELECT n, sent_at, applied_at FROM projection"))).all()
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        lat = sorted((a - sent) * 1000 for _, sent, a in applied)
        # The hops, by the record's timestamp (when the relay built its batch, ms clock).
        hops = {"commit_to_batch": sorted((seen[n][1] - sent) * 1000 for n, sent, _ in applied),
                "batch_to_effect": sorted((a - seen[n][1]) * 1000 for n, _, a in applied)}
        for hop, values in hops.items():
            results[f"latency_hop_{hop}_p50_ms"] = statistics.median(values)
            results[f"latency_hop_{hop}_p99_ms"] = p99(values)
        results["latency_rate_offered_per_s"] = offered
        results["latency_rate_asked_per_s"] = args.rate
        results["latency_writers"] = args.writers
        results["latency_p50_ms"] = statistics.median(lat)
        results["latency_p99_ms"] = p99(lat)
        results["latency_max_ms"] = lat[-1]
    finally:
        CHILDREN.stop_all()  # no relay or consumer of ours outlives the benchmark
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return results


def report(results: dict[str, float]) -> None:
    table = Table(title="pipeline: append -> outbox -> relay -> Kafka -> consumer -> projection")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("baseline / target", justify="right")
    if "raw_kafka_events_per_s" in results:
        raw = results["raw_kafka_events_per_s"]
        table.add_row("raw aiokafka produce+consume (baseline)", f"{raw:,.0f} ev/s",
                      f"mean of {results['raw_kafka_before_events_per_s']:,.0f} before and "
                      f"{results['raw_kafka_after_events_per_s']:,.0f} after")
        table.add_row("pipeline throughput", f"{results['pipeline_events_per_s']:,.0f} ev/s",
                      f"ratio {results['ratio_to_raw']:.1%} (target >= 25%)")
        table.add_row(f"offered rate for latency ({results['latency_writers']:.0f} writers)",
                      f"{results['latency_rate_offered_per_s']:,.0f} ev/s",
                      f"asked {results['latency_rate_asked_per_s']:,.0f} ev/s")
        table.add_row("commit -> effect p50", f"{results['latency_p50_ms']:.1f} ms", "")
        table.add_row("commit -> effect p99", f"{results['latency_p99_ms']:.1f} ms",
                      "target <= 200 ms")
        table.add_row("commit -> effect max", f"{results['latency_max_ms']:.1f} ms", "")
        for hop, label in (("commit_to_batch", "commit -> relay builds batch"),
                           ("batch_to_effect", "batch built -> effect committed")):
            table.add_row(f"hop: {label} p50 / p99",
                          f"{results[f'latency_hop_{hop}_p50_ms']:.1f} / "
                          f"{results[f'latency_hop_{hop}_p99_ms']:.1f} ms", "Kafka's ms clock")
    if "relay_events_per_s" in results:
        table.add_section()
        deb = DEBEZIUM
        table.add_row("relay: offered rate for latency",
                      f"{results['relay_latency_rate_offered_per_s']:,.0f} ev/s",
                      f"asked {results['relay_latency_rate_asked_per_s']:,.0f} ev/s")
        table.add_row("relay: commit -> in Kafka p50", f"{results['relay_latency_p50_ms']:.1f} ms",
                      f"Debezium* {deb['p50_ms']} ms")
        table.add_row("relay: commit -> in Kafka p99", f"{results['relay_latency_p99_ms']:.1f} ms",
                      f"Debezium* {deb['p99_ms']:.0f} ms")
        table.add_row("relay: commit -> in Kafka max", f"{results['relay_latency_max_ms']:.1f} ms",
                      "")
        for hop, label in (("commit_to_batch", "commit -> relay builds batch"),
                           ("batch_to_reader", "batch built -> reader has it")):
            table.add_row(f"relay hop: {label} p50 / p99",
                          f"{results[f'relay_hop_{hop}_p50_ms']:.1f} / "
                          f"{results[f'relay_hop_{hop}_p99_ms']:.1f} ms", "Kafka's ms clock")
        table.add_row("raw aiokafka produce (baseline)",
                      f"{results['raw_produce_events_per_s']:,.0f} ev/s", "")
        table.add_row(f"relay: drain of {results['relay_events']:,.0f} rows",
                      f"{results['relay_events_per_s']:,.0f} ev/s",
                      f"ratio {results['relay_ratio_to_raw_produce']:.1%}; "
                      f"Debezium* {deb['events_per_s']:,.0f} ev/s")
    Console().print(table)
    if "relay_events_per_s" in results:
        Console().print("* Debezium's PostgreSQL outbox connector, tuned (poll.interval.ms=10): "
                        "measured elsewhere on this machine (issue 19), not in this run.")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        asyncio.run(role_relay(sys.argv[2], sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "consume":
        asyncio.run(role_consume(*sys.argv[2:6]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "write":
        asyncio.run(role_write(*sys.argv[2:8]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "watch":
        asyncio.run(role_watch(*sys.argv[2:5]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--relay-events", type=int, default=50000)
    # Two processes offered 843 of the 1,000 commits/s asked on a quiet machine (make bench at
    # 0598bf2): a third one offers the rate asked.
    parser.add_argument("--writers", type=int, default=3,
                        help="processes offering the latency point's commits")
    parser.add_argument("--only", choices=["pipeline", "relay"])
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(measure(args))
    name = "pipeline.json" if args.only is None else f"pipeline-{args.only}.json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
