"""Jobs through the real Kafka and PostgreSQL: a command on Kafka, a worker that runs it and
reports progress, retries with backoff, the dead set, cancel, re-run, idempotency by job id."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters import store
from jobs.adapters.tables import job, job_attempt
from jobs.adapters.tables import worker as worker_table
from jobs.handlers import jobs as commands
from jobs.scheduler import Scheduler
from misp_contracts.envelope import Actor
from misp_contracts.events.jobs import (
    JOB_TOPIC,
    EnqueueJob,
    JobRejected,
    RunJob,
    StopWorker,
    run_topic,
)
from misp_platform.testing import eventually, start_group_at_end
from misp_platform.worker import job_run

from ..conftest import TEST_NOOP, TEST_OWNER, Pipeline, WorkerFactory, now
from ..support import auth, find_on_topic


async def job_row(engine: AsyncEngine, job_id: int) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(select(job).where(job.c.id == job_id))).first()


async def wait_status(engine: AsyncEngine, job_id: int, status: int,
                      timeout_s: float = 30) -> Any:
    async def check() -> Any:
        row = await job_row(engine, job_id)
        return row if row is not None and row.status == status else None

    return await eventually(check, timeout_s)


async def enqueue(engine: AsyncEngine, **kw: Any) -> int:
    async with engine.begin() as conn:
        return await commands.enqueue(conn, job_type=kw.pop("job_type", TEST_NOOP.name),
                                      queue=kw.pop("queue", "default"), actor=Actor.system(),
                                      **kw)


async def test_a_job_asked_for_on_kafka_is_queued_run_with_progress_and_completed(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        publish: Callable[..., Awaitable[Any]], client: httpx.AsyncClient,
        admin_key: str) -> None:
    await start_worker("default")
    request_id = uuid.uuid4().hex
    await publish(EnqueueJob(request_id=request_id, job_type=TEST_NOOP.name,
                             data={"steps": 2, "step_s": 0.05}), request_id)

    async def queued() -> Any:
        async with jobs_engine.connect() as conn:
            return (await conn.execute(select(job.c.id).where(
                job.c.request_id == request_id))).scalar()

    job_id = await eventually(queued)
    done = await wait_status(jobs_engine, job_id, 4)
    assert done.progress == 100 and done.message == "Nothing done, as asked."
    progress = await client.get(f"/jobs/getProgress/{job_id}", headers=auth(admin_key))
    assert progress.json() == {"progress": "100%"}
    view = (await client.get(f"/api/v1/jobs/jobs/{job_id}", headers=auth(admin_key))).json()
    assert view["JobAttempt"][0]["outcome"] == "completed" and view["JobAttempt"][0]["pid"]


async def test_an_unknown_job_type_on_kafka_is_rejected_not_queued(
        pipeline: None, jobs_engine: AsyncEngine, kafka_bootstrap: str,
        publish: Callable[..., Awaitable[Any]]) -> None:
    request_id = uuid.uuid4().hex
    reader = f"test-jobs-reader-{request_id}"
    await start_group_at_end(kafka_bootstrap, reader, [JOB_TOPIC])
    await publish(EnqueueJob(request_id=request_id, job_type="nope"), request_id)
    answer = await find_on_topic(kafka_bootstrap, reader, JOB_TOPIC, request_id)
    assert answer.type == JobRejected.type and "Unknown job type" in answer.data["reason"]
    assert answer.actor.email == "tester@example.test"
    async with jobs_engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(job))).scalar() == 0


async def test_a_failing_job_backs_off_then_succeeds_and_one_that_keeps_failing_is_dead(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        client: httpx.AsyncClient, admin_key: str) -> None:
    await start_worker("default")
    clock = [now()]
    # The fake clock runs ahead of the worker's real heartbeats: the dead-worker watchdog,
    # which compares the two, is off here (test_crashes.py shows it); otherwise a slow run saw
    # an attempt failed as "worker ... stopped sending heartbeats" instead of by the job.
    scheduler = Scheduler(jobs_engine, clock=lambda: clock[0], missed_beats=10**6)
    flaky = await enqueue(jobs_engine, data={"fail_times": 1})
    doomed = await enqueue(jobs_engine, data={"fail_times": 99})

    async def retried(job_id: int, attempts: int) -> Any:
        async def check() -> Any:
            clock[0] += timedelta(seconds=5)  # the fake clock passes every backoff
            await scheduler.run_once()
            row = await job_row(jobs_engine, job_id)
            return row if row.status in (3, 4) and row.attempt == attempts else None

        return await eventually(check, 45, 0.3)

    ok = await retried(flaky, 2)
    assert ok.status == 4 and ok.retries == 1
    dead = await retried(doomed, 3)
    assert dead.status == 3 and dead.dead and "after 3 attempt" in dead.message
    dead_set = (await client.get("/api/v1/jobs/dead", headers=auth(admin_key))).json()
    assert [r["Job"]["id"] for r in dead_set] == [str(doomed)]
    async with jobs_engine.connect() as conn:
        attempts = (await conn.execute(select(job_attempt.c.outcome, job_attempt.c.error).where(
            job_attempt.c.job_id == doomed).order_by(job_attempt.c.attempt))).all()
    assert [a.outcome for a in attempts] == ["failed"] * 3
    assert "failing on purpose" in attempts[0].error

    rerun = await client.post(f"/api/v1/jobs/jobs/{doomed}/rerun", headers=auth(admin_key))
    assert rerun.status_code == 200
    assert (await job_row(jobs_engine, doomed)).status == 1


async def test_running_the_same_job_id_twice_does_not_double_its_effect(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        publish: Callable[..., Awaitable[Any]]) -> None:
    await start_worker("default")
    job_id = await enqueue(jobs_engine)
    await wait_status(jobs_engine, job_id, 4)
    # The same attempt delivered again (a redelivery after a crash, a replayed topic).
    async with jobs_engine.connect() as conn:
        origin = await store.instance_id(conn)
    await publish(RunJob(job_id=job_id, attempt=1, job_type=TEST_NOOP.name, queue="default",
                         origin=origin), str(job_id), topic=run_topic(TEST_OWNER, "default"))
    marker = await enqueue(jobs_engine)  # behind the duplicate on the same worker
    await wait_status(jobs_engine, marker, 4)
    async with jobs_engine.connect() as conn:
        runs = (await conn.execute(select(func.count()).select_from(job_run).where(
            job_run.c.job_id == job_id))).scalar()
    assert runs == 1
    assert (await job_row(jobs_engine, job_id)).status == 4


async def test_cancelling_a_running_job_stops_it_at_its_next_step(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        client: httpx.AsyncClient, admin_key: str) -> None:
    await start_worker("default")
    job_id = await enqueue(jobs_engine, data={"steps": 200, "step_s": 0.05})
    await wait_status(jobs_engine, job_id, 2)
    cancel = await client.post(f"/api/v1/jobs/jobs/{job_id}/cancel", headers=auth(admin_key))
    assert cancel.status_code == 200
    row = await wait_status(jobs_engine, job_id, 3)
    assert row.cancelled and row.message.startswith("Cancelled: by ")
    async with jobs_engine.connect() as conn:
        runs = (await conn.execute(select(func.count()).select_from(job_run).where(
            job_run.c.job_id == job_id))).scalar()
    assert runs == 0  # the half-done effect was rolled back

    async def worker_idle() -> Any:
        ws = (await client.get("/servers/getWorkers", headers=auth(admin_key))).json()
        return ws["default"]["workers"] and ws["default"]["workers"][0]["job_id"] is None

    assert await eventually(worker_idle, 20)


async def runs_of(engine: AsyncEngine, job_id: int) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(job_run).where(
            job_run.c.job_id == job_id))).scalar_one())


async def test_a_job_cancelled_while_a_worker_already_holds_it_is_refused_and_never_runs(
        pipeline_parts: Pipeline, start_worker: WorkerFactory,
        jobs_engine: AsyncEngine) -> None:
    # The relay runs, the jobs consumer is held back: the worker takes the dispatch and claims
    # it, and the cancel reaches the job before the claim does.
    pipeline_parts.start_relay()
    worker = await start_worker("default")
    job_id = await enqueue(jobs_engine)
    assert await eventually(lambda: _holding(worker, job_id))
    async with jobs_engine.begin() as conn:
        await commands.cancel(conn, job_id, Actor(email="admin@example.test", org_id=1))
    pipeline_parts.start_consumer()
    await eventually(lambda: _value(worker.refused == 1))
    row = await job_row(jobs_engine, job_id)
    assert (row.status, row.cancelled) == (3, True)
    assert row.message == "Cancelled: by admin@example.test"
    assert await runs_of(jobs_engine, job_id) == 0
    # The worker goes on with the next job.
    marker = await enqueue(jobs_engine)
    await wait_status(jobs_engine, marker, 4)
    assert await runs_of(jobs_engine, job_id) == 0
    assert worker.succeeded == 1


async def test_a_worker_started_after_a_cancel_does_not_run_the_cancelled_job(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        client: httpx.AsyncClient, admin_key: str) -> None:
    await start_worker.position_now("default")
    # No worker yet: the dispatch waits on the run topic.
    job_id = await enqueue(jobs_engine)
    await eventually(lambda: _job_dispatched(jobs_engine))
    cancel = await client.post(f"/api/v1/jobs/jobs/{job_id}/cancel", headers=auth(admin_key))
    assert cancel.status_code == 200, cancel.text
    worker = await start_worker("default")
    await eventually(lambda: _value(worker.refused == 1))
    assert await runs_of(jobs_engine, job_id) == 0
    assert (await job_row(jobs_engine, job_id)).status == 3


async def _holding(worker: Any, job_id: int) -> bool:
    """The worker awaits the answer to its claim of one attempt of `job_id`."""
    return any(held == job_id for held, _attempt in worker.answers)


async def _value(value: bool) -> bool:
    return value


async def _job_dispatched(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:  # the relay sent everything: the outbox is empty
        return not (await conn.execute(text("SELECT 1 FROM outbox LIMIT 1"))).first()


async def test_a_stop_request_lets_the_job_in_hand_finish_and_a_kill_cancels_it(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        publish: Callable[..., Awaitable[Any]]) -> None:
    """`restartWorkers` (a stop) and `killAllWorkers` (a stop that cancels the job in hand),
    aimed here at one test worker by its id (the API's broadcast would stop the stack's)."""
    for kill, status in ((False, 4), (True, 3)):
        worker = await start_worker("default")
        job_id = await enqueue(jobs_engine, data={"steps": 30, "step_s": 0.05})
        await wait_status(jobs_engine, job_id, 2)
        await publish(StopWorker(worker_id=worker.worker_id, cancel_current=kill,
                                 requested_at=datetime.now(UTC)), "workers")
        await eventually(lambda w=worker: _value(w.stop_requested.is_set()))
        row = await wait_status(jobs_engine, job_id, status)
        assert await runs_of(jobs_engine, job_id) == (0 if kill else 1)
        if kill:
            assert row.cancelled and "cancelled" in row.message.lower()

        async def stopped(w: Any = worker) -> bool:
            async with jobs_engine.connect() as conn:
                return (await conn.execute(select(worker_table.c.stop_reason).where(
                    worker_table.c.worker_id == w.worker_id))).scalar() == "stop requested"

        await eventually(stopped)


async def test_a_dispatch_from_before_origins_is_answered_when_the_job_is_ours(
        pipeline: None, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        publish: Callable[..., Awaitable[Any]]) -> None:
    job_id = await enqueue(jobs_engine)
    await eventually(lambda: _job_dispatched(jobs_engine))
    worker = await start_worker("default")  # positioned after the job's own dispatch
    # The same attempt as an older jobs service sent it: no origin.
    await publish(RunJob(job_id=job_id, attempt=1, job_type=TEST_NOOP.name, queue="default"),
                  str(job_id), topic=run_topic(TEST_OWNER, "default"))
    await wait_status(jobs_engine, job_id, 4)
    assert await runs_of(jobs_engine, job_id) == 1 and worker.succeeded == 1
