"""The read models: `job` and `job_attempt` from the job events, `task` from the task events,
`worker` from the heartbeats; written in the transaction of the append (or of the consumer)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters.tables import job, job_attempt
from jobs.domain.model import stream_id_of
from misp_contracts.envelope import Envelope
from misp_contracts.events.base import decode
from misp_contracts.events.jobs import (
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_WAITING,
    JobAttemptFailed,
    JobCancelled,
    JobCompleted,
    JobProgressed,
    JobQueued,
    JobRetried,
    JobStarted,
)


async def apply_job_events(conn: AsyncConnection, envelopes: Sequence[Envelope],
                           now: datetime) -> None:
    for env in envelopes:
        e = decode(env.type, env.data)
        version = env.streamversion or 0
        if isinstance(e, JobQueued):
            s = e.job
            await conn.execute(job.insert().values(
                id=s.id, stream_id=stream_id_of(s.id), version=version, queue=s.queue,
                job_type=s.job_type, job_input=s.job_input, status=s.status, retries=0,
                attempt=s.attempt, max_attempts=s.max_attempts, message=s.message, progress=0,
                org_id=s.org_id, task_id=s.task_id, request_id=s.request_id,
                data=s.data, date_created=now, date_modified=now))
            await conn.execute(job_attempt.insert().values(job_id=s.id, attempt=1, queued_at=now))
            continue
        values: dict[str, Any] = {"version": version, "date_modified": now}
        attempt: dict[str, Any] | None = None
        job_id = getattr(e, "job_id", None)
        if job_id is None:
            continue
        if isinstance(e, JobStarted):
            values.update(status=STATUS_RUNNING, worker_id=e.worker_id, retry_at=None,
                          process_id=f"{e.host}:{e.pid}",
                          message=f"Running (attempt {e.attempt} on {e.host}:{e.pid})")
            attempt = {"worker_id": e.worker_id, "host": e.host, "pid": e.pid,
                       "started_at": now}
        elif isinstance(e, JobProgressed):
            values.update(progress=e.progress)
            if e.message:
                values["message"] = e.message
        elif isinstance(e, JobCompleted):
            values.update(status=STATUS_COMPLETED, progress=100, worker_id=None,
                          message=e.message or "Job completed.")
            attempt = {"finished_at": now, "outcome": "completed"}
        elif isinstance(e, JobAttemptFailed):
            if e.dead:
                msg = f"Failed after {e.attempt} attempt(s): {e.error}"
            else:
                msg = f"Attempt {e.attempt} failed: {e.error}; retrying"
            values.update(status=STATUS_FAILED if e.dead else STATUS_WAITING, worker_id=None,
                          retry_at=e.retry_at, dead=e.dead, message=msg)
            attempt = {"finished_at": now, "outcome": "failed", "error": e.error}
        elif isinstance(e, JobCancelled):
            values.update(status=STATUS_FAILED, worker_id=None, retry_at=None, cancelled=True,
                          message=f"Cancelled: {e.reason}")
            attempt = {"finished_at": now, "outcome": "cancelled", "error": e.reason}
        elif isinstance(e, JobRetried):
            values.update(status=STATUS_WAITING, attempt=e.attempt, progress=0, retry_at=None,
                          dead=False, cancelled=False, worker_id=None, retries=job.c.retries + 1,
                          message="Re-run queued." if e.rerun else "Retry queued.")
            await conn.execute(pg_insert(job_attempt).values(
                job_id=job_id, attempt=e.attempt, queued_at=now).on_conflict_do_nothing())
        await conn.execute(update(job).where(job.c.id == job_id).values(**values))
        if attempt is not None:
            stmt = update(job_attempt).where(job_attempt.c.job_id == job_id,
                                             job_attempt.c.attempt == getattr(e, "attempt", 0))
            if "finished_at" in attempt:
                stmt = stmt.where(job_attempt.c.finished_at.is_(None))
            await conn.execute(stmt.values(**attempt))
