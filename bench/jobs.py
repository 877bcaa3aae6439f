"""Benchmark: background jobs (enqueue -> outbox -> Kafka -> worker -> reports -> job table).

Prints, beside Celery 5 on Redis measured in the same run on the same loads (issue 19: a private
`redis-server`, a Celery worker of `--concurrency` as many prefork processes as our workers,
Celery's defaults otherwise; bench/celery_jobs.py), and a raw aiokafka produce-then-consume:
  1. no-op jobs/s from the first enqueue to the last job completed (relay, jobs consumer and two
     workers as their own processes, as they are deployed), enqueued 100 a transaction
     (`enqueue_many`), workers holding `--prefetch` claims in flight (and, for the record, one
     job at a time), and the enqueue alone;
  2. pickup latency (enqueue -> handler start) p50/p99 with jobs enqueued at `--rate`/s, one per
     transaction, for `--paced-seconds` (target p50 <= 20 ms at 500/s);
  3. jobs/s of jobs that report 10 progress updates each;
  4. scheduler drift (due time -> tick) p50/p99 over a run of frequent ticks (target p99 <= 1 s);
  5. the time from SIGKILLing a worker mid-job to its job being failed over (requeued).

    python bench/jobs.py [--jobs 600] [--rate 500] [--drift-seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# This file is named like the service's package: keep its folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from aiokafka import AIOKafkaConsumer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from jobs.adapters.tables import job, job_attempt, task, task_tick, worker  # noqa: E402
from jobs.handlers import jobs as commands  # noqa: E402
from jobs.handlers import tasks  # noqa: E402
from misp_contracts.envelope import Actor  # noqa: E402
from misp_contracts.events.jobs import JOBS_COMMANDS_TOPIC, WORKER_TOPIC, run_topic  # noqa: E402
from misp_contracts.topics import Topic, owned_by  # noqa: E402
from misp_platform.auth.principals import PRINCIPAL_TOPICS  # noqa: E402
from misp_platform.kafka import client_options, create_producer, ensure_topics  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import (  # noqa: E402
    ChildProcesses,
    load_script,
    start_group_at_end,
)
from misp_platform.worker import job_run  # noqa: E402

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * q) - 1))]


def celery_baseline(args: argparse.Namespace) -> dict[str, float]:
    """Celery on a private Redis (no persistence), on the loads ours gets: the no-op jobs/s,
    the pickup p50/p99 at `args.rate`/s and the jobs/s of jobs with 10 progress updates."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = CHILDREN.start(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--daemonize", "no"], RESULTS / "jobs-redis.log")
    os.environ["CELERY_BENCH_REDIS"] = url
    celery_jobs = load_script(Path(__file__).parent / "celery_jobs.py", "celery_jobs")
    worker = CHILDREN.start(
        [sys.executable, "-m", "celery", "-A", "celery_jobs", "worker", "--pool", "prefork",
         "--concurrency", str(args.workers), "--loglevel", "WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat"], RESULTS / "jobs-celery.log",
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    app = celery_jobs.app
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError("the Celery worker did not start: see jobs-celery.log")
        out: dict[str, float] = {}
        for task, key in ((celery_jobs.noop, "celery_jobs_per_s"),
                          (celery_jobs.progress, "celery_progress_jobs_per_s")):
            began = time.time()
            results = [task.delay() for _ in range(args.jobs)]
            if key == "celery_jobs_per_s":
                out["celery_enqueue_per_s"] = args.jobs / (time.time() - began)
            for r in results:
                r.get(timeout=300)
            done = max(_epoch(r.date_done) for r in results)
            out[key] = args.jobs / (done - began)
        sent: list[tuple[float, Any]] = []
        began = time.time()
        for n in range(int(args.rate * args.paced_seconds)):
            delay = began + n / args.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            sent.append((time.time(), celery_jobs.noop.delay()))
        out["celery_paced_rate"] = len(sent) / (time.time() - began)
        pickups = [(r.get(timeout=300) - at) * 1000 for at, r in sent]
        out["celery_pickup_p50_ms"] = statistics.median(pickups)
        out["celery_pickup_p99_ms"] = percentile(pickups, 0.99)
        return out
    finally:
        app.close()
        for child in (worker, redis):
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


def _epoch(at: datetime | str) -> float:
    when = datetime.fromisoformat(at) if isinstance(at, str) else at
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cpu_s(pids: list[int]) -> float:
    """The CPU time (user + system) the processes `pids` used so far, from /proc (Linux)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / os.sysconf("SC_CLK_TCK")


async def completed(engine: Any, ids: list[int]) -> float:
    """Wait for every job of `ids` to complete; when the last one did (epoch seconds)."""
    began = time.perf_counter()
    while True:
        async with engine.connect() as conn:
            done, last = (await conn.execute(
                select(func.count(), func.max(job.c.date_modified))
                .where(job.c.id.in_(ids), job.c.status == 4))).one()
        if done >= len(ids):
            return float(last.timestamp())
        if time.perf_counter() - began > 300:
            raise TimeoutError(f"only {done} of {len(ids)} jobs completed")
        await asyncio.sleep(0.05)


async def workers_seen(engine: Any, count: int) -> None:
    """Wait until `count` workers of the benchmark's queues have sent a heartbeat."""
    began = time.perf_counter()
    while True:
        async with engine.connect() as conn:
            seen = (await conn.execute(select(func.count()).select_from(worker).where(
                worker.c.queue.in_(BENCH_QUEUES), worker.c.stopped_at.is_(None)))).scalar_one()
        if seen >= count:
            return
        if time.perf_counter() - began > 180:
            raise TimeoutError(f"only {seen} of {count} workers started")
        await asyncio.sleep(0.2)


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
    results: dict[str, float] = {"jobs": args.jobs, "workers": args.workers, "rate": args.rate}
    tag = uuid.uuid4().hex[:8]
    env = {"JOBS_DATABASE_URL": url, "JOBS_CONSUMER_GROUP": f"bench-jobs-{tag}",
           "JOBS_WORKER_GROUP": f"bench-jobs-worker-{tag}", "JOBS_WORKER_HEARTBEAT_S": "1"}
    try:
        async with engine.begin() as conn:  # ids far from the running stack's
            await conn.execute(text("ALTER SEQUENCE job_id_seq RESTART WITH 5000000000000"))
        results["raw_kafka_msgs_per_s"] = await raw_kafka(bootstrap, args.jobs)
        # The baseline first, while none of our processes runs.
        results.update(await asyncio.to_thread(celery_baseline, args))
        await start_group_at_end(bootstrap, env["JOBS_CONSUMER_GROUP"],
                           [*PRINCIPAL_TOPICS, JOBS_COMMANDS_TOPIC, WORKER_TOPIC])
        await start_group_at_end(bootstrap, env["JOBS_WORKER_GROUP"],
                           [run_topic("jobs", q) for q in BENCH_QUEUES])
        # The processes whose CPU time a no-op job costs (load 1), by role.
        roles: dict[str, list[int]] = {"relay": [start("relay", **env).pid],
                                       "consumer": [start("consume", **env).pid], "workers": []}
        for queue, prefetch in (("cache", args.prefetch), ("prio", 1)):
            for _ in range(args.workers):
                child = start("worker", queue, JOBS_WORKER_PREFETCH=str(prefetch), **env)
                if queue == "cache":
                    roles["workers"].append(child.pid)
        # Every worker is up (its heartbeat came through the relay and the consumer) and each
        # queue ran a few jobs: the loads measure a running system, not its start.
        await workers_seen(engine, 2 * args.workers)
        for queue in ("cache", "prio"):
            async with engine.begin() as conn:
                warm = [await commands.enqueue(conn, job_type="noop", queue=queue,
                                               actor=Actor.system()) for _ in range(20)]
            await completed(engine, warm)
        await asyncio.sleep(2)  # the groups settle

        # 1. throughput: no-op jobs from the first enqueue to the last completed, with workers
        # that hold `--prefetch` claims in flight, and with workers taking one job at a time.
        for queue, key, count, data in (
                ("cache", "jobs_per_s", args.jobs, None),
                ("prio", "jobs_per_s_one_at_a_time", min(args.jobs, 200), None),
                ("cache", "progress_jobs_per_s", args.jobs, {"steps": 10, "step_s": 0})):
            began = time.time()
            cpu_before = {role: cpu_s(pids) for role, pids in roles.items()}
            ids: list[int] = []
            for chunk in range(0, count, 100):
                async with engine.begin() as conn:
                    ids += await commands.enqueue_many(conn, min(100, count - chunk),
                                                       job_type="noop", queue=queue,
                                                       actor=Actor.system(), data=data)
            if key == "jobs_per_s":
                results["enqueue_per_s"] = count / (time.time() - began)
            results[key] = count / (await completed(engine, ids) - began)
            if key == "jobs_per_s":  # CPU per no-op job: relay, jobs consumer, workers
                for role, pids in roles.items():
                    results[f"cpu_ms_per_job_{role}"] = (
                        (cpu_s(pids) - cpu_before[role]) * 1000 / count)
        results["prefetch"] = args.prefetch
        results["ratio_to_raw"] = results["jobs_per_s"] / results["raw_kafka_msgs_per_s"]

        # 2. pickup latency at a paced rate: one job per transaction, as an API call makes it.
        paced: list[int] = []
        pool = asyncio.Semaphore(8)

        async def enqueue_one() -> None:
            async with pool, engine.begin() as conn:
                paced.append(await commands.enqueue(conn, job_type="noop", queue="cache",
                                                    actor=Actor.system()))

        began = time.perf_counter()
        sending = []
        for n in range(int(args.rate * args.paced_seconds)):
            await asyncio.sleep(max(0.0, began + n / args.rate - time.perf_counter()))
            sending.append(asyncio.create_task(enqueue_one()))
        await asyncio.gather(*sending)
        results["paced_rate"] = len(paced) / (time.perf_counter() - began)
        await completed(engine, paced)
        async with engine.connect() as conn:
            rows = (await conn.execute(
                select(job.c.date_created.label("created"),
                       job_attempt.c.started_at.label("granted"),
                       job_run.c.finished_at.label("started"))
                .join(job_run, job_run.c.job_id == job.c.id)
                .join(job_attempt, (job_attempt.c.job_id == job.c.id)
                      & (job_attempt.c.attempt == 1))
                .where(job.c.id.in_(paced)))).all()
        pickups = [(r.started - r.created).total_seconds() * 1000 for r in rows]
        # Where it goes: enqueue -> the jobs consumer grants the claim (relay, worker's claim,
        # relay, consumer), then grant -> handler start (commit, relay, control topic, worker).
        results["to_grant_p50_ms"] = statistics.median(
            (r.granted - r.created).total_seconds() * 1000 for r in rows)
        results["grant_to_start_p50_ms"] = statistics.median(
            (r.started - r.granted).total_seconds() * 1000 for r in rows)
        results["pickup_p50_ms"] = statistics.median(pickups)
        results["pickup_p99_ms"] = percentile(pickups, 0.99)

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
    n, w = int(r["jobs"]), int(r["workers"])
    table = Table(title="jobs beside Celery 5 on Redis (same run, same loads)", caption=(
        f"{n} jobs per throughput load; ours: {w} worker processes holding "
        f"{int(r['prefetch'])} claims each, relay and jobs consumer; Celery: one worker of {w} "
        f"prefork processes, defaults otherwise. Throughput loads: ours enqueued 100 a "
        f"transaction (enqueue_many), Celery by delay() in a loop; the paced load one job a "
        f"transaction (as an API call) and one delay() a job. Paced load sent at: ours "
        f"{r['paced_rate']:,.0f}/s, Celery {r['celery_paced_rate']:,.0f}/s."))
    table.add_column("figure")
    table.add_column("ours", justify="right")
    table.add_column("Celery", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_row("no-op jobs/s, enqueue -> completed", f"{r['jobs_per_s']:,.0f}",
                  f"{r['celery_jobs_per_s']:,.0f}",
                  f"{r['jobs_per_s'] / r['celery_jobs_per_s']:.2f}x", ">= 1.00x")
    table.add_row("  enqueue alone (ours: enqueue_many, 100 a call)", f"{r['enqueue_per_s']:,.0f}",
                  f"{r['celery_enqueue_per_s']:,.0f}",
                  f"{r['enqueue_per_s'] / r['celery_enqueue_per_s']:.2f}x", "")
    table.add_row(f"pickup p50 at {r['rate']:,.0f}/s", f"{r['pickup_p50_ms']:.1f} ms",
                  f"{r['celery_pickup_p50_ms']:.1f} ms",
                  f"{r['pickup_p50_ms'] / r['celery_pickup_p50_ms']:.1f}x", "<= 20 ms")
    table.add_row("  p50 enqueue -> claim granted / granted -> handler",
                  f"{r['to_grant_p50_ms']:.0f} / {r['grant_to_start_p50_ms']:.0f} ms", "", "",
                  "")
    table.add_row(f"pickup p99 at {r['rate']:,.0f}/s", f"{r['pickup_p99_ms']:.1f} ms",
                  f"{r['celery_pickup_p99_ms']:.1f} ms",
                  f"{r['pickup_p99_ms'] / r['celery_pickup_p99_ms']:.1f}x", "")
    table.add_row("jobs/s, 10 progress updates each", f"{r['progress_jobs_per_s']:,.0f}",
                  f"{r['celery_progress_jobs_per_s']:,.0f}",
                  f"{r['progress_jobs_per_s'] / r['celery_progress_jobs_per_s']:.2f}x", "")
    cpu = {role: r.get(f"cpu_ms_per_job_{role}") for role in ("relay", "consumer", "workers")}
    if None not in cpu.values():
        table.add_row("  CPU per no-op job: relay / jobs consumer / workers",
                      " / ".join(f"{v:.1f}" for v in cpu.values() if v is not None) + " ms",
                      "", "", "")
    table.add_row("no-op jobs/s, one job at a time", f"{r['jobs_per_s_one_at_a_time']:,.0f}",
                  "", "", "")
    table.add_row("raw aiokafka produce+consume", f"{r['raw_kafka_msgs_per_s']:,.0f} msg/s",
                  "", f"{r['ratio_to_raw']:.2%}", "")
    table.add_row(f"scheduler drift p50 ({int(r['ticks'])} ticks)",
                  f"{r['drift_p50_ms']:.0f} ms", "", "", "")
    table.add_row("scheduler drift p99", f"{r['drift_p99_ms']:.0f} ms", "", "", "<= 1,000 ms")
    table.add_row("dead worker: SIGKILL -> failed over", f"{r['dead_worker_detect_s']:.1f} s",
                  "", "", f"beat {r['dead_worker_heartbeat_s']:.0f} s, 3 missed")
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--prefetch", type=int, default=64,
                        help="claims each of our workers holds in flight")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=500, help="jobs/s of the paced load")
    parser.add_argument("--paced-seconds", type=float, default=3)
    parser.add_argument("--drift-seconds", type=float, default=15)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(measure(args))
    (RESULTS / "jobs.json").write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
