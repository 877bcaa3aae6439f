"""Benchmark: background jobs (enqueue -> outbox -> Kafka -> worker -> reports -> job table).

Prints, beside a raw aiokafka produce-then-consume of the same number of messages measured in
the same run:
  1. no-op jobs/s from the first enqueue to the last job completed (relay, jobs consumer and two
     workers as their own processes, as they are deployed);
  2. scheduler drift (due time -> tick) p50/p99 over a run of frequent ticks (target p99 <= 1 s);
  3. the time from SIGKILLing a worker mid-job to its job being failed over (requeued).

    python bench/jobs.py [--jobs 1000] [--drift-seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

# This file is named like the service's package: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from aiokafka import AIOKafkaConsumer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from jobs.adapters.tables import job, task, task_tick  # noqa: E402
from jobs.handlers import jobs as commands  # noqa: E402
from jobs.handlers import tasks  # noqa: E402
from misp_contracts.envelope import Actor  # noqa: E402
from misp_contracts.events.jobs import JOBS_COMMANDS_TOPIC, WORKER_TOPIC, run_topic  # noqa: E402
from misp_contracts.topics import Topic, owned_by  # noqa: E402
from misp_platform.auth.principals import PRINCIPAL_TOPICS  # noqa: E402
from misp_platform.kafka import client_options, create_producer, ensure_topics  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import ChildProcesses, start_group_at_end  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MIGRATIONS = Path(__file__).resolve().parents[1] / "services/jobs/src/jobs/migrations"
CHILDREN = ChildProcesses()
# The jobs service's no-op type on the queues the running stack has no worker for (its no-op
# worker serves `default` only, deploy/programs.tsv): a dispatch of this benchmark's own
# database must never reach a stack worker, which would claim it and wait in vain for an answer
# (only the dispatching deployment answers, and this one's database is dropped at the end).
BENCH_QUEUES = ("prio", "cache", "update")


def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
    child: subprocess.Popen[bytes] = CHILDREN.start(
        [sys.executable, "-m", "jobs", *args], RESULTS / f"jobs-{args[0]}.log",
        env={**os.environ, "MISP_LOG_FORMAT": "json", **env})
    return child



async def raw_kafka(bootstrap: str, count: int) -> float:
    """Messages/s of a bare aiokafka produce then consume of `count` job-sized messages."""
    topic = f"bench.jobs-raw.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [Topic(topic, owner="bench", partitions=3)])
    producer = create_producer(bootstrap)
    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap), auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=f"raw-{uuid.uuid4().hex}")
    await producer.start()
    await consumer.start()
    value = json.dumps({"job_id": 1, "attempt": 1, "job_type": "noop", "queue": "default",
                        "job_input": "", "data": {}, "org_id": 0}).encode()
    began = time.perf_counter()
    futures = [await producer.send(topic, value=value, key=str(n).encode())
               for n in range(count)]
    await asyncio.gather(*futures)
    got = 0
    while got < count:
        got += sum(len(rs) for rs in (await consumer.getmany(timeout_ms=1000)).values())
    elapsed = time.perf_counter() - began
    await consumer.stop()
    await producer.stop()
    return count / elapsed


async def measure(args: argparse.Namespace) -> dict[str, float]:
    bootstrap = os.environ.get("MISP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    pg = os.environ.get("MISP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:55432")
    name = f"bench_jobs_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(f"{pg}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{pg}/{name}"
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    engine = create_async_engine(url, pool_size=10)
    await ensure_topics(bootstrap, owned_by("jobs"))
    results: dict[str, float] = {"jobs": args.jobs}
    tag = uuid.uuid4().hex[:8]
    env = {"JOBS_DATABASE_URL": url, "JOBS_CONSUMER_GROUP": f"bench-jobs-{tag}",
           "JOBS_WORKER_GROUP": f"bench-jobs-worker-{tag}", "JOBS_WORKER_HEARTBEAT_S": "1"}
    try:
        async with engine.begin() as conn:  # ids far from the running stack's
            await conn.execute(text("ALTER SEQUENCE job_id_seq RESTART WITH 5000000000000"))
        results["raw_kafka_msgs_per_s"] = await raw_kafka(bootstrap, args.jobs)
        await start_group_at_end(bootstrap, env["JOBS_CONSUMER_GROUP"],
                           [*PRINCIPAL_TOPICS, JOBS_COMMANDS_TOPIC, WORKER_TOPIC])
        await start_group_at_end(bootstrap, env["JOBS_WORKER_GROUP"],
                           [run_topic("jobs", q) for q in BENCH_QUEUES])
        start("relay", **env)
        start("consume", **env)
        for queue, prefetch in (("prio", 1), ("cache", args.prefetch)):
            for _ in range(args.workers):
                start("worker", queue, JOBS_WORKER_PREFETCH=str(prefetch), **env)
        await asyncio.sleep(6)  # the groups settle

        # 1. throughput: no-op jobs from the first enqueue to the last completed, with workers
        # that take one job at a time (the default), then with workers that prefetch.
        for queue, key in (("prio", "jobs_per_s"), ("cache", "jobs_per_s_prefetch")):
            began = time.perf_counter()
            for chunk in range(0, args.jobs, 100):
                async with engine.begin() as conn:
                    for _ in range(min(100, args.jobs - chunk)):
                        await commands.enqueue(conn, job_type="noop", queue=queue,
                                               actor=Actor.system())
            while True:
                async with engine.connect() as conn:
                    done = (await conn.execute(select(func.count()).select_from(job).where(
                        job.c.status == 4, job.c.queue == queue))).scalar_one()
                if done >= args.jobs:
                    break
                if time.perf_counter() - began > 300:
                    raise TimeoutError(f"only {done} of {args.jobs} jobs completed")
                await asyncio.sleep(0.05)
            results[key] = args.jobs / (time.perf_counter() - began)
        results["prefetch"] = args.prefetch
        results["ratio_to_raw"] = results["jobs_per_s"] / results["raw_kafka_msgs_per_s"]

        # 2 and 3 together: a scheduler ticking a 1 s task while a worker is killed mid-job.
        first = datetime.now(UTC) + timedelta(seconds=2)
        async with engine.begin() as conn:
            state = await tasks.set_task(conn, None, {
                "type": "noop", "interval_s": 1.0, "queue": "prio", "overlap": "allow",
                "catch_up": "run_all"}, Actor.system(), datetime.now(UTC))
            await conn.execute(task.update().where(task.c.id == state.id).values(
                next_execution_at=first, state={**state.model_dump(mode="json"),
                                                "next_execution_at": first.isoformat()}))
        start("scheduler", **env)
        victim = start("worker", "update", **env)
        await asyncio.sleep(4)
        async with engine.begin() as conn:
            long_job = await commands.enqueue(conn, job_type="noop", queue="update",
                                              actor=Actor.system(),
                                              data={"steps": 10000, "step_s": 0.05})
        while True:
            async with engine.connect() as conn:
                status = (await conn.execute(select(job.c.status).where(
                    job.c.id == long_job))).scalar_one()
            if status == 2:
                break
            await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        while True:
            async with engine.connect() as conn:
                row = (await conn.execute(select(job.c.status, job.c.retry_at).where(
                    job.c.id == long_job))).one()
            if row.status != 2:
                break
            await asyncio.sleep(0.05)
        results["dead_worker_detect_s"] = time.perf_counter() - killed
        results["dead_worker_heartbeat_s"] = 1.0
        remaining = args.drift_seconds - (time.perf_counter() - killed) - 4
        await asyncio.sleep(max(remaining, 3))
        async with engine.connect() as conn:
            drift = sorted((r.started_at - r.due_at).total_seconds() * 1000
                           for r in await conn.execute(select(task_tick).where(
                               task_tick.c.task_id == state.id)))
        results["ticks"] = len(drift)
        results["drift_p50_ms"] = statistics.median(drift)
        results["drift_p99_ms"] = drift[max(0, int(len(drift) * 0.99) - 1)]
    finally:
        CHILDREN.stop_all()  # no process of ours outlives the benchmark
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return results


def report(r: dict[str, float]) -> None:
    table = Table(title="jobs: enqueue -> Kafka -> worker -> reports -> job table")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    table.add_column("baseline / target", justify="right")
    table.add_row("raw aiokafka produce+consume (baseline)",
                  f"{r['raw_kafka_msgs_per_s']:,.0f} msg/s", "")
    table.add_row(f"no-op jobs, enqueue -> completed ({int(r['jobs'])} jobs, 2 workers)",
                  f"{r['jobs_per_s']:,.0f} jobs/s", f"ratio {r['ratio_to_raw']:.2%}")
    table.add_row(f"  same, workers prefetching {int(r['prefetch'])}",
                  f"{r['jobs_per_s_prefetch']:,.0f} jobs/s", "")
    table.add_row(f"scheduler drift p50 ({int(r['ticks'])} ticks)",
                  f"{r['drift_p50_ms']:.0f} ms", "")
    table.add_row("scheduler drift p99", f"{r['drift_p99_ms']:.0f} ms", "target <= 1,000 ms")
    table.add_row("dead worker: SIGKILL -> job failed over",
                  f"{r['dead_worker_detect_s']:.1f} s",
                  f"heartbeat {r['dead_worker_heartbeat_s']:.0f} s, 3 missed")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--prefetch", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--drift-seconds", type=float, default=15)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(measure(args))
    (RESULTS / "jobs.json").write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
