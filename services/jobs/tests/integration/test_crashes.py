"""Crashes with real OS processes: a worker SIGKILLed mid-job is noticed by its missed
heartbeats and its job retried (never left running); two schedulers, one SIGKILLed mid-tick,
run every tick exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import job, job_attempt, task, task_tick
from jobs.handlers import jobs as commands
from jobs.handlers import tasks
from jobs.scheduler import Scheduler
from misp_contracts.envelope import Actor
from misp_contracts.events.jobs import TaskState, run_topic
from misp_platform.testing import eventually, start_group_at_end

from ..conftest import WorkerFactory


@contextmanager
def process(args: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m jobs <args>` logging to a file; always terminated."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jobs", *args], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, **env})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


async def task_due_at(engine: AsyncEngine, due: datetime, **schedule: Any) -> TaskState:
    """A no-op task whose next run is due at `due` (whatever its schedule would say)."""
    async with engine.begin() as conn:
        state = await tasks.set_task(conn, None, {
            "type": "noop", "scheduled_time": "00:00", **schedule}, Actor.system(),
            datetime.now(UTC))
        await conn.execute(task.update().where(task.c.id == state.id).values(
            next_execution_at=due, state={**state.model_dump(mode="json"),
                                          "next_execution_at": due.isoformat()}))
    return state


def scheduler_env(jobs_db: str) -> dict[str, str]:
    return {"JOBS_DATABASE_URL": jobs_db, "JOBS_SCHEDULER_POLL_S": "0.05",
            "MISP_LOG_FORMAT": "json"}


async def test_a_worker_killed_mid_job_is_noticed_and_its_job_retried_elsewhere(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine, jobs_db: str,
        kafka_bootstrap: str, tmp_path: Path) -> None:
    group = f"test-jobs-proc-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, [run_topic("jobs", "update")])
    with process(["worker", "update"], tmp_path / "worker.log", JOBS_DATABASE_URL=jobs_db,
                 JOBS_WORKER_GROUP=group, JOBS_WORKER_HEARTBEAT_S="0.5",
                 MISP_LOG_FORMAT="json") as proc:
        async def worker_seen() -> Any:
            from jobs.adapters.tables import worker
            async with jobs_engine.connect() as conn:
                return (await conn.execute(select(worker.c.worker_id).where(
                    worker.c.pid == proc.pid))).scalar()

        # No wait for the group's partitions: it was committed at the topic's end before the
        # job is queued, so this process reads the job whenever its partitions come.
        await eventually(worker_seen, 30)
        async with jobs_engine.begin() as conn:
            job_id = await commands.enqueue(conn, job_type="noop", queue="update",
                                            actor=Actor.system(),
                                            data={"steps": 400, "step_s": 0.05,
                                                  "long_attempts": 1})

        async def running() -> Any:
            async with jobs_engine.connect() as conn:
                return (await conn.execute(select(job.c.status).where(
                    job.c.id == job_id))).scalar() == 2

        await eventually(running, 30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    scheduler = Scheduler(jobs_engine, missed_beats=3)

    async def failed_over() -> Any:
        await scheduler.run_once()
        async with jobs_engine.connect() as conn:
            row = (await conn.execute(select(job).where(job.c.id == job_id))).one()
        return row if row.status == 1 and row.retry_at is not None else None

    row = await eventually(failed_over, 30, 0.2)
    # Noticed by its missed heartbeats (how soon: bench/jobs.py has the pipeline's figures).
    assert f"{proc.pid}" in row.message and "heartbeats" in row.message

    await start_worker("update", "jobs")
    clock = [datetime.now(UTC)]
    scheduler.clock = lambda: clock[0]

    async def completed() -> Any:
        clock[0] += timedelta(seconds=2)
        await scheduler.run_once()
        async with jobs_engine.connect() as conn:
            return (await conn.execute(select(job.c.status).where(
                job.c.id == job_id))).scalar() == 4

    await eventually(completed, 45, 0.3)
    async with jobs_engine.connect() as conn:
        attempts = (await conn.execute(select(job_attempt).where(
            job_attempt.c.job_id == job_id).order_by(job_attempt.c.attempt))).all()
    assert [a.outcome for a in attempts] == ["failed", "completed"]
    assert attempts[0].pid == proc.pid and "stopped sending heartbeats" in attempts[0].error


async def test_two_schedulers_tick_exactly_once_and_survive_a_sigkill_mid_tick(
        jobs_engine: AsyncEngine, jobs_db: str, tmp_path: Path) -> None:
    start = datetime.now(UTC) + timedelta(seconds=3)
    state = await task_due_at(jobs_engine, start, interval_s=0.5, overlap="allow",
                              catch_up="run_all", catch_up_max=100)
    env = scheduler_env(jobs_db)
    with process(["scheduler"], tmp_path / "a.log", MISP_FAILPOINTS="scheduler.before_commit=4",
                 **env) as a, process(["scheduler"], tmp_path / "b.log", **env) as b:
        async def a_died() -> Any:
            return a.poll() is not None

        await eventually(a_died, 40, 0.2)
        assert a.returncode == -signal.SIGKILL
        died_at = datetime.now(UTC)

        async def b_ticked_alone() -> Any:  # instead of a pause: b's ticks after a's death
            async with jobs_engine.connect() as conn:
                alone = (await conn.execute(select(func.count()).where(
                    task_tick.c.task_id == state.id, task_tick.c.started_at > died_at,
                    task_tick.c.claimed_by.like(f"%:{b.pid}")))).scalar_one()
                total = (await conn.execute(select(func.count()).where(
                    task_tick.c.task_id == state.id))).scalar_one()
            return alone >= 4 and total >= 10

        await eventually(b_ticked_alone, 40, 0.2)
        assert b.poll() is None
    async with jobs_engine.connect() as conn:
        ticks = (await conn.execute(select(task_tick).where(task_tick.c.task_id == state.id)
                                    .order_by(task_tick.c.due_at))).all()
        jobs = (await conn.execute(select(job.c.id).where(job.c.task_id == state.id))).all()
        next_at = (await conn.execute(select(task.c.next_execution_at).where(
            task.c.id == state.id))).scalar_one()
    slots = round((next_at - start).total_seconds() / 0.5)
    # A tick that comes late covers the slots it missed (catch-up run_all): one job per slot,
    # none lost (the count of slots) and none doubled (unique claims, one job each).
    assert ticks[0].due_at == start and slots >= 10
    assert len(jobs) == slots, (len(jobs), slots)
    assert {t.claimed_by.split(":")[1] for t in ticks} == {str(a.pid), str(b.pid)}
    # How late ticks start (drift) is a figure of bench/jobs.py, not a condition here.
