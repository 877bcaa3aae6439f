"""The read models written and read in one statement each: a queued job's row with its first
attempt's, and the jobs the workers' reports decide on, loaded from their rows with their locks
(`lock_and_load_jobs`) instead of a replay of their streams: at every step of a job's life the
two give the same decisions, so the row is a faithful stand-in."""

from __future__ import annotations

from datetime import timedelta

import orjson
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters import store
from jobs.adapters.tables import job, job_attempt
from jobs.adapters.tables import worker as worker_table
from jobs.domain import model
from jobs.domain.model import Job
from jobs.handlers import jobs as commands
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.jobs import (
    WORKER_CONTROL_TOPIC,
    JobRunGranted,
    JobRunRefused,
    JobRunStarted,
    WorkerRef,
)

from ..conftest import TEST_NOOP, now


def decided(j: Job) -> tuple[object, ...]:
    """What the decisions of the workers' reports read of a job, and what they decide."""
    s = j.state
    return (s.status, s.attempt, s.max_attempts, s.job_type, s.retries, j.version, j.worker_id,
            j.retry_at, j.dead, j.cancelled, j.finished,
            model.start(j, attempt=s.attempt, worker_id="w", host="h", pid=1),
            model.refusal(j, attempt=s.attempt), model.refusal(j, attempt=s.attempt + 1),
            model.progress(j, attempt=s.attempt, value=50, message=""),
            [type(e) for e in model.finish(j, attempt=s.attempt, outcome="failed",
                                           message="x", now=now())])


async def same_as_replay(engine: AsyncEngine, job_id: int) -> None:
    async with engine.begin() as conn:
        replayed = await store.load_job(conn, job_id)
        loaded = (await store.lock_and_load_jobs(conn, [job_id]))[job_id]
    assert replayed is not None
    assert decided(loaded) == decided(replayed)


async def test_the_read_model_row_decides_as_the_replayed_stream_through_a_jobs_life(
        jobs_engine: AsyncEngine) -> None:
    async with jobs_engine.begin() as conn:
        job_id = await commands.enqueue(conn, job_type=TEST_NOOP.name, queue="default",
                                        actor=Actor.system(), data={"steps": 3})
    await same_as_replay(jobs_engine, job_id)
    later = now() + timedelta(hours=1)
    steps = [
        lambda j: model.start(j, attempt=1, worker_id="w1", host="h", pid=1),
        lambda j: model.progress(j, attempt=1, value=40, message="going"),
        lambda j: model.fail(j, attempt=1, error="boom", now=now()),  # a retry is due later
        lambda j: model.retry_due(j, later),
        lambda j: model.start(j, attempt=2, worker_id="w2", host="h", pid=2),
        lambda j: model.cancel(j, reason="by test"),
        model.rerun,
        lambda j: model.start(j, attempt=3, worker_id="w3", host="h", pid=3),
        lambda j: model.finish(j, attempt=3, outcome="succeeded", message="done", now=now()),
    ]
    for step in steps:
        async with jobs_engine.begin() as conn:
            assert await commands._apply(conn, job_id, step) is not None
        await same_as_replay(jobs_engine, job_id)


async def test_jobs_without_a_row_are_not_loaded(jobs_engine: AsyncEngine) -> None:
    async with jobs_engine.begin() as conn:
        assert await store.lock_and_load_jobs(conn, [4_999_999_999_999]) == {}


async def test_a_queued_job_and_its_first_attempt_are_written_before_their_updates(
        jobs_engine: AsyncEngine) -> None:
    """The rows of a queued job and of its first attempt go in one statement, and an update of
    that attempt in the same run of events lands after them (not on a row yet to come)."""
    async with jobs_engine.begin() as conn:
        job_id = await store.next_job_id(conn)
        queued = model.queue_job(job_id, job_type=TEST_NOOP.name, queue="default")
        started = model.start(model.replay([queued]) or Job(state=queued.job), attempt=1,
                              worker_id="w1", host="h", pid=7)
        await store.save_job(conn, job_id, 0, [queued, *started], Actor.system())
        row = (await conn.execute(select(job).where(job.c.id == job_id))).one()
        attempt = (await conn.execute(select(job_attempt).where(
            job_attempt.c.job_id == job_id))).one()
    assert (row.status, row.worker_id, row.version) == (2, "w1", 2)
    assert (attempt.attempt, attempt.worker_id, attempt.pid) == (1, "w1", 7)
    assert attempt.started_at is not None and attempt.queued_at == row.date_created


async def test_a_run_of_claims_records_its_workers_and_its_answers_in_one_write(
        jobs_engine: AsyncEngine) -> None:
    """The claims of two workers: each worker's row says the job of its last claim (none when
    refused; created for a worker not seen before, moved for one seen), and each is answered
    in the outbox, in order. (A second claim of a running attempt is granted too, as
    `model.start` decides: the job_run mark keeps the effect once.)"""
    async with jobs_engine.begin() as conn:
        ids = [await commands.enqueue(conn, job_type=TEST_NOOP.name, queue="default",
                                      actor=Actor.system()) for _ in range(3)]
        await commands.cancel(conn, ids[2], Actor.system())  # its claim is refused
        origin = await store.instance_id(conn)
        seen_before = WorkerRef(worker_id="w-old", service="jobs", queue="default", host="h",
                                pid=1, user="u")
        await store.touch_worker(conn, seen_before, now() - timedelta(minutes=1), job_id=None)
    workers = [seen_before, WorkerRef(worker_id="w-new", service="jobs", queue="default",
                                      host="h", pid=2, user="u")]
    claims = [Envelope(source="/jobs", type=JobRunStarted.type, subject=str(job_id),
                       actor=Actor.system(), data=JobRunStarted(
                           worker=w, job_id=job_id, attempt=1, origin=origin
                       ).model_dump(mode="json"))
              for job_id, w in zip([*ids, ids[0]], [*workers, workers[0], workers[1]],
                                   strict=True)]
    async with jobs_engine.begin() as conn:
        await commands.when_runs_started_mark_running(conn, claims)
        rows = {r.worker_id: r for r in await conn.execute(select(worker_table))}
        stored = (await conn.execute(text(
            "SELECT headers, payload FROM outbox WHERE topic = :t ORDER BY position"),
            {"t": WORKER_CONTROL_TOPIC})).all()
    answers = [(dict(h)["ce_type"], *(lambda d: (d["worker_id"], d["job_id"]))(
        orjson.loads(p))) for h, p in stored
        if dict(h)["ce_type"] in (JobRunGranted.type, JobRunRefused.type)]
    assert (rows["w-old"].job_id, rows["w-new"].job_id) == (None, ids[0])
    assert rows["w-new"].started_at == rows["w-new"].last_seen_at
    assert answers == [(JobRunGranted.type, "w-old", ids[0]), (JobRunGranted.type, "w-new", ids[1]),
                       (JobRunRefused.type, "w-old", ids[2]),
                       (JobRunGranted.type, "w-new", ids[0])]
