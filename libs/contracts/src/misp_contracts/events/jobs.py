"""The jobs contracts: job types and queues, the job, task and worker events, and the commands
that enqueue jobs, dispatch them to workers and steer workers.

A service asks for a job with `EnqueueJob` on `misp.jobs.commands.v1` (its `request_id` comes
back in `JobQueued` or `JobRejected` on `misp.jobs.job.v1`). The jobs service dispatches `RunJob`
on the run topic of the (owner, queue) pair of the job type, which only the owner's workers read:
a queue never hands a job to a worker that cannot run it. A worker claims each job it takes
(`JobRunStarted`) and runs it only once the jobs service grants the claim on the control topic,
so a job cancelled while it waits never runs. Workers report on `misp.jobs.worker.v1`; the jobs
service turns the reports into the job's own events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from misp_contracts.events.base import DomainEvent, register

JOB_TOPIC = "misp.jobs.job.v1"
TASK_TOPIC = "misp.jobs.task.v1"
WORKER_TOPIC = "misp.jobs.worker.v1"
JOBS_COMMANDS_TOPIC = "misp.jobs.commands.v1"
WORKER_CONTROL_TOPIC = "misp.jobs.worker-control.v1"

# MISP's queues (BackgroundJobsTool::VALID_QUEUES without the scheduler's own).
QUEUES: tuple[str, ...] = ("default", "prio", "email", "cache", "update")

# MISP's Job.status values.
STATUS_CREATED, STATUS_WAITING, STATUS_RUNNING, STATUS_FAILED, STATUS_COMPLETED = 0, 1, 2, 3, 4
STATUS_NAMES = {0: "Unknown", 1: "Waiting", 2: "Running", 3: "Failed", 4: "Completed"}


@dataclass(frozen=True)
class JobType:
    """A kind of background work, run by the workers of its owner service."""

    name: str
    owner: str
    queues: tuple[str, ...]  # the first one is the default
    description: str
    max_attempts: int = 3
    backoff_base_s: float = 5.0  # delay before attempt n+1: base * 2**(n-1), capped
    backoff_max_s: float = 3600.0

    @property
    def default_queue(self) -> str:
        return self.queues[0]

    def backoff_s(self, attempt: int) -> float:
        """How long to wait after failed attempt `attempt` (1-based)."""
        return float(min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))


JOB_TYPES: dict[str, JobType] = {}


def register_job_type(job_type: JobType) -> JobType:
    """Declare a job type (each name once); its run topics join the topic catalogue."""
    if job_type.name in JOB_TYPES and JOB_TYPES[job_type.name] != job_type:
        raise ValueError(f"job type registered twice: {job_type.name}")
    unknown = set(job_type.queues) - set(QUEUES)
    if unknown or not job_type.queues:
        raise ValueError(f"job type {job_type.name}: unknown queues {sorted(unknown)}")
    JOB_TYPES[job_type.name] = job_type
    return job_type


def run_topic(owner: str, queue: str) -> str:
    """The topic that carries `RunJob` for the job types of `owner` in `queue`."""
    return f"misp.jobs.run-{owner}-{queue}.commands.v1"


def run_topics() -> dict[str, tuple[str, str]]:
    """Every run topic with its (owner, queue)."""
    return {run_topic(t.owner, q): (t.owner, q) for t in JOB_TYPES.values() for q in t.queues}


NOOP = register_job_type(JobType(
    "noop", "jobs", QUEUES, "Does nothing (tests and benchmarks)", max_attempts=3,
    backoff_base_s=1.0))
AUDIT_VERIFY = register_job_type(JobType(
    "audit_verify", "audit", ("default", "prio"), "Verify the audit log's hash chains"))
AUDIT_PRUNE = register_job_type(JobType(
    "audit_prune", "audit", ("default",), "Prune audit rows past the retention period"))
PURGE_SESSIONS = register_job_type(JobType(
    "purge_expired_sessions", "identity", ("default",), "Purge expired login sessions"))
SETTINGS_DIAGNOSTICS = register_job_type(JobType(
    "settings_diagnostics", "settings", ("default", "prio"), "Run the settings diagnostics"))
AUTHKEY_EXPIRY_WARNINGS = register_job_type(JobType(
    "authkey_expiry_warnings", "mailer", ("email",),
    "Warn users whose authkeys expire soon (job input: days ahead, default 7)"))
BULK_EMAIL = register_job_type(JobType(
    "bulk_email", "mailer", ("email",),
    "Mail all users (admin/users/email to all; data: the mailer's request id)",
    max_attempts=3, backoff_base_s=10.0))


class JobState(BaseModel):
    """A job as MISP's `jobs` table holds it, plus its attempts."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    queue: str
    job_type: str
    job_input: str = ""
    # The job's parameters for its handler (never secrets: they travel on Kafka).
    data: dict[str, Any] = Field(default_factory=dict)
    org_id: int = 0
    status: int = STATUS_WAITING
    progress: int = 0
    message: str = ""
    retries: int = 0
    attempt: int = 1
    max_attempts: int = 3
    task_id: int | None = None
    request_id: str | None = None


# ---- commands ---------------------------------------------------------------------------------


@register
class EnqueueJob(DomainEvent):
    """Ask the jobs service to queue a job; the answer carries `request_id`."""

    type: ClassVar[str] = "misp.jobs.commands.enqueue-job.v1"
    topic: ClassVar[str] = JOBS_COMMANDS_TOPIC
    request_id: str
    job_type: str
    queue: str | None = None
    job_input: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    org_id: int = 0


@register
class RunJob(DomainEvent):
    """One attempt of a job, for a worker of the job type's owner (on its run topic)."""

    type: ClassVar[str] = "misp.jobs.commands.run-job.v1"
    topic: ClassVar[str] = JOBS_COMMANDS_TOPIC  # sent to run_topic(owner, queue) instead
    job_id: int
    attempt: int
    job_type: str
    queue: str
    job_input: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    org_id: int = 0
    # The jobs deployment that dispatched it (its claims are answered by that one only).
    origin: str = ""


@register
class StopWorker(DomainEvent):
    """Stop workers gracefully (after their current job); the supervisor starts them again.
    No selector stops every worker; `cancel_current` also cancels the job in hand."""

    type: ClassVar[str] = "misp.jobs.worker-control.stop-requested.v1"
    topic: ClassVar[str] = WORKER_CONTROL_TOPIC
    worker_id: str | None = None
    pid: int | None = None
    queue: str | None = None
    cancel_current: bool = False
    requested_at: datetime


@register
class CancelJobRun(DomainEvent):
    """Ask whichever worker holds this job to stop it (cooperatively, at its next step)."""

    type: ClassVar[str] = "misp.jobs.worker-control.cancel-requested.v1"
    topic: ClassVar[str] = WORKER_CONTROL_TOPIC
    job_id: int
    reason: str = ""
    # The attempt cancelled: a later one (an admin's re-run) is not. None (older senders): any.
    attempt: int | None = None


@register
class JobRunGranted(DomainEvent):
    """The jobs service's answer to a worker's claim (`JobRunStarted`): the attempt is this
    worker's, it may run the job. The claim and a cancel take turns on the job, so a job
    cancelled while waiting is refused, never run."""

    type: ClassVar[str] = "misp.jobs.worker-control.run-granted.v1"
    topic: ClassVar[str] = WORKER_CONTROL_TOPIC
    worker_id: str
    job_id: int
    attempt: int
    origin: str = ""


@register
class JobRunRefused(DomainEvent):
    """The answer to a claim the worker must not run: the job was cancelled, the attempt is
    stale (retried, re-run) or another worker holds it."""

    type: ClassVar[str] = "misp.jobs.worker-control.run-refused.v1"
    topic: ClassVar[str] = WORKER_CONTROL_TOPIC
    worker_id: str
    job_id: int
    attempt: int
    reason: str
    origin: str = ""


# ---- the job aggregate (jobs service) ------------------------------------------------------


@register
class JobQueued(DomainEvent):
    type: ClassVar[str] = "misp.jobs.job.queued.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job: JobState


@register
class JobRejected(DomainEvent):
    """An `EnqueueJob` that could not be queued (unknown type or queue, ...)."""

    type: ClassVar[str] = "misp.jobs.job.rejected.v1"
    topic: ClassVar[str] = JOB_TOPIC
    request_id: str
    job_type: str
    queue: str | None = None
    reason: str


@register
class JobStarted(DomainEvent):
    type: ClassVar[str] = "misp.jobs.job.started.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job_id: int
    attempt: int
    worker_id: str
    host: str
    pid: int


@register
class JobProgressed(DomainEvent):
    type: ClassVar[str] = "misp.jobs.job.progressed.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job_id: int
    attempt: int
    progress: int
    message: str = ""


@register
class JobCompleted(DomainEvent):
    type: ClassVar[str] = "misp.jobs.job.completed.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job_id: int
    attempt: int
    message: str = ""


@register
class JobAttemptFailed(DomainEvent):
    """An attempt failed; `retry_at` set: queued again then; `dead`: out of attempts."""

    type: ClassVar[str] = "misp.jobs.job.attempt-failed.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job_id: int
    attempt: int
    error: str
    retry_at: datetime | None = None
    dead: bool = False


@register
class JobRetried(DomainEvent):
    """A new attempt was dispatched (after a backoff, or a re-run from the API)."""

    type: ClassVar[str] = "misp.jobs.job.retried.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job_id: int
    attempt: int
    rerun: bool = False


@register
class JobCancelled(DomainEvent):
    type: ClassVar[str] = "misp.jobs.job.cancelled.v1"
    topic: ClassVar[str] = JOB_TOPIC
    job_id: int
    attempt: int
    reason: str


# ---- worker reports (published by the workers of any service) ------------------------------


class WorkerRef(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    worker_id: str
    service: str
    queue: str
    host: str
    pid: int
    user: str = ""


@register
class WorkerHeartbeat(DomainEvent):
    """A worker is alive (also sent when it starts); `job_id` is the job in hand."""

    type: ClassVar[str] = "misp.jobs.worker.heartbeat.v1"
    topic: ClassVar[str] = WORKER_TOPIC
    worker: WorkerRef
    job_id: int | None = None
    at: datetime
    interval_s: float = 2.0


@register
class WorkerStopped(DomainEvent):
    type: ClassVar[str] = "misp.jobs.worker.stopped.v1"
    topic: ClassVar[str] = WORKER_TOPIC
    worker: WorkerRef
    reason: str = ""


@register
class JobRunStarted(DomainEvent):
    """A worker's claim of an attempt it took from its run topic; it runs the job only once
    the jobs service answers `JobRunGranted`."""

    type: ClassVar[str] = "misp.jobs.worker.run-started.v1"
    topic: ClassVar[str] = WORKER_TOPIC
    worker: WorkerRef
    job_id: int
    attempt: int
    origin: str = ""  # the RunJob's


@register
class JobRunProgressed(DomainEvent):
    type: ClassVar[str] = "misp.jobs.worker.run-progressed.v1"
    topic: ClassVar[str] = WORKER_TOPIC
    worker: WorkerRef
    job_id: int
    attempt: int
    progress: int
    message: str = ""


@register
class JobRunFinished(DomainEvent):
    """The outcome of one attempt: succeeded, failed (with the error) or cancelled."""

    type: ClassVar[str] = "misp.jobs.worker.run-finished.v1"
    topic: ClassVar[str] = WORKER_TOPIC
    worker: WorkerRef
    job_id: int
    attempt: int
    outcome: str  # succeeded | failed | cancelled
    message: str = ""
    # An effect already applied for this job id (a redelivery): reported again, not redone.
    replayed: bool = False


# ---- scheduled tasks -----------------------------------------------------------------------

OVERLAP_POLICIES = ("skip", "buffer_one", "allow")
CATCH_UP_POLICIES = ("skip", "run_once", "run_all")


class TaskState(BaseModel):
    """A scheduled task: MISP's `tasks` row plus time zone and policies."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    type: str  # a job type
    timer: float = 0  # hours; 0 = run once at the scheduled time
    scheduled_time: str = "12:00"
    timezone: str = "UTC"
    description: str = ""
    next_execution_at: datetime | None = None
    overlap: str = "skip"
    catch_up: str = "run_once"
    catch_up_max: int = 10
    paused: bool = False
    queue: str | None = None
    interval_s: float | None = None  # overrides `timer` (sub-hour schedules, tests, benchmarks)


@register
class TaskScheduled(DomainEvent):
    """A task was created or its schedule changed (setTask)."""

    type: ClassVar[str] = "misp.jobs.task.scheduled.v1"
    topic: ClassVar[str] = TASK_TOPIC
    task: TaskState
    changes: dict[str, tuple[Any, Any]] = Field(default_factory=dict)


@register
class TaskPaused(DomainEvent):
    type: ClassVar[str] = "misp.jobs.task.paused.v1"
    topic: ClassVar[str] = TASK_TOPIC
    task_id: int
    paused: bool


@register
class TaskTicked(DomainEvent):
    """The scheduler handled the run due at `due_at` (once per task and due time)."""

    type: ClassVar[str] = "misp.jobs.task.ticked.v1"
    topic: ClassVar[str] = TASK_TOPIC
    task_id: int
    due_at: datetime
    outcome: str  # queued | skipped-overlap | skipped-missed | triggered
    job_ids: list[int] = Field(default_factory=list)
    next_execution_at: datetime | None = None
    message: str = ""
