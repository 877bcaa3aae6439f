"""Workers of one queue joining and leaving while jobs flow: the run topic's partition moves
between them mid-claim (a rebalance), and still every job runs once and completes, and no
worker stops on it (a claim's offset commit refused by the rebalance only means the job is
delivered again, and claimed again)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import job
from jobs.handlers.noop import run_noop
from misp_platform.testing import eventually
from misp_platform.worker import WorkerRunner, job_run

from ..conftest import TEST_OWNER, WorkerFactory
from .test_job_flow import enqueue


async def _completed(engine: AsyncEngine, ids: list[int]) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(job).where(
            job.c.id.in_(ids), job.c.status == 4))).scalar_one())


async def test_workers_joining_and_leaving_mid_queue_run_every_job_once(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each fetch's claims wait 200 ms, acknowledged, before their offsets' commit: the
    # hand-overs land in that gap.
    monkeypatch.setenv("MISP_FAILPOINTS", "worker.after_start=delay:200")
    await start_worker.position_now("default")
    group = f"{start_worker.group}-{TEST_OWNER}-default"
    members: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def join() -> None:
        runner = WorkerRunner(service=TEST_OWNER, queue="default", engine=jobs_engine,
                              bootstrap_servers=kafka_bootstrap,
                              handlers={"test_noop": run_noop}, group=group, heartbeat_s=0.5,
                              prefetch=4)
        stop = asyncio.Event()
        members.append((stop, asyncio.create_task(runner.run(stop))))

    async def reached(count: int) -> bool | None:
        return True if await _completed(jobs_engine, ids) >= count else None

    ids: list[int] = []
    try:
        join()
        ids = [await enqueue(jobs_engine, data={"steps": 1, "step_s": 0.02})
               for _ in range(60)]
        # Three hand-overs while jobs are being claimed: one joins, another joins, the first
        # leaves.
        for completed, change in ((10, "join"), (25, "join"), (40, "leave")):
            await eventually(lambda c=completed: reached(c), timeout_s=60)  # type: ignore[misc]
            if change == "join":
                join()
            else:
                members[0][0].set()
            crashed = [t for s, t in members if t.done() and not s.is_set()]
            assert not crashed, crashed[0].exception()
        await eventually(lambda: reached(len(ids)), timeout_s=90)
        crashed = [t for s, t in members if t.done() and not s.is_set()]
        assert not crashed, crashed[0].exception()
    finally:
        for stop, _ in members:
            stop.set()
        results = await asyncio.gather(*(t for _, t in members), return_exceptions=True)
    assert [r for r in results if r is not None] == []
    async with jobs_engine.connect() as conn:
        runs = dict((await conn.execute(select(job_run.c.job_id, func.count()).where(
            job_run.c.job_id.in_(ids)).group_by(job_run.c.job_id))).all())
    assert runs == {job_id: 1 for job_id in ids}
