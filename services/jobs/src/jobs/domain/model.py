"""The Job aggregate: state rebuilt from its events, and the decisions each command makes.

Pure: no I/O, the time is an argument. MISP's statuses: 1 waiting (queued or waiting for a retry),
2 running, 3 failed (dead, cancelled), 4 completed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from jobs.domain.errors import JobRefusedError, JobValidationError
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import (
    JOB_TYPES,
    QUEUES,
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
    JobState,
    JobType,
)

JOB_NAMESPACE = uuid.UUID("5f0c8a52-8f7e-4d0e-9d55-4a8f1b9f2c11")


def stream_id_of(job_id: int) -> str:
    return str(uuid.uuid5(JOB_NAMESPACE, f"job:{job_id}"))


@dataclass(frozen=True)
class Job:
    state: JobState
    version: int = 0
    worker_id: str | None = None
    retry_at: datetime | None = None
    dead: bool = False
    cancelled: bool = False

    @property
    def id(self) -> int:
        return self.state.id

    @property
    def finished(self) -> bool:
        return self.state.status in (STATUS_FAILED, STATUS_COMPLETED)


def job_type_for(name: str, queue: str | None) -> tuple[JobType, str]:
    """The registered type and the queue to use; JobValidationError for unknown ones."""
    job_type = JOB_TYPES.get(name)
    if job_type is None:
        raise JobValidationError({"job_type": [f"Unknown job type: {name}"]})
    chosen = queue or job_type.default_queue
    if chosen not in QUEUES:
        raise JobValidationError({"worker": [f"Unknown queue: {chosen}"]})
    if chosen not in job_type.queues:
        raise JobValidationError({"worker": [
            f"Job type {name} does not run in the {chosen} queue (it runs in "
            f"{', '.join(job_type.queues)})"]})
    return job_type, chosen


# A job's input and data are bounded in bytes before they become an event (a Kafka message).
MAX_INPUT_BYTES = 65535


def check_input(job_input: str, data: dict[str, Any] | None) -> None:
    """JobValidationError when the input and data (as JSON) pass MAX_INPUT_BYTES."""
    as_json = json.dumps(data or {}, default=str, ensure_ascii=False)
    size = len(job_input.encode("utf-8", "replace")) + len(as_json.encode("utf-8", "replace"))
    if size > MAX_INPUT_BYTES:
        raise JobValidationError({"data": [
            f"The job's input and data can be at most {MAX_INPUT_BYTES} bytes ({size} given)."]})


def queue_job(job_id: int, *, job_type: str, queue: str | None, job_input: str = "",
              data: dict[str, Any] | None = None, org_id: int = 0, task_id: int | None = None,
              request_id: str | None = None) -> JobQueued:
    kind, chosen = job_type_for(job_type, queue)
    return JobQueued(job=JobState(
        id=job_id, queue=chosen, job_type=kind.name, job_input=job_input, data=data or {},
        org_id=org_id,
        status=STATUS_WAITING, message="Job queued.", max_attempts=kind.max_attempts,
        task_id=task_id, request_id=request_id))


def evolve(job: Job | None, event: DomainEvent) -> Job | None:
    if isinstance(event, JobQueued):
        return Job(state=event.job)
    if job is None:
        return None
    s = job.state
    if isinstance(event, JobStarted):
        return replace(job, worker_id=event.worker_id, retry_at=None, state=s.model_copy(
            update={"status": STATUS_RUNNING, "attempt": event.attempt,
                    "message": f"Running (attempt {event.attempt} on {event.host}:{event.pid})"}))
    if isinstance(event, JobProgressed):
        return replace(job, state=s.model_copy(update={
            "progress": event.progress, "message": event.message or s.message}))
    if isinstance(event, JobCompleted):
        return replace(job, worker_id=None, state=s.model_copy(update={
            "status": STATUS_COMPLETED, "progress": 100,
            "message": event.message or "Job completed."}))
    if isinstance(event, JobAttemptFailed):
        status = STATUS_FAILED if event.dead else STATUS_WAITING
        note = (f"Failed after {event.attempt} attempt(s): {event.error}" if event.dead
                else f"Attempt {event.attempt} failed: {event.error}; retry at "
                     f"{event.retry_at:%Y-%m-%d %H:%M:%S}" if event.retry_at else event.error)
        return replace(job, worker_id=None, retry_at=event.retry_at, dead=event.dead,
                       state=s.model_copy(update={"status": status, "message": note}))
    if isinstance(event, JobRetried):
        return replace(job, retry_at=None, dead=False, cancelled=False, state=s.model_copy(
            update={"status": STATUS_WAITING, "attempt": event.attempt, "progress": 0,
                    "retries": s.retries + 1,
                    "message": "Re-run queued." if event.rerun else "Retry queued."}))
    if isinstance(event, JobCancelled):
        return replace(job, worker_id=None, retry_at=None, cancelled=True,
                       state=s.model_copy(update={"status": STATUS_FAILED,
                                                  "message": f"Cancelled: {event.reason}"}))
    return job


def replay(events: list[DomainEvent], version: int = 0) -> Job | None:
    job: Job | None = None
    for e in events:
        job = evolve(job, e)
    return None if job is None else replace(job, version=version)


# ---- decisions --------------------------------------------------------------------------------


def start(job: Job, *, attempt: int, worker_id: str, host: str, pid: int) -> list[DomainEvent]:
    """A worker took the attempt; stale attempts (retried, cancelled) are ignored."""
    if attempt != job.state.attempt or job.finished or job.retry_at is not None:
        return []
    return [JobStarted(job_id=job.id, attempt=attempt, worker_id=worker_id, host=host, pid=pid)]


def refusal(job: Job, *, attempt: int) -> str:
    """Why a worker's claim of `attempt` was not granted (`start` decided nothing)."""
    if job.cancelled:
        return job.state.message
    if job.finished:
        return f"job {job.id} already ended: {job.state.message}"
    if attempt != job.state.attempt or job.retry_at is not None:
        return f"attempt {attempt} is stale (the job is at attempt {job.state.attempt})"
    return f"attempt {attempt} is already held by worker {job.worker_id}"


def progress(job: Job, *, attempt: int, value: int, message: str) -> list[DomainEvent]:
    if attempt != job.state.attempt or job.finished:
        return []
    value = max(0, min(100, value))
    if value >= 100:
        return [JobCompleted(job_id=job.id, attempt=attempt, message=message)]
    return [JobProgressed(job_id=job.id, attempt=attempt, progress=value, message=message)]


def finish(job: Job, *, attempt: int, outcome: str, message: str,
           now: datetime) -> list[DomainEvent]:
    if attempt != job.state.attempt or job.finished:
        return []
    if outcome == "succeeded":
        return [JobCompleted(job_id=job.id, attempt=attempt, message=message)]
    if outcome == "cancelled":
        return [JobCancelled(job_id=job.id, attempt=attempt, reason=message or "by the worker")]
    return fail(job, attempt=attempt, error=message or "failed", now=now)


def fail(job: Job, *, attempt: int, error: str, now: datetime) -> list[DomainEvent]:
    """Exponential backoff while attempts remain, then the dead set."""
    kind = JOB_TYPES.get(job.state.job_type)
    if attempt >= job.state.max_attempts or kind is None:
        return [JobAttemptFailed(job_id=job.id, attempt=attempt, error=error, dead=True)]
    retry_at = now + timedelta(seconds=kind.backoff_s(attempt))
    return [JobAttemptFailed(job_id=job.id, attempt=attempt, error=error, retry_at=retry_at)]


def retry_due(job: Job, now: datetime) -> list[DomainEvent]:
    if job.retry_at is None or job.retry_at > now or job.finished:
        return []
    return [JobRetried(job_id=job.id, attempt=job.state.attempt + 1)]


def cancel(job: Job, *, reason: str) -> list[DomainEvent]:
    if job.finished:
        done = "completed" if job.state.status == STATUS_COMPLETED else "failed"
        raise JobRefusedError(f"Job {job.id} is already {done}: only a waiting or running job "
                              "can be cancelled.")
    return [JobCancelled(job_id=job.id, attempt=job.state.attempt, reason=reason)]


def rerun(job: Job) -> list[DomainEvent]:
    if job.state.status != STATUS_FAILED:
        raise JobRefusedError(f"Job {job.id} has not failed: only a failed job can be re-run.")
    return [JobRetried(job_id=job.id, attempt=job.state.attempt + 1, rerun=True)]
