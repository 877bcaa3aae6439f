"""Workers that hold many claims in flight (issue 19): a job cancelled among them is refused and
never runs while the others run; progress reported faster than the tick is coalesced and ends at
the job's last value."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters import store
from jobs.domain.model import stream_id_of
from jobs.handlers import jobs as commands
from misp_contracts.envelope import Actor
from misp_contracts.events.jobs import JobProgressed
from misp_platform.testing import eventually
from misp_platform.worker import job_run

from ..conftest import Pipeline, WorkerFactory
from .test_job_flow import enqueue, job_row, wait_status


async def _runs_of(engine: AsyncEngine, job_id: int) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(job_run).where(
            job_run.c.job_id == job_id))).scalar_one())


async def _progress_reported(engine: AsyncEngine, job_id: int) -> list[int]:
    async with engine.connect() as conn:
        stored = await store.store.load(conn, stream_id_of(job_id))
    return [e.data["progress"] for e in stored if e.type == JobProgressed.type]


async def test_a_job_cancelled_among_many_claims_in_flight_is_refused_and_the_others_run(
        pipeline_parts: Pipeline, start_worker: WorkerFactory,
        jobs_engine: AsyncEngine) -> None:
    # The jobs consumer is held back: the worker claims every job before any answer comes.
    pipeline_parts.start_relay()
    worker = await start_worker("default", prefetch=20)
    ids = [await enqueue(jobs_engine) for _ in range(10)]

    async def all_held() -> bool:
        return {i for i, _attempt in worker.answers} >= set(ids)

    assert await eventually(all_held)
    doomed = ids[4]
    async with jobs_engine.begin() as conn:
        await commands.cancel(conn, doomed, Actor(email="admin@example.test", org_id=1))
    pipeline_parts.start_consumer()
    for job_id in ids:
        if job_id != doomed:
            await wait_status(jobs_engine, job_id, 4)
    await eventually(lambda: _true(worker.refused == 1))
    row = await job_row(jobs_engine, doomed)
    assert (row.status, row.cancelled) == (3, True)
    assert await _runs_of(jobs_engine, doomed) == 0
    assert [await _runs_of(jobs_engine, i) for i in ids if i != doomed] == [1] * 9
    assert worker.succeeded == 9 and not worker.holding


async def test_progress_reported_faster_than_the_tick_lands_once_at_its_last_value(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine) -> None:
    await start_worker("default", progress_interval_s=30)
    job_id = await enqueue(jobs_engine, data={"steps": 5, "step_s": 0.01})
    done = await wait_status(jobs_engine, job_id, 4)
    assert done.progress == 100
    # Five reports within the tick: only the last (step 5 of 5: 83%) is sent, with the outcome.
    assert await _progress_reported(jobs_engine, job_id) == [83]


async def test_progress_reported_slower_than_the_tick_is_sent_report_by_report(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine) -> None:
    await start_worker("default", progress_interval_s=0)
    job_id = await enqueue(jobs_engine, data={"steps": 5, "step_s": 0.01})
    await wait_status(jobs_engine, job_id, 4)
    assert await _progress_reported(jobs_engine, job_id) == [16, 33, 50, 66, 83]


async def _true(value: bool) -> Any:
    return value


async def test_jobs_queued_together_are_each_in_the_history_and_run_once(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine) -> None:
    worker = await start_worker("default", prefetch=8)
    async with jobs_engine.begin() as conn:
        ids = await commands.enqueue_many(conn, 12, job_type="test_noop", queue="default",
                                          actor=Actor.system())
    assert len(set(ids)) == 12
    for job_id in ids:
        row = await wait_status(jobs_engine, job_id, 4)
        assert (row.attempt, row.progress) == (1, 100)
    assert [await _runs_of(jobs_engine, i) for i in ids] == [1] * 12
    assert worker.succeeded == 12
