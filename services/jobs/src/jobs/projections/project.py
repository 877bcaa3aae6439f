"""The read models: `job` and `job_attempt` from the job events, `task` from the task events,
`worker` from the heartbeats; written in the transaction of the append (or of the consumer).
Here each event is read and decided on; the SQL is jobs.adapters.projection_store's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters import projection_store as views
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
from misp_platform.outbox import OutgoingMessage


async def apply_job_events(conn: AsyncConnection, envelopes: Sequence[Envelope],
                           now: datetime, messages: Sequence[OutgoingMessage] = ()) -> None:
    """The read models' writes of `envelopes`; `messages` (the new jobs' dispatches) are queued
    in the outbox with the queued jobs' rows, in their statement."""
    writes = views.Writes(conn, messages)
    for env in envelopes:
        await _apply_job_event(conn, writes, env, now)
    await writes.flush()


async def _apply_job_event(conn: AsyncConnection, writes: views.Writes, env: Envelope,
                           now: datetime) -> None:
    e = decode(env.type, env.data)
    version = env.streamversion or 0
    if isinstance(e, JobQueued):
        await writes.insert_job_view(e.job, version=version, now=now)
        return
    values: dict[str, Any] = {"version": version, "date_modified": now}
    attempt: dict[str, Any] | None = None
    count_retry = False
    job_id = getattr(e, "job_id", None)
    if job_id is None:
        return
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
                      dead=False, cancelled=False, worker_id=None,
                      message="Re-run queued." if e.rerun else "Retry queued.")
        count_retry = True
        await writes.flush()
        await views.add_job_attempt(conn, job_id, e.attempt, now)
    await writes.update_job_view(job_id, values, count_retry=count_retry)
    if attempt is not None:
        await writes.update_job_attempt(job_id, getattr(e, "attempt", 0), attempt,
                                        unfinished_only="finished_at" in attempt)
