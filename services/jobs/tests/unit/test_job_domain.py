"""The job aggregate's rules, without I/O: statuses, retries with backoff, the dead set,
cancel and re-run, and which job types run in which queue."""

from datetime import UTC, datetime, timedelta

import pytest

from jobs.domain import model
from jobs.domain.errors import JobRefusedError, JobValidationError
from misp_contracts.events.jobs import (
    JOB_TYPES,
    STATUS_COMPLETED,
    STATUS_FAILED,
    STATUS_RUNNING,
    STATUS_WAITING,
    run_topic,
    run_topics,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def new_job(job_type: str = "noop") -> model.Job:
    job = model.replay([model.queue_job(7, job_type=job_type, queue=None)])
    assert job is not None
    return job


def apply(job: model.Job, events: list) -> model.Job:  # type: ignore[type-arg]
    for e in events:
        job = model.evolve(job, e)  # type: ignore[assignment]
    return job


def test_a_new_job_waits_in_its_types_default_queue() -> None:
    job = new_job("audit_prune")
    assert job.state.status == STATUS_WAITING and job.state.queue == "default"


def test_an_unknown_type_or_queue_or_a_queue_the_type_does_not_run_in_is_refused() -> None:
    for job_type, queue in (("nope", None), ("noop", "scheduler"), ("audit_prune", "email")):
        with pytest.raises(JobValidationError):
            model.queue_job(1, job_type=job_type, queue=queue)


def test_start_progress_complete_follow_misps_statuses() -> None:
    job = apply(new_job(), model.start(new_job(), attempt=1, worker_id="w", host="h", pid=1))
    assert job.state.status == STATUS_RUNNING
    job = apply(job, model.progress(job, attempt=1, value=40, message="x"))
    assert job.state.progress == 40
    job = apply(job, model.progress(job, attempt=1, value=100, message=""))
    assert job.state.status == STATUS_COMPLETED and job.state.progress == 100


def test_failures_back_off_exponentially_then_go_to_the_dead_set() -> None:
    job = new_job()
    kind = JOB_TYPES["noop"]
    for attempt in (1, 2):
        job = apply(job, model.start(job, attempt=attempt, worker_id="w", host="h", pid=1))
        job = apply(job, model.finish(job, attempt=attempt, outcome="failed", message="boom",
                                      now=NOW))
        assert job.state.status == STATUS_WAITING
        assert job.retry_at == NOW + timedelta(seconds=kind.backoff_base_s * 2 ** (attempt - 1))
        assert model.retry_due(job, NOW) == []
        job = apply(job, model.retry_due(job, job.retry_at))
        assert job.state.attempt == attempt + 1 and job.state.retries == attempt
    job = apply(job, model.start(job, attempt=3, worker_id="w", host="h", pid=1))
    job = apply(job, model.finish(job, attempt=3, outcome="failed", message="boom", now=NOW))
    assert job.dead and job.state.status == STATUS_FAILED
    assert "after 3 attempt" in job.state.message


def test_reports_of_a_stale_attempt_are_ignored() -> None:
    job = new_job()
    job = apply(job, model.start(job, attempt=1, worker_id="w", host="h", pid=1))
    job = apply(job, model.fail(job, attempt=1, error="worker died", now=NOW))
    job = apply(job, model.retry_due(job, NOW + timedelta(hours=1)))
    assert model.finish(job, attempt=1, outcome="succeeded", message="", now=NOW) == []


def test_a_finished_job_cannot_be_cancelled_and_only_a_failed_one_re_runs() -> None:
    job = new_job()
    with pytest.raises(JobRefusedError):
        model.rerun(job)
    job = apply(job, model.cancel(job, reason="by me"))
    assert job.state.status == STATUS_FAILED and job.cancelled
    with pytest.raises(JobRefusedError):
        model.cancel(job, reason="again")
    job = apply(job, model.rerun(job))
    assert job.state.status == STATUS_WAITING and job.state.attempt == 2


def test_each_owner_and_queue_has_its_own_run_topic() -> None:
    topics = run_topics()
    assert topics[run_topic("jobs", "prio")] == ("jobs", "prio")
    assert run_topic("audit", "email") not in topics


def test_a_jobs_input_and_data_are_bounded_in_bytes() -> None:
    model.check_input("x" * 1000, {"note": "é" * 32000})  # 65,000 bytes and more: fits
    with pytest.raises(JobValidationError) as refused:
        model.check_input("", {"note": "é" * 33000})
    assert "at most 65535 bytes" in refused.value.errors["data"][0]
