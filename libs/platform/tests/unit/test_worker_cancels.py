"""A worker remembers the cancels of attempts it may be sent later, within a bound: the oldest
are forgotten first, a cancel sent again counts as new, and a held attempt is flagged at once."""

from __future__ import annotations

from typing import Any

from misp_contracts.envelope import Envelope
from misp_contracts.events.jobs import CancelJobRun, RunJob
from misp_platform.worker import JobContext, WorkerRunner


async def _noop(_conn: Any, _ctx: JobContext) -> str:
    return ""


def _worker(remembered: int) -> WorkerRunner:
    return WorkerRunner(service="jobs", queue="default", engine=None,
                        bootstrap_servers="", handlers={"noop": _noop},
                        cancels_remembered=remembered)


def _cancel(worker: WorkerRunner, job_id: int, attempt: int | None) -> None:
    event = CancelJobRun(job_id=job_id, attempt=attempt)
    worker.on_control(Envelope(source="/jobs", type=event.type,
                               data=event.model_dump(mode="json")))


def _job(job_id: int, attempt: int) -> RunJob:
    return RunJob(job_id=job_id, attempt=attempt, job_type="noop", queue="default")


def test_the_oldest_cancels_are_forgotten_past_the_bound() -> None:
    worker = _worker(3)
    for job_id in range(1, 6):
        _cancel(worker, job_id, 1)
    assert list(worker.cancelled_attempts) == [(3, 1), (4, 1), (5, 1)]
    _cancel(worker, 3, 1)  # sent again: now the newest
    _cancel(worker, 6, None)
    assert list(worker.cancelled_attempts) == [(5, 1), (3, 1), (6, None)]
    assert worker._is_cancelled(_job(3, 1)) and not worker._is_cancelled(_job(3, 2))
    assert worker._is_cancelled(_job(6, 4))  # no attempt named: any
    assert not worker._is_cancelled(_job(1, 1))


def test_a_held_attempt_is_flagged_whatever_the_bound() -> None:
    worker = _worker(1)

    async def report(_value: int, _message: str) -> None:
        return None

    held = JobContext(job=_job(9, 2), report=report)
    worker.holding[(9, 2)] = held
    _cancel(worker, 9, 2)
    _cancel(worker, 10, 1)  # pushes the first out of memory: the held one stays cancelled
    assert held.cancelled and list(worker.cancelled_attempts) == [(10, 1)]
