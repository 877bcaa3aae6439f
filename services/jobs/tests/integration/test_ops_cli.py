"""The ops commands (the book's CakeResque ones) as real processes on a test database:
`stats`, `clear QUEUE`, `cleanup WORKER_ID`, `tail --once`, with a real worker for the counts per
worker and the job that `cleanup` terminates; the destructive ones refuse without `--yes` when
stdin is not a terminal, and change nothing with `--dry-run`.

Each command is a process of its own, forked from one that imported the command line once
(cli_forker.py): a `python -m jobs` start costs seconds of imports, which were most of these
tests' time; `python -m jobs stats` itself still runs once as a fresh interpreter."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import job, worker
from jobs.handlers import jobs as commands
from misp_contracts.envelope import Actor
from misp_platform.testing import eventually
from misp_platform.worker import job_run

from ..conftest import TEST_NOOP, WorkerFactory

PERCENT = re.compile(r"\] +(\d+)% ")  # tail's line: ... [#####     ]  25% message
FORKER = Path(__file__).with_name("cli_forker.py")


class Cli:
    """`python -m jobs ARGS` on a database, each run a process forked by cli_forker.py."""

    def __init__(self) -> None:
        self.forker = subprocess.Popen([sys.executable, str(FORKER)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        self.lock = threading.Lock()

    def _run(self, db: str, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        assert self.forker.stdin is not None and self.forker.stdout is not None
        request = {"argv": list(args), "env": {"JOBS_DATABASE_URL": db,
                                               "MISP_LOG_FORMAT": "json"}}
        with self.lock:
            self.forker.stdin.write(json.dumps(request) + "\n")
            self.forker.stdin.flush()
            answer = json.loads(self.forker.stdout.readline())
        return subprocess.CompletedProcess(["python", "-m", "jobs", *args],
                                           answer["returncode"], answer["stdout"],
                                           answer["stderr"])

    async def __call__(self, db: str, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.wait_for(asyncio.to_thread(self._run, db, args), 60)

    def close(self) -> None:
        assert self.forker.stdin is not None
        self.forker.stdin.close()
        self.forker.wait(30)


@pytest.fixture(scope="module")
def run_cli() -> Iterator[Cli]:
    cli = Cli()
    yield cli
    cli.close()


async def run_process(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m jobs ARGS` as a fresh interpreter."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "jobs", *args], capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "JOBS_DATABASE_URL": db, "MISP_LOG_FORMAT": "json"})


async def test_stats_clear_and_tail_work_on_the_jobs_table(jobs_engine: AsyncEngine,
                                                          jobs_db: str, run_cli: Cli) -> None:
    async with jobs_engine.begin() as conn:
        ids = [await commands.enqueue(conn, job_type="noop", queue=q, actor=Actor.system())
               for q in ("email", "email", "prio")]
    stats = await run_process(jobs_db, "stats")
    assert stats.returncode == 0, stats.stderr
    email_line = next(line for line in stats.stdout.splitlines() if line.startswith("email"))
    assert email_line.split()[1] == "2"  # two waiting

    cleared = await run_cli(jobs_db, "clear", "email", "--yes")
    assert cleared.returncode == 0 and "cancelled 2 waiting job(s) in email" in cleared.stdout
    assert "clearing email" in cleared.stderr and "2/2" in cleared.stderr  # the progress bar
    async with jobs_engine.connect() as conn:
        statuses: dict[int, int] = dict((await conn.execute(select(job.c.id, job.c.status).where(
            job.c.id.in_(ids)))).all())
    assert [statuses[i] for i in ids] == [3, 3, 1]

    tail = await run_cli(jobs_db, "tail", "--once")
    assert tail.returncode == 0
    assert sum(f"job {i}" in tail.stdout for i in ids) == 3 and "Cancelled" in tail.stdout

    bad = await run_cli(jobs_db, "clear", "nowhere")
    assert bad.returncode == 2
    nobody = await run_cli(jobs_db, "cleanup", "no-such-worker", "--yes")
    assert nobody.returncode == 1 and "no job in hand" in nobody.stdout


async def test_clear_refuses_without_yes_off_a_terminal_and_a_dry_run_changes_nothing(
        jobs_engine: AsyncEngine, jobs_db: str, run_cli: Cli) -> None:
    async with jobs_engine.begin() as conn:
        ids = [await commands.enqueue(conn, job_type="noop", queue="cache", actor=Actor.system())
               for _ in range(3)]

    async def statuses() -> list[int]:
        async with jobs_engine.connect() as conn:
            found: dict[int, int] = dict((await conn.execute(select(job.c.id, job.c.status).where(
                job.c.id.in_(ids)))).all())
        return [found[i] for i in ids]

    refused = await run_cli(jobs_db, "clear", "cache")
    assert refused.returncode == 1
    assert "refusing without confirmation" in refused.stderr and "--yes" in refused.stderr
    assert await statuses() == [1, 1, 1]
    dry = await run_cli(jobs_db, "clear", "cache", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "would cancel 3 waiting job(s) in cache (dry run)"
    assert await statuses() == [1, 1, 1]
    done = await run_cli(jobs_db, "clear", "cache", "-y")
    assert done.returncode == 0 and "cancelled 3 waiting job(s) in cache" in done.stdout
    assert await statuses() == [3, 3, 3]


async def _worker_counts(engine: AsyncEngine, worker_id: str) -> tuple[int, int] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(worker.c.succeeded, worker.c.failed).where(
            worker.c.worker_id == worker_id))).first()
    return None if row is None else (row.succeeded, row.failed)


async def _job(engine: AsyncEngine, job_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(job).where(job.c.id == job_id))).first()


def _stats_line(stdout: str, worker_id: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.startswith(worker_id))


async def test_stats_count_each_workers_outcomes_and_cleanup_terminates_its_job_in_hand(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        jobs_db: str, run_cli: Cli) -> None:
    runner = await start_worker("default")

    async def enqueue(**data: Any) -> int:
        async with jobs_engine.begin() as conn:
            return await commands.enqueue(conn, job_type=TEST_NOOP.name, queue="default",
                                          actor=Actor.system(), data=data)

    # One job succeeds, one fails its first attempt (its retry waits for the scheduler's
    # watchdog, which this test does not run): the worker's row counts one of each.
    await enqueue()
    await enqueue(fail_times=1)

    async def counted(expected: tuple[int, int]) -> bool:
        return await _worker_counts(jobs_engine, runner.worker_id) == expected

    assert await eventually(lambda: counted((1, 1)), 30)
    stats = await run_cli(jobs_db, "stats")
    assert stats.returncode == 0, stats.stderr
    assert _stats_line(stats.stdout, runner.worker_id)[1:4] == ["default", "1", "1"]

    # `cleanup <worker>` terminates the job in its hand: cancelled, its effect rolled back, the
    # worker free for the next job.
    long_job = await enqueue(steps=600, step_s=0.05)

    async def running() -> bool:
        row = await _job(jobs_engine, long_job)
        return row is not None and row.status == 2

    assert await eventually(running, 30)
    dry = await run_cli(jobs_db, "cleanup", runner.worker_id, "--dry-run")
    assert dry.returncode == 0 and dry.stdout.strip() == f"would cancel job {long_job} (dry run)"
    refused = await run_cli(jobs_db, "cleanup", runner.worker_id)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert (await _job(jobs_engine, long_job)).status == 2  # still running
    cleaned = await run_cli(jobs_db, "cleanup", runner.worker_id, "--yes")
    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stdout.strip() == f"cancelled job {long_job}"

    async def cancelled() -> Any:
        row = await _job(jobs_engine, long_job)
        return row if row is not None and row.status == 3 else None

    row = await eventually(cancelled, 30)
    assert row.cancelled and row.message == "Cancelled: by cli"
    async with jobs_engine.connect() as conn:
        runs = (await conn.execute(select(func.count()).select_from(job_run).where(
            job_run.c.job_id == long_job))).scalar_one()
    assert runs == 0
    # a terminated job counts as failed, as in Resque; the worker takes the next job
    assert await eventually(lambda: counted((1, 2)), 30)
    await enqueue()
    assert await eventually(lambda: counted((2, 2)), 30)
    again = await run_cli(jobs_db, "cleanup", runner.worker_id, "--yes")
    assert again.returncode == 1 and "no job in hand" in again.stdout


async def test_tail_follows_a_job_through_its_progress_to_completed(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        jobs_db: str) -> None:
    await start_worker("default")
    tail = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobs", "tail", stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "JOBS_DATABASE_URL": jobs_db, "MISP_LOG_FORMAT": "json"})
    try:
        assert tail.stdout is not None and tail.stderr is not None
        started = await asyncio.wait_for(tail.stderr.readline(), 30)
        assert started.startswith(b"following the jobs changed since")
        async with jobs_engine.begin() as conn:
            job_id = await commands.enqueue(conn, job_type=TEST_NOOP.name, queue="default",
                                            actor=Actor.system(),
                                            data={"steps": 4, "step_s": 0.6})
        lines: list[str] = []
        while not any("Completed" in line for line in lines):
            line = (await asyncio.wait_for(tail.stdout.readline(), 30)).decode()
            if f"job {job_id} " in line:
                lines.append(line)
    finally:
        tail.terminate()
        await tail.wait()
    statuses = [line.split()[5] for line in lines]
    assert statuses[-1] == "Completed" and "Running" in statuses
    progress = [int(m.group(1)) for line in lines if (m := PERCENT.search(line))]
    assert len(progress) == len(lines)
    assert progress == sorted(progress) and progress[-1] == 100
    assert len({p for p in progress if 0 < p < 100}) >= 2  # the steps in between were followed
