"""Benchmark: the event pipeline (append -> outbox -> relay -> Kafka -> consumer -> projection).

Prints, beside a raw aiokafka produce-then-consume of the same messages measured in the same run:
  1. throughput: events/s from the first append to the last applied projection row;
  2. latency: p50/p99 from commit to effect at a fixed 1,000 events/s.
The relay and the consumer run as their own processes, as they are deployed.
Targets (issue 2): pipeline >= 20% of the raw rate; p99 <= 200 ms at 1,000 events/s.

    python bench/pipeline.py [--events 20000] [--rate 1000] [--seconds 10]
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

from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.topics import Topic
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import create_engine
from misp_platform.eventstore import Append, EventStore
from misp_platform.kafka import client_options, create_producer, ensure_topics
from misp_platform.migrations import create_platform_tables
from misp_platform.relay import OutboxRelay
from misp_platform.testing import ChildProcesses

EVENT_TYPE = "misp.bench.counter.incremented.v1"
RESULTS = Path(__file__).parent / "results"


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


async def apply(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """The projection: one row per event, written for a whole run of events at once."""
    await conn.execute(
        text("INSERT INTO projection (stream_id, n, sent_at, applied_at) "
             "VALUES (:s, :n, :sent, extract(epoch from clock_timestamp()))"),
        [{"s": e.subject, "n": e.data["n"], "sent": e.data["sent_at"]} for e in envelopes])


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


async def wait_applied(engine, expected: int, timeout_s: float = 600) -> None:  # type: ignore[no-untyped-def]
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
    topics = {k: f"bench.{k}.{uuid.uuid4().hex[:8]}" for k in ("raw", "tput", "lat")}
    await ensure_topics(bootstrap, [Topic(t, owner="bench", partitions=3) for t in topics.values()])
    store = EventStore("bench")
    actor = Actor(user_id=1, email="bench@admin.test", org_id=1, client_ip="127.0.0.1")
    results: dict[str, float] = {"events": args.events}
    try:
        # Baseline: the very records the pipeline publishes, through bare aiokafka.
        model = event_model(topics["raw"])
        sample = []
        for n in range(args.events):
            env = Envelope(source="/bench", type=EVENT_TYPE, subject=str(uuid.uuid4()),
                           streamversion=1, actor=actor,
                           data=model(n=n, sent_at=time.time()).model_dump())
            headers, value = to_kafka(env)
            sample.append((headers, value, (env.subject or "").encode()))
        results["raw_kafka_events_per_s"] = await raw_kafka(bootstrap, sample, topics["raw"])

        # Throughput: appends in transactions of 100 events, relay and consumer in processes.
        model = event_model(topics["tput"])
        procs = [start_role("relay", url, bootstrap),
                 start_role("consume", url, bootstrap, topics["tput"], f"b-{uuid.uuid4().hex}")]
        await asyncio.sleep(3)  # let the consumer join its group
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
        await asyncio.sleep(3)
        total = int(args.rate * args.seconds)
        gate = asyncio.Semaphore(16)

        async def one(n: int) -> None:
            async with gate, engine.begin() as conn:
                await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="bench",
                                   expected_version=0,
                                   events=[model(n=n, sent_at=time.time())], actor=actor)

        tasks = []
        begin = time.perf_counter()
        for n in range(total):
            delay = begin + n / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        await asyncio.gather(*tasks)
        offered = total / (time.perf_counter() - begin)
        await wait_applied(engine, total)
        async with engine.connect() as conn:
            lat = sorted((r[0] - r[1]) * 1000 for r in await conn.execute(
                text("SELECT applied_at, sent_at FROM projection")))
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        results["latency_rate_offered_per_s"] = offered
        results["latency_p50_ms"] = statistics.median(lat)
        results["latency_p99_ms"] = lat[int(len(lat) * 0.99) - 1]
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
    raw = results["raw_kafka_events_per_s"]
    table.add_row("raw aiokafka produce+consume (baseline)", f"{raw:,.0f} ev/s", "")
    table.add_row("pipeline throughput", f"{results['pipeline_events_per_s']:,.0f} ev/s",
                  f"ratio {results['ratio_to_raw']:.1%} (target >= 20%)")
    table.add_row("offered rate for latency", f"{results['latency_rate_offered_per_s']:,.0f} ev/s",
                  "target 1,000 ev/s")
    table.add_row("commit -> effect p50", f"{results['latency_p50_ms']:.1f} ms", "")
    table.add_row("commit -> effect p99", f"{results['latency_p99_ms']:.1f} ms",
                  "target <= 200 ms")
    table.add_row("commit -> effect max", f"{results['latency_max_ms']:.1f} ms", "")
    Console().print(table)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        asyncio.run(role_relay(sys.argv[2], sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "consume":
        asyncio.run(role_consume(*sys.argv[2:6]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(measure(args))
    (RESULTS / "pipeline.json").write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
