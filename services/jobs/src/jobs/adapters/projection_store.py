"""Writes of the `job` and `job_attempt` read models, as the projection (jobs.projections.project)
decides them: one function per change, in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters.tables import job, job_attempt
from jobs.domain.model import stream_id_of
from misp_contracts.events.jobs import JobState


async def insert_job_view(conn: AsyncConnection, state: JobState, *, version: int,
                          now: datetime) -> None:
    """The row of a queued job and of its first attempt."""
    await conn.execute(job.insert().values(
        id=state.id, stream_id=stream_id_of(state.id), version=version, queue=state.queue,
        job_type=state.job_type, job_input=state.job_input, status=state.status, retries=0,
        attempt=state.attempt, max_attempts=state.max_attempts, message=state.message,
        progress=0, org_id=state.org_id, task_id=state.task_id, request_id=state.request_id,
        data=state.data, date_created=now, date_modified=now))
    await conn.execute(job_attempt.insert().values(job_id=state.id, attempt=1, queued_at=now))


async def update_job_view(conn: AsyncConnection, job_id: int, values: dict[str, Any], *,
                          count_retry: bool = False) -> None:
    """Set these columns of the job's row; `count_retry`: and add one to its retries."""
    if count_retry:
        values = {**values, "retries": job.c.retries + 1}
    await conn.execute(update(job).where(job.c.id == job_id).values(**values))


async def add_job_attempt(conn: AsyncConnection, job_id: int, attempt: int,
                          now: datetime) -> None:
    """The row of a queued attempt, unless the attempt has one already."""
    await conn.execute(pg_insert(job_attempt).values(
        job_id=job_id, attempt=attempt, queued_at=now).on_conflict_do_nothing())


async def update_job_attempt(conn: AsyncConnection, job_id: int, attempt: int,
                             values: dict[str, Any], *, unfinished_only: bool) -> None:
    """Set these columns of the attempt's row (`unfinished_only`: unless it has finished)."""
    stmt = update(job_attempt).where(job_attempt.c.job_id == job_id,
                                     job_attempt.c.attempt == attempt)
    if unfinished_only:
        stmt = stmt.where(job_attempt.c.finished_at.is_(None))
    await conn.execute(stmt.values(**values))
