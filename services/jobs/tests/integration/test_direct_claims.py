"""The claim round trip without the relay (issue 19): a worker sends its claim straight to Kafka,
and the jobs consumer its answer once the claim's transaction commits, so a job is granted and
run with no relay running at all. The answer's outbox copy, the durable one, is still written;
the claim has none."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters import store
from misp_contracts.events.jobs import (
    JobRunFinished,
    JobRunGranted,
    JobRunStarted,
    RunJob,
    run_topic,
)
from misp_platform.testing import eventually
from misp_platform.worker import job_run

from ..conftest import TEST_OWNER, Pipeline, WorkerFactory
from .test_job_flow import enqueue, wait_status


async def _outbox_types(engine: AsyncEngine, job_id: int) -> list[str]:
    """The types of the outbox's messages about `job_id`, in order."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT CAST(headers AS text) AS headers, payload FROM outbox ORDER BY position")
        )).all()
    return [type_ for headers, payload in rows
            for name, type_ in orjson.loads(headers) if name == "ce_type"
            if orjson.loads(payload).get("job_id") == job_id]


async def _run_outcome(engine: AsyncEngine, job_id: int) -> str | None:
    async with engine.connect() as conn:
        return (await conn.execute(text("SELECT outcome FROM job_run WHERE job_id = :j"),
                                   {"j": job_id})).scalar()


async def test_a_job_is_claimed_granted_and_run_with_no_relay_and_no_claim_in_the_outbox(
        pipeline_parts: Pipeline, start_worker: WorkerFactory, jobs_engine: AsyncEngine,
        publish: Callable[..., Awaitable[Any]]) -> None:
    # No relay: the job's dispatch stays in the outbox; the test hands it to the worker itself.
    pipeline_parts.start_consumer()
    worker = await start_worker("default")
    job_id = await enqueue(jobs_engine)
    async with jobs_engine.connect() as conn:
        origin = await store.instance_id(conn)
    await publish(RunJob(job_id=job_id, attempt=1, job_type="test_noop", queue="default",
                         origin=origin), str(job_id), topic=run_topic(TEST_OWNER, "default"))

    # The claim reached the jobs service (the job is running, on this worker), and its grant
    # reached the worker, which ran the job: neither went through an outbox and a relay.
    row = await wait_status(jobs_engine, job_id, 2)
    assert worker.worker_id == row.worker_id
    assert await eventually(lambda: _run_outcome(jobs_engine, job_id)) == "succeeded"
    assert worker.succeeded == 1
    async with jobs_engine.connect() as conn:
        assert len((await conn.execute(job_run.select().where(
            job_run.c.job_id == job_id))).all()) == 1
    # The worker's outcome report waits in the outbox for the relay; its claim never did. The
    # grant's durable copy is there too (the worker took the first one).
    types = await _outbox_types(jobs_engine, job_id)
    assert JobRunStarted.type not in types
    assert types.count(JobRunGranted.type) == 1
    assert types.count(JobRunFinished.type) == 1
