"""Benchmark: background jobs (enqueue -> outbox -> Kafka -> worker -> reports -> job table).

Prints, beside Celery 5 on Redis measured in the same run on the same loads (issue 19: a private
`redis-server`, a Celery worker of `--concurrency` as many prefork processes as our workers,
Celery's defaults otherwise; bench/celery_jobs.py), and a raw aiokafka produce-then-consume:
  1. no-op jobs/s from the first enqueue to the last job completed (relay, jobs consumer and two
     workers as their own processes, as they are deployed), enqueued 100 a transaction
     (`enqueue_many`), workers holding `--prefetch` claims in flight (and, for the record, one
     job at a time), and the enqueue alone;
  2. pickup latency (enqueue -> handler start) p50/p99 with jobs enqueued at `--rate`/s (and at
     each of `--hop-rates` before it), one per transaction, by `--enqueuers` processes, for
     `--paced-seconds`, beside the rate they offered (target p50 <= 20 ms at 500/s); and the
     p50/p99 of each hop between, from the Kafka records' timestamps and the rows' (`HOPS`),
     and how far the grant's relayed outbox copy came behind the one sent after the commit;
  3. jobs/s of jobs that report 10 progress updates each;
  4. scheduler drift (due time -> tick) p50/p99 over a run of frequent ticks (target p99 <= 1 s);
  5. the time from SIGKILLing a worker mid-job to its job being failed over (requeued).

    python bench/jobs.py [--jobs 600] [--rate 500] [--drift-seconds 15]
    python bench/jobs.py --parts paced --hop-rates 50,150,300 [--no-baseline]  # pickup alone
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from math import nan
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
from misp_contracts.events.jobs import (  # noqa: E402
    JOBS_COMMANDS_TOPIC,
    WORKER_CONTROL_TOPIC,
    WORKER_TOPIC,
    JobRunGranted,
    JobRunStarted,
    RunJob,
    run_topic,
)
from misp_contracts.topics import Topic, owned_by  # noqa: E402
from misp_platform.auth.principals import PRINCIPAL_TOPICS  # noqa: E402
from misp_platform.kafka import client_options, create_producer, ensure_topics  # noqa: E402
from misp_platform.migrations import upgrade  # noqa: E402
from misp_platform.testing import (  # noqa: E402
    ChildProcesses,
    load_script,
    read_since,
    start_group_at_end,
    topic_ends,
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


def celery_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Celery on a private Redis (no persistence), on the loads ours gets: the no-op jobs/s and
    the jobs/s of jobs with 10 progress updates (part `throughput`), the pickup p50/p99 at each
    paced rate (part `paced`)."""
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
        out: dict[str, Any] = {}
        for task, key in ((celery_jobs.noop, "celery_jobs_per_s"),
                          (celery_jobs.progress, "celery_progress_jobs_per_s")):
            if "throughput" not in args.parts:
                break
            began = time.time()
            results = [task.delay() for _ in range(args.jobs)]
            if key == "celery_jobs_per_s":
                out["celery_enqueue_per_s"] = args.jobs / (time.time() - began)
            for r in results:
                r.get(timeout=300)
            done = max(_epoch(r.date_done) for r in results)
            out[key] = args.jobs / (done - began)
        for rate in paced_rates(args) if "paced" in args.parts else []:
            sent: list[tuple[float, Any]] = []
            began = time.time()
            for n in range(int(rate * args.paced_seconds)):
                delay = began + n / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                sent.append((time.time(), celery_jobs.noop.delay()))
            pickups = [(r.get(timeout=300) - at) * 1000 for at, r in sent]
            out.setdefault("celery_paced", {})[str(rate)] = {
                "offered": len(sent) / (time.time() - began),
                "pickup_p50_ms": statistics.median(pickups),
                "pickup_p99_ms": percentile(pickups, 0.99)}
        return out
    finally:
        app.close()
        for child in (worker, redis):
            child.terminate()
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()


def paced_rates(args: argparse.Namespace) -> list[float]:
    """The paced loads' rates: `--hop-rates`, then `--rate` (the headline figure's)."""
    return list(dict.fromkeys([*args.hop_rates, args.rate]))


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


# ---- the paced load: enqueuers in processes of their own, and the hops of each job ------------

# A paced enqueuer's transactions in flight at once (each one job, as an API call makes it).
ENQUEUER_IN_FLIGHT = 16


def _paced_enqueuer(url: str, rate: float, first: int, step: int, count: int,
                    pipe: Any) -> None:
    """One enqueuer process: jobs `first`, `first + step`, ... of a load paced at `rate`/s in
    all, each enqueued in a transaction of its own; sends back (job id, commit time) of each."""

    async def main() -> list[tuple[int, float]]:
        engine = create_async_engine(url, pool_size=ENQUEUER_IN_FLIGHT, max_overflow=0)
        async with engine.connect() as conn:  # connected and warm before the start
            await commands.enqueue(conn, job_type="noop", queue="cache", actor=Actor.system())
            await conn.rollback()
        pipe.send("ready")
        began: float = pipe.recv()
        done: list[tuple[int, float]] = []
        room = asyncio.Semaphore(ENQUEUER_IN_FLIGHT)

        async def one() -> None:
            try:
                async with engine.begin() as conn:
                    job_id = await commands.enqueue(conn, job_type="noop", queue="cache",
                                                    actor=Actor.system())
                done.append((job_id, time.time()))
            finally:
                room.release()

        sending = []
        for n in range(first, count, step):
            await asyncio.sleep(max(0.0, began + n / rate - time.time()))
            await room.acquire()
            sending.append(asyncio.create_task(one()))
        await asyncio.gather(*sending)
        await engine.dispose()
        return done

    pipe.send(asyncio.run(main()))


def paced_load(url: str, rate: float, seconds: float, enqueuers: int
               ) -> tuple[list[tuple[int, float]], float]:
    """`rate` jobs/s for `seconds` from `enqueuers` processes; (job id, commit time) of each
    job, and the rate offered (jobs committed / time from the start to the last commit)."""
    context = multiprocessing.get_context("spawn")
    count = int(rate * seconds)
    pipes, children = [], []
    for k in range(enqueuers):
        ours, theirs = context.Pipe()
        child = context.Process(target=_paced_enqueuer,
                                args=(url, rate, k, enqueuers, count, theirs), daemon=True)
        child.start()
        pipes.append(ours)
        children.append(child)
    try:
        for pipe in pipes:
            if not pipe.poll(120) or pipe.recv() != "ready":
                raise RuntimeError("a paced enqueuer did not start")
        began = time.time() + 0.2
        for pipe in pipes:
            pipe.send(began)
        sent: list[tuple[int, float]] = []
        for pipe in pipes:
            if not pipe.poll(seconds + 300):
                raise RuntimeError("a paced enqueuer did not finish")
            sent += pipe.recv()
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
    return sent, len(sent) / (max(at for _, at in sent) - began)


# The hops of a job from its enqueue to its handler's start: (name, from mark, to mark).
HOPS = (
    ("enqueue -> RunJob in Kafka (relay)", "committed", "dispatched"),
    ("RunJob in Kafka -> worker claims (fetch)", "dispatched", "claimed"),
    ("claim -> claim in Kafka (worker's producer)", "claimed", "claim_published"),
    ("claim in Kafka -> jobs consumer grants", "claim_published", "granted"),
    ("grant -> grant in Kafka (sent after the commit)", "granted", "grant_published"),
    ("grant in Kafka -> handler starts (worker)", "grant_published", "started"),
)
WATCHED_TOPICS = (run_topic("jobs", "cache"), WORKER_TOPIC, WORKER_CONTROL_TOPIC)


async def watched_ends(bootstrap: str) -> dict[Any, int]:
    ends: dict[Any, int] = {}
    for topic in WATCHED_TOPICS:
        ends.update(await topic_ends(bootstrap, topic))
    return ends


async def hop_marks(engine: Any, bootstrap: str, since: dict[Any, int],
                    sent: list[tuple[int, float]]) -> dict[int, dict[str, float]]:
    """When each job of `sent` passed each mark (epoch seconds): its enqueue (the job row's
    `date_created`, taken in the enqueue's transaction: on a loaded machine the enqueuer may
    learn of its commit after the relay has published it), its RunJob, claim and grant as
    Kafka stamped them (the sender's clock as it built the record: the relay's, the
    worker's or the jobs consumer's), the claim as the worker made
    it (its envelope's time), the grant as the jobs consumer decided it
    (`job_attempt.started_at`) and the handler's start (`job_run`)."""
    marks: dict[int, dict[str, float]] = {job_id: {} for job_id, _ in sent}
    for record in await read_since(bootstrap, since):
        headers = dict(record.headers)
        kind = headers.get("ce_type", b"").decode()
        if kind not in (RunJob.type, JobRunStarted.type, JobRunGranted.type):
            continue
        data = json.loads(record.value)
        job_marks = marks.get(int(data["job_id"]))
        if job_marks is None or data.get("attempt", 1) != 1:
            continue
        stamped = record.timestamp / 1000
        if kind == RunJob.type:
            job_marks["dispatched"] = stamped
        elif kind == JobRunStarted.type:
            job_marks["claimed"] = _epoch(headers["ce_time"].decode())
            job_marks["claim_published"] = stamped
        elif "grant_published" not in job_marks:  # the first of its two copies: sent after
            job_marks["grant_published"] = stamped  # the commit (then by the relay)
        else:
            job_marks["grant_relayed"] = stamped
    async with engine.connect() as conn:
        for row in await conn.execute(
                select(job.c.id, job.c.date_created, job_attempt.c.started_at,
                       job_run.c.finished_at)
                .join(job_attempt, (job_attempt.c.job_id == job.c.id)
                      & (job_attempt.c.attempt == 1))
                .join(job_run, job_run.c.job_id == job.c.id)
                .where(job.c.id.in_(list(marks)))):
            marks[row.id].update(committed=row.date_created.timestamp(),
                                 granted=row.started_at.timestamp(),
                                 started=row.finished_at.timestamp())
    return marks


def hop_figures(marks: dict[int, dict[str, float]]) -> dict[str, float]:
    """p50 and p99 of each hop (ms) over the jobs with every mark, and of the whole pickup."""
    every = [m for m in marks.values() if all(k in m for _, a, b in HOPS for k in (a, b))]
    out: dict[str, float] = {"hop_jobs": len(every)}
    for _, a, b in (*HOPS, ("", "committed", "granted"), ("", "granted", "started"),
                    ("", "committed", "started")):
        spans = [(m[b] - m[a]) * 1000 for m in every]
        if spans:
            out[f"{a}_to_{b}_p50_ms"] = statistics.median(spans)
            out[f"{a}_to_{b}_p99_ms"] = percentile(spans, 0.99)
    # What the grant sent after the commit saves: how far behind it its relayed copy came.
    behind = [(m["grant_relayed"] - m["grant_published"]) * 1000 for m in marks.values()
              if "grant_relayed" in m and "grant_published" in m]
    if behind:
        out["grant_relayed_behind_p50_ms"] = statistics.median(behind)
        out["grant_relayed_behind_p99_ms"] = percentile(behind, 0.99)
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
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
    results: dict[str, Any] = {"jobs": args.jobs, "workers": args.workers, "rate": args.rate,
                               "prefetch": args.prefetch, "parts": args.parts}
    tag = uuid.uuid4().hex[:8]
    env = {"JOBS_DATABASE_URL": url, "JOBS_CONSUMER_GROUP": f"bench-jobs-{tag}",
           "JOBS_WORKER_GROUP": f"bench-jobs-worker-{tag}", "JOBS_WORKER_HEARTBEAT_S": "1"}
    try:
        async with engine.begin() as conn:  # ids far from the running stack's
            await conn.execute(text("ALTER SEQUENCE job_id_seq RESTART WITH 5000000000000"))
        if "throughput" in args.parts:
            results["raw_kafka_msgs_per_s"] = await raw_kafka(bootstrap, args.jobs)
        # The baseline first, while none of our processes runs.
        if {"throughput", "paced"} & set(args.parts) and args.baseline:
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
        results["pids"] = roles
        # Every worker is up (its heartbeat came through the relay and the consumer) and each
        # queue ran a few jobs: the loads measure a running system, not its start.
        await workers_seen(engine, 2 * args.workers)
        for queue in ("cache", "prio"):
            async with engine.begin() as conn:
                warm = [await commands.enqueue(conn, job_type="noop", queue=queue,
                                               actor=Actor.system()) for _ in range(20)]
            await completed(engine, warm)
        await asyncio.sleep(2)  # the groups settle
        if "throughput" in args.parts:
            results.update(await throughput(args, engine, roles))
            results["ratio_to_raw"] = results["jobs_per_s"] / results["raw_kafka_msgs_per_s"]
        if "paced" in args.parts:
            for rate in paced_rates(args):
                figures = await paced(args, engine, url, bootstrap, rate)
                results.setdefault("paced", {})[str(rate)] = figures
                if rate == args.rate:  # the headline figures, by their names of before
                    results.update(paced_rate=figures["offered"],
                                   pickup_p50_ms=figures["pickup_p50_ms"],
                                   pickup_p99_ms=figures["pickup_p99_ms"],
                                   to_grant_p50_ms=figures["committed_to_granted_p50_ms"],
                                   grant_to_start_p50_ms=figures["granted_to_started_p50_ms"])
        if "scheduler" in args.parts:
            results.update(await scheduler_and_failover(args, engine, env))
    finally:
        CHILDREN.stop_all()  # no process of ours outlives the benchmark
        await engine.dispose()
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()
    return results


async def throughput(args: argparse.Namespace, engine: Any,
                     roles: dict[str, list[int]]) -> dict[str, float]:
    """No-op jobs from the first enqueue to the last completed, with workers that hold
    `--prefetch` claims in flight, and with workers taking one job at a time; the same with 10
    progress updates a job; the CPU a no-op job costs each role."""
    results: dict[str, float] = {}
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
    return results


async def paced(args: argparse.Namespace, engine: Any, url: str, bootstrap: str,
                rate: float) -> dict[str, float]:
    """Pickup latency (enqueue -> handler start) p50/p99 of no-op jobs enqueued at `rate`/s,
    one per transaction as an API call makes them, by `--enqueuers` processes; the rate they
    offered, and the p50/p99 of each hop between (`HOPS`)."""
    since = await watched_ends(bootstrap)
    sent, offered = await asyncio.to_thread(paced_load, url, rate, args.paced_seconds,
                                            args.enqueuers)
    await completed(engine, [job_id for job_id, _ in sent])
    marks = await hop_marks(engine, bootstrap, since, sent)
    return {"asked": rate, "offered": offered, **hop_figures(marks),
            "pickup_p50_ms": statistics.median(
                (m["started"] - m["committed"]) * 1000 for m in marks.values()),
            "pickup_p99_ms": percentile([(m["started"] - m["committed"]) * 1000
                                         for m in marks.values()], 0.99)}


async def scheduler_and_failover(args: argparse.Namespace, engine: Any,
                                 env: dict[str, str]) -> dict[str, float]:
    """A scheduler ticking a 1 s task while a worker is killed mid-job: the drift of its ticks
    and the time from the SIGKILL to the job failed over."""
    results: dict[str, float] = {}
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
    return results


def report(r: dict[str, Any]) -> None:
    n, w = int(r["jobs"]), int(r["workers"])
    celery_paced = r.get("celery_paced", {})
    offered = ", ".join(f"asked {float(k):,.0f}/s: ours {v['offered']:,.0f}/s, Celery "
                        f"{celery_paced.get(k, {}).get('offered', 0):,.0f}/s"
                        for k, v in r.get("paced", {}).items())
    table = Table(title="jobs beside Celery 5 on Redis (same run, same loads)", caption=(
        f"{n} jobs per throughput load; ours: {w} worker processes holding "
        f"{int(r['prefetch'])} claims each, relay and jobs consumer; Celery: one worker of {w} "
        f"prefork processes, defaults otherwise. Throughput loads: ours enqueued 100 a "
        f"transaction (enqueue_many), Celery by delay() in a loop; the paced loads one job a "
        f"transaction (as an API call) from {r.get('enqueuers', 0)} processes, and one delay() "
        f"a job. Paced loads offered: {offered or 'not run'}."))
    table.add_column("figure")
    table.add_column("ours", justify="right")
    table.add_column("Celery", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    if "jobs_per_s" in r:
        table.add_row("no-op jobs/s, enqueue -> completed", f"{r['jobs_per_s']:,.0f}",
                      f"{r.get('celery_jobs_per_s', nan):,.0f}",
                      f"{r['jobs_per_s'] / r.get('celery_jobs_per_s', nan):.2f}x", ">= 1.00x")
        table.add_row("  enqueue alone (ours: enqueue_many, 100 a call)",
                      f"{r['enqueue_per_s']:,.0f}", f"{r.get('celery_enqueue_per_s', nan):,.0f}",
                      f"{r['enqueue_per_s'] / r.get('celery_enqueue_per_s', nan):.2f}x", "")
    for key, figures in r.get("paced", {}).items():
        celery = celery_paced.get(key, {})
        rate = f"{float(key):,.0f}/s asked, {figures['offered']:,.0f}/s offered"
        for q in ("p50", "p99"):
            ours, theirs = figures[f"pickup_{q}_ms"], celery.get(f"pickup_{q}_ms")
            table.add_row(f"pickup {q} at {rate}", f"{ours:.1f} ms",
                          "" if theirs is None else f"{theirs:.1f} ms",
                          "" if not theirs else f"{ours / theirs:.1f}x",
                          "<= 20 ms" if q == "p50" and float(key) == r["rate"] else "")
        for label, a, b in HOPS:
            table.add_row(f"  p50 / p99 {label}", f"{figures[f'{a}_to_{b}_p50_ms']:.0f} / "
                          f"{figures[f'{a}_to_{b}_p99_ms']:.0f} ms", "", "", "")
        if "grant_relayed_behind_p50_ms" in figures:
            table.add_row("  p50 / p99 the grant's outbox copy (relay) behind it",
                          f"{figures['grant_relayed_behind_p50_ms']:.0f} / "
                          f"{figures['grant_relayed_behind_p99_ms']:.0f} ms", "", "", "")
    if "progress_jobs_per_s" in r:
        theirs = r.get("celery_progress_jobs_per_s", nan)
        table.add_row("jobs/s, 10 progress updates each", f"{r['progress_jobs_per_s']:,.0f}",
                      f"{theirs:,.0f}", f"{r['progress_jobs_per_s'] / theirs:.2f}x", "")
        cpu = {role: r.get(f"cpu_ms_per_job_{role}") for role in ("relay", "consumer", "workers")}
        table.add_row("  CPU per no-op job: relay / jobs consumer / workers",
                      " / ".join(f"{v:.1f}" for v in cpu.values() if v is not None) + " ms",
                      "", "", "")
        table.add_row("no-op jobs/s, one job at a time", f"{r['jobs_per_s_one_at_a_time']:,.0f}",
                      "", "", "")
        table.add_row("raw aiokafka produce+consume", f"{r['raw_kafka_msgs_per_s']:,.0f} msg/s",
                      "", f"{r['ratio_to_raw']:.2%}", "")
    if "drift_p50_ms" in r:
        table.add_row(f"scheduler drift p50 ({int(r['ticks'])} ticks)",
                      f"{r['drift_p50_ms']:.0f} ms", "", "", "")
        table.add_row("scheduler drift p99", f"{r['drift_p99_ms']:.0f} ms", "", "",
                      "<= 1,000 ms")
        table.add_row("dead worker: SIGKILL -> failed over", f"{r['dead_worker_detect_s']:.1f} s",
                      "", "", f"beat {r['dead_worker_heartbeat_s']:.0f} s, 3 missed")
    Console().print(table)


PARTS = ("throughput", "paced", "scheduler")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--prefetch", type=int, default=64,
                        help="claims each of our workers holds in flight")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=500,
                        help="jobs/s of the paced load of the headline pickup figures")
    parser.add_argument("--hop-rates", type=lambda v: [float(x) for x in v.split(",") if x],
                        default=[150.0],
                        help="more paced loads before it (comma-separated jobs/s; default 150, "
                             "a rate the enqueuers can offer on two cores)")
    parser.add_argument("--enqueuers", type=int, default=4,
                        help="processes enqueuing the paced load, each one job a transaction")
    parser.add_argument("--paced-seconds", type=float, default=3)
    parser.add_argument("--drift-seconds", type=float, default=15)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="measure Celery too (--no-baseline: ours alone, while iterating)")
    parser.add_argument("--parts", type=lambda v: [p for p in v.split(",") if p],
                        default=list(PARTS),
                        help=f"comma-separated, of {','.join(PARTS)} (default: all)")
    args = parser.parse_args()
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    RESULTS.mkdir(exist_ok=True)
    results = {**asyncio.run(measure(args)), "enqueuers": args.enqueuers}
    name = "jobs.json"
    if set(args.parts) != set(PARTS):  # a partial run leaves the full run's figures alone
        name = "jobs-" + "-".join(p for p in PARTS if p in args.parts) + ".json"
    (RESULTS / name).write_text(json.dumps(results, indent=2))
    report(results)


if __name__ == "__main__":
    main()
