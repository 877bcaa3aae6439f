"""A real worker process SIGKILLed at each of its failpoints, and a scheduler killed right after
claiming a tick: the job's effect, its run mark and its finish report happen once, in the run
that commits; the tick runs once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import job, job_attempt, task, task_tick
from jobs.handlers import jobs as commands
from jobs.scheduler import Scheduler
from misp_contracts.envelope import Actor, Envelope, from_kafka
from misp_contracts.events.jobs import (
    WORKER_CONTROL_TOPIC,
    WORKER_TOPIC,
    JobRunFinished,
    JobRunRefused,
    run_topic,
)
from misp_platform.testing import (
    committed_offsets,
    eventually,
    killed_at_failpoint,
    load_script,
    read_since,
    start_group_at,
    start_group_at_end,
    topic_ends,
)
from misp_platform.worker import job_run

from ..conftest import TEST_OWNER
from .test_crashes import process, scheduler_env, task_due_at

SCRIPT = Path(__file__).with_name("worker_process.py")
WORKER = load_script(SCRIPT, "jobs_worker_process")


def worker(db: str, bootstrap: str, group: str, log: Path,
           failpoint: str, prefetch: int = 1) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MISP_LOG_FORMAT": "json", "MISP_FAILPOINTS": failpoint}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(SCRIPT), db, bootstrap, group,
                                 str(prefetch)], env=env, stdout=out, stderr=subprocess.STDOUT)


async def restart_group(bootstrap: str, group: str) -> str:
    """A new group at the positions `group` committed: the restart reads what the dead process
    left unacknowledged, without waiting for the group to drop the dead member (a session
    timeout, about 10 s)."""
    restarted = f"{group}-restarted"
    await start_group_at(bootstrap, restarted, await committed_offsets(bootstrap, group))
    return restarted


async def messages_about(bootstrap: str, since: dict[Any, int], job_id: int) -> list[Envelope]:
    """What a shared topic got from `since` to its current end about `job_id`."""
    found = [from_kafka(r.headers, r.value) for r in await read_since(bootstrap, since)]
    return [e for e in found if e.data.get("job_id") == job_id]


async def count(engine: AsyncEngine, table: Any, job_id: int) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table).where(
            table.c.job_id == job_id))).scalar_one())


async def effects(engine: AsyncEngine, job_id: int) -> list[int]:
    async with engine.connect() as conn:
        return [r.attempt for r in await conn.execute(text(
            "SELECT attempt FROM job_effect WHERE job_id = :j"), {"j": job_id})]


async def job_row(engine: AsyncEngine, job_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(job).where(job.c.id == job_id))).one()


async def retry_elsewhere(engine: AsyncEngine, job_id: int) -> None:
    """The watchdog, with its clock moved on: the dead worker's attempt fails and the retry is
    dispatched (the heartbeats it waits for are those of a process already dead)."""
    clock = [datetime.now(UTC) + timedelta(seconds=60)]
    scheduler = Scheduler(engine, missed_beats=3, clock=lambda: clock[0])

    async def redispatched() -> bool:
        clock[0] += timedelta(seconds=30)
        await scheduler.run_once()
        row = await job_row(engine, job_id)
        return bool(row.attempt == 2 and row.status == 1 and row.retry_at is None)

    await eventually(redispatched, 20, 0.05)


# A worker holding several jobs runs them in one transaction, a savepoint each (prefetch 8).
@pytest.mark.parametrize(("failpoint", "prefetch"), [
    ("worker.after_start", 1), ("worker.before_commit", 1), ("worker.before_commit", 8)])
async def test_a_worker_killed_at_a_failpoint_runs_its_job_once_after_a_restart(
        pipeline: None, jobs_engine: AsyncEngine, jobs_db: str, kafka_bootstrap: str,
        tmp_path: Path, failpoint: str, prefetch: int) -> None:
    async with jobs_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE job_effect (job_id bigint, attempt int)"))
    group = f"test-jobs-crash-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, [run_topic(TEST_OWNER, "default")])
    reports_from = await topic_ends(kafka_bootstrap, WORKER_TOPIC)
    answers_from = await topic_ends(kafka_bootstrap, WORKER_CONTROL_TOPIC)
    async with jobs_engine.begin() as conn:
        job_id = await commands.enqueue(conn, job_type="test_noop", queue="default",
                                        actor=Actor.system())
    log = tmp_path / "worker.log"

    crashed = worker(jobs_db, kafka_bootstrap, group, log, failpoint, prefetch)
    await killed_at_failpoint(crashed, log)

    async def granted_to_the_dead() -> bool:  # its claim (committed before the kill) answered
        row = await job_row(jobs_engine, job_id)
        return bool(row.status == 2 and str(crashed.pid) in (row.worker_id or ""))

    await eventually(granted_to_the_dead, 30, 0.05)
    # At the crash: no effect, no run mark, no finish report (all in the uncommitted run).
    assert await effects(jobs_engine, job_id) == []
    assert await count(jobs_engine, job_run, job_id) == 0
    await retry_elsewhere(jobs_engine, job_id)

    # The restart, in-process (the same worker, without the failpoint).
    restarted = WORKER.worker(jobs_db, kafka_bootstrap,
                              await restart_group(kafka_bootstrap, group), jobs_engine)
    stop = asyncio.Event()
    running = asyncio.create_task(restarted.run(stop))
    try:
        async def completed() -> bool:
            return bool((await job_row(jobs_engine, job_id)).status == 4)

        await eventually(completed, 45, 0.05)
    finally:
        stop.set()
        await running

    assert await effects(jobs_engine, job_id) == [2]
    async with jobs_engine.connect() as conn:
        [mark] = (await conn.execute(job_run.select().where(job_run.c.job_id == job_id))).all()
        attempts = (await conn.execute(select(job_attempt.c.outcome, job_attempt.c.pid).where(
            job_attempt.c.job_id == job_id).order_by(job_attempt.c.attempt))).all()
    assert (mark.attempt, mark.outcome) == (2, "succeeded")
    assert [tuple(a) for a in attempts] == [("failed", crashed.pid), ("completed", os.getpid())]
    reports = [e for e in await messages_about(kafka_bootstrap, reports_from, job_id)
               if e.type == JobRunFinished.type]
    assert [(r.data["attempt"], r.data["outcome"]) for r in reports] == [(2, "succeeded")]
    # An answer is on the control topic twice (sent after its commit, then by the relay): the
    # same message, one envelope id.
    refusals = [(e.data["attempt"], e.data["worker_id"]) for e in {
        e.id: e for e in await messages_about(kafka_bootstrap, answers_from, job_id)
        if e.type == JobRunRefused.type}.values()]
    # After a kill before its offset was committed, the restart claimed the dispatch of the
    # dead attempt again, and was refused; after a kill mid-run, it never saw that dispatch.
    assert refusals == ([(1, restarted.worker_id)] if failpoint == "worker.after_start" else [])


async def test_a_scheduler_killed_after_claiming_a_tick_leaves_nothing_and_the_tick_runs_once(
        jobs_engine: AsyncEngine, jobs_db: str, tmp_path: Path) -> None:
    due = datetime.now(UTC) + timedelta(seconds=1)
    state = await task_due_at(jobs_engine, due, interval_s=3600)
    with process(["scheduler"], tmp_path / "a.log", MISP_FAILPOINTS="scheduler.after_claim",
                 **scheduler_env(jobs_db)) as crashed:
        await killed_at_failpoint(crashed, tmp_path / "a.log")

    async def state_of_the_task() -> tuple[list[Any], int, datetime]:
        async with jobs_engine.connect() as conn:
            ticks = (await conn.execute(select(task_tick).where(
                task_tick.c.task_id == state.id))).all()
            queued = (await conn.execute(select(func.count()).where(
                job.c.task_id == state.id))).scalar_one()
            next_at = (await conn.execute(select(task.c.next_execution_at).where(
                task.c.id == state.id))).scalar_one()
        return list(ticks), queued, next_at

    # At the crash: the claim rolled back with the rest of the tick.
    assert await state_of_the_task() == ([], 0, due)

    restarted = Scheduler(jobs_engine)  # in-process, without the failpoint

    async def ticked() -> Any:
        await restarted.run_once()
        ticks, queued, next_at = await state_of_the_task()
        return (ticks, queued, next_at) if ticks else None

    ticks, queued, next_at = await eventually(ticked, 30, 0.05)
    assert [(t.due_at, t.claimed_by) for t in ticks] == [(due, restarted.scheduler_id)]
    assert queued == 1 and next_at == due + timedelta(seconds=3600)
