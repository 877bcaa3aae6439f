"""What the jobs consumer handles: the principals projection, `EnqueueJob` commands, and the
workers' heartbeats and run reports (turned into the jobs' own events); a run of claims,
progress or outcome reports of one poll is handled at once (`BATCH_REACTIONS`)."""

from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.handlers import jobs as h
from jobs.handlers.tasks import seed_tasks
from misp_contracts.events.jobs import (
    JOBS_COMMANDS_TOPIC,
    WORKER_TOPIC,
    EnqueueJob,
    JobRunFinished,
    JobRunProgressed,
    JobRunStarted,
    WorkerHeartbeat,
    WorkerStopped,
)
from misp_platform.config import ServiceSettings
from misp_platform.consumer import BatchHandler, Handler

REACTIONS: dict[str, Handler] = {
    EnqueueJob.type: h.when_enqueue_job_requested,
    JobRunStarted.type: h.when_run_started_mark_running,
    JobRunProgressed.type: h.when_run_progressed_record,
    JobRunFinished.type: h.when_run_finished_record_outcome,
    WorkerHeartbeat.type: h.when_heartbeat_record_worker,
    WorkerStopped.type: h.when_worker_stopped_record,
}

# The same reactions for a run of messages of one type: their jobs locked, loaded and appended
# to together, the answers to a poll's claims written to the outbox in one statement.
BATCH_REACTIONS: dict[str, BatchHandler] = {
    JobRunStarted.type: h.when_runs_started_mark_running,
    JobRunProgressed.type: h.when_runs_progressed_record,
    JobRunFinished.type: h.when_runs_finished_record_outcome,
}


def handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    """The principals projection has a consumer of its own (misp_platform.cli)."""
    return dict(REACTIONS)


def batch_handlers(_settings: ServiceSettings) -> Mapping[str, BatchHandler]:
    return dict(BATCH_REACTIONS)


def topics(_settings: ServiceSettings) -> list[str]:
    return [JOBS_COMMANDS_TOPIC, WORKER_TOPIC]


async def on_consumer_start(_settings: ServiceSettings, engine: AsyncEngine) -> None:
    """First run: the pre-defined, unscheduled tasks (as MISP ships its own)."""
    async with engine.begin() as conn:
        await seed_tasks(conn)
