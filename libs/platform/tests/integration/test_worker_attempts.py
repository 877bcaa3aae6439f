"""A worker holding several jobs, against the real Kafka and PostgreSQL, with the test playing
the jobs service (it reads the worker's claims on the worker topic, where the worker sends them
itself, none in its outbox, and answers them on the control topic): two attempts of one job id
in its hands at once (attempt 1 still running when the jobs service, having failed it over,
dispatches attempt 2) are two jobs held, each answered, run and reported; a stop request then
lets the worker leave once both are done, not before. A cancel names the attempt it cancels: a
later attempt of the job (an admin's re-run) still runs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from misp_contracts.envelope import Actor, Envelope, from_kafka, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import (
    QUEUES,
    WORKER_CONTROL_TOPIC,
    WORKER_TOPIC,
    CancelJobRun,
    JobRunFinished,
    JobRunGranted,
    JobRunStarted,
    JobType,
    RunJob,
    StopWorker,
    register_job_type,
    run_topic,
)
from misp_contracts.topics import Topic
from misp_platform.kafka import create_producer, ensure_topics
from misp_platform.migrations import create_job_run_table
from misp_platform.testing import (
    read_since,
    start_group_at_end,
    throwaway_database,
    topic_ends,
)
from misp_platform.worker import JobContext, WorkerRunner

OWNER = "workertest"
SLOW = register_job_type(JobType(
    name="workertest_slow", owner=OWNER, queues=QUEUES,
    description="A job of the worker's tests: attempt 1 runs until the test lets it end."))


@pytest.fixture
async def worker_engine(pg_url: str, kafka_bootstrap: str) -> AsyncIterator[AsyncEngine]:
    await ensure_topics(kafka_bootstrap, [Topic(run_topic(OWNER, "default"), "jobs",
                                                partitions=1)])
    async with throwaway_database(pg_url, prefix="test_worker") as url:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(create_job_run_table)
        yield engine
        await engine.dispose()


async def _produce(producer: Any, event: DomainEvent, topic: str, key: str) -> None:
    envelope = Envelope(source="/jobs", type=event.type, subject=key, actor=Actor.system(),
                        data=event.model_dump(mode="json"))
    headers, value = to_kafka(envelope)
    await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)


async def _reports(engine: AsyncEngine, type_: str) -> list[dict[str, Any]]:
    """The data of the worker's reports of `type_` in its outbox, in order."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT payload FROM outbox WHERE CAST(headers AS text) LIKE :t ORDER BY position"),
            {"t": f"%{type_}%"})).scalars().all()
    return [orjson.loads(r) for r in rows]


async def _claims(bootstrap: str, since: dict[Any, int], job_id: int) -> list[int]:
    """The attempts of `job_id` the worker claimed on the worker topic since `since`."""
    found = [from_kafka(r.headers, r.value) for r in await read_since(bootstrap, since)]
    return [e.data["attempt"] for e in found
            if e.type == JobRunStarted.type and e.data.get("job_id") == job_id]


async def _until(predicate: Any, what: str, timeout_s: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if found := await predicate():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_two_attempts_of_one_job_held_at_once_both_run_and_a_stop_is_honoured(
        worker_engine: AsyncEngine, kafka_bootstrap: str) -> None:
    job_id = int(uuid.uuid4().int % 10**12) + 10**12
    release = asyncio.Event()
    ran: list[int] = []

    async def slow(conn: AsyncConnection, ctx: JobContext) -> str:
        ran.append(ctx.job.attempt)
        await ctx.progress(10, "walking")
        if ctx.job.attempt == 1:
            await release.wait()
            raise RuntimeError("attempt 1 fails (its effect rolls back)")
        await asyncio.sleep(1.0)  # attempt 2 does the work, for a while
        return f"done by attempt {ctx.job.attempt}"

    group = f"test-worker-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, [run_topic(OWNER, "default")])
    claims_from = await topic_ends(kafka_bootstrap, WORKER_TOPIC)
    worker = WorkerRunner(service=OWNER, queue="default", engine=worker_engine,
                          bootstrap_servers=kafka_bootstrap, handlers={SLOW.name: slow},
                          group=group, heartbeat_s=0.5, prefetch=8,
                          answer_timeout_s=60.0, answer_timeout_on_stop_s=60.0)
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(worker.run(stop, ready=ready))
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        await asyncio.wait_for(ready.wait(), 30)

        async def claimed(attempt: int) -> bool:
            return attempt in await _claims(kafka_bootstrap, claims_from, job_id)

        for attempt in (1, 2):
            await _produce(producer, RunJob(job_id=job_id, attempt=attempt, job_type=SLOW.name,
                                            queue="default"),
                           run_topic(OWNER, "default"), str(job_id))
            await _until(lambda a=attempt: claimed(a), f"the claim of attempt {attempt}")
            await _produce(producer, JobRunGranted(worker_id=worker.worker_id, job_id=job_id,
                                                   attempt=attempt),
                           WORKER_CONTROL_TOPIC, worker.worker_id)
            if attempt == 1:
                await _until(lambda: asyncio.sleep(0, result=ran == [1]),
                             "attempt 1 running")
        # Attempt 2 is granted and held while attempt 1 runs; then the stop, then attempt 1 ends.
        await _until(lambda: asyncio.sleep(0, result=worker.runnable.qsize() == 1),
                     "attempt 2 granted, waiting for the runner")
        await _produce(producer, StopWorker(worker_id=worker.worker_id,
                                            requested_at=datetime.now(UTC)),
                       WORKER_CONTROL_TOPIC, worker.worker_id)
        await _until(lambda: asyncio.sleep(0, result=worker.stop_requested.is_set()),
                     "the stop request seen")
        release.set()
        # The worker leaves once both are done (a bound for the test, not a timing).
        await asyncio.wait_for(asyncio.shield(running), 30)
    finally:
        release.set()
        stop.set()
        await producer.stop()
        if not running.done():
            running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    finished = [(r["attempt"], r["outcome"], r["replayed"])
                for r in await _reports(worker_engine, JobRunFinished.type)
                if r["job_id"] == job_id]
    # Attempt 1 failed; attempt 2, held as a job of its own while attempt 1 ran, ran to its end
    # before the worker left (it was not dropped when attempt 1 was let go).
    assert sorted(finished) == [(1, "failed", False), (2, "succeeded", False)], finished
    assert ran == [1, 2]
    assert worker.succeeded == 1 and worker.failed == 1
    assert worker.holding == {} and worker.deadlines == {}
    # Each attempt claimed once, on the worker topic, and never through the outbox.
    assert sorted(await _claims(kafka_bootstrap, claims_from, job_id)) == [1, 2]
    assert await _reports(worker_engine, JobRunStarted.type) == []


async def test_a_cancel_stops_its_attempt_and_not_a_later_re_run_of_the_job(
        worker_engine: AsyncEngine, kafka_bootstrap: str) -> None:
    job_id = int(uuid.uuid4().int % 10**12) + 10**12

    async def checked(conn: AsyncConnection, ctx: JobContext) -> str:
        ctx.checkpoint()  # a cancelled attempt stops here
        return f"done by attempt {ctx.job.attempt}"

    group = f"test-worker-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, [run_topic(OWNER, "default")])
    claims_from = await topic_ends(kafka_bootstrap, WORKER_TOPIC)
    worker = WorkerRunner(service=OWNER, queue="default", engine=worker_engine,
                          bootstrap_servers=kafka_bootstrap, handlers={SLOW.name: checked},
                          group=group, heartbeat_s=0.5, prefetch=8, answer_timeout_s=60.0)
    stop, ready = asyncio.Event(), asyncio.Event()
    running = asyncio.create_task(worker.run(stop, ready=ready))
    producer = create_producer(kafka_bootstrap)
    await producer.start()

    async def finished() -> list[tuple[int, str]]:
        return [(r["attempt"], r["outcome"])
                for r in await _reports(worker_engine, JobRunFinished.type)
                if r["job_id"] == job_id]

    try:
        await asyncio.wait_for(ready.wait(), 30)
        # Attempt 1 is cancelled before it runs (the jobs service granted it first: a race it
        # settles; here the test plays both sides), then re-run as attempt 2.
        await _produce(producer, CancelJobRun(job_id=job_id, attempt=1, reason="by test"),
                       WORKER_CONTROL_TOPIC, str(job_id))
        await _until(lambda: asyncio.sleep(0, result=(job_id, 1) in worker.cancelled_attempts),
                     "the cancel seen")
        for attempt in (1, 2):
            await _produce(producer, RunJob(job_id=job_id, attempt=attempt, job_type=SLOW.name,
                                            queue="default"),
                           run_topic(OWNER, "default"), str(job_id))
            await _until(lambda a=attempt: _claimed(kafka_bootstrap, claims_from, job_id, a),
                         f"the claim of attempt {attempt}")
            await _produce(producer, JobRunGranted(worker_id=worker.worker_id, job_id=job_id,
                                                   attempt=attempt),
                           WORKER_CONTROL_TOPIC, worker.worker_id)
            await _until(lambda a=attempt: _has_finished(finished, a),
                         f"attempt {attempt} finished")
    finally:
        stop.set()
        await producer.stop()
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), 30)
    assert sorted(await finished()) == [(1, "cancelled"), (2, "succeeded")]


async def _claimed(bootstrap: str, since: dict[Any, int], job_id: int, attempt: int) -> bool:
    return attempt in await _claims(bootstrap, since, job_id)


async def _has_finished(finished: Any, attempt: int) -> bool:
    return any(a == attempt for a, _ in await finished())
