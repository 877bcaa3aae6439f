"""Commands and reactions of the job aggregate: enqueue (API, Kafka command, scheduler), worker
reports, cancel, re-run, due retries and dead workers. Each is one transaction: events, read
model and outbox (the `RunJob` dispatch and control messages included); the answers to claims
also go straight to Kafka once their transaction commits (a worker waits for them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeAlias

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters import queries, store
from jobs.domain import model
from jobs.domain.errors import JobNotFoundError, JobValidationError
from jobs.domain.model import Job
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import (
    JOB_TYPES,
    STATUS_RUNNING,
    STATUS_WAITING,
    CancelJobRun,
    EnqueueJob,
    JobCancelled,
    JobQueued,
    JobRejected,
    JobRetried,
    JobRunFinished,
    JobRunGranted,
    JobRunProgressed,
    JobRunRefused,
    JobRunStarted,
    RunJob,
    StopWorker,
    WorkerHeartbeat,
    WorkerRef,
    WorkerStopped,
    run_topic,
)
from misp_platform.consumer import send_after_commit
from misp_platform.eventstore import Append
from misp_platform.outbox import OutgoingMessage
from misp_platform.outbox import enqueue as enqueue_outbox

log = structlog.get_logger(__name__)

SOURCE = "/jobs"
# Heartbeats reach us through the worker's outbox, its relay and our consumer: allow for that
# pipeline's lag before calling a worker dead.
HEARTBEAT_GRACE_S = 2.0


ToWorkers: TypeAlias = RunJob | CancelJobRun | JobRunGranted | JobRunRefused


async def _send(conn: AsyncConnection, event: ToWorkers, *, topic: str, key: str,
                actor: Actor, cause: Envelope | None = None) -> None:
    data = event.model_dump(mode="json")
    env = (cause.caused(source=SOURCE, type=event.type, subject=key, data=data, actor=actor)
           if cause else Envelope(source=SOURCE, type=event.type, subject=key, data=data,
                                  actor=actor))
    await enqueue_outbox(conn, env, topic=topic, key=key)


async def dispatch(conn: AsyncConnection, j: Job | None, attempt: int, actor: Actor,
                   cause: Envelope | None = None) -> None:
    """Hand attempt `attempt` of the job to the owner's workers of its queue."""
    assert j is not None
    s = j.state
    owner = JOB_TYPES[s.job_type].owner
    await _send(conn, RunJob(job_id=s.id, attempt=attempt, job_type=s.job_type, queue=s.queue,
                             job_input=s.job_input, data=s.data, org_id=s.org_id,
                             origin=await store.instance_id(conn)),
                topic=run_topic(owner, s.queue), key=str(s.id), actor=actor, cause=cause)


def _dispatch_of(queued: JobQueued, env: Envelope, actor: Actor,
                 origin: str) -> OutgoingMessage:
    """The first attempt's `RunJob` of a job queued by the event `env`, for its owner's
    workers of its queue (written in the statement of the job's rows)."""
    s = queued.job
    run = RunJob(job_id=s.id, attempt=1, job_type=s.job_type, queue=s.queue,
                 job_input=s.job_input, data=s.data, org_id=s.org_id, origin=origin)
    return OutgoingMessage.of(env.caused(
        source=SOURCE, type=run.type, subject=str(s.id), data=run.model_dump(mode="json"),
        actor=actor), topic=run_topic(JOB_TYPES[s.job_type].owner, s.queue), key=str(s.id))


async def enqueue(conn: AsyncConnection, *, job_type: str, queue: str | None, actor: Actor,
                  job_input: str = "", data: dict[str, Any] | None = None, org_id: int = 0,
                  task_id: int | None = None, request_id: str | None = None,
                  cause: Envelope | None = None) -> int:
    """Queue a job and dispatch its first attempt; JobValidationError for bad input."""
    model.job_type_for(job_type, queue)  # validate before taking an id
    model.check_input(job_input, data)
    origin = await store.instance_id(conn)
    job_id = await store.next_job_id(conn)
    queued = model.queue_job(job_id, job_type=job_type, queue=queue, job_input=job_input,
                             data=data, org_id=org_id, task_id=task_id, request_id=request_id)
    await store.save_job(conn, job_id, 0, [queued], actor, cause=cause,
                         dispatches=lambda envs: [_dispatch_of(queued, envs[0], actor, origin)])
    return job_id


async def enqueue_many(conn: AsyncConnection, count: int, *, job_type: str, queue: str | None,
                       actor: Actor, data: dict[str, Any] | None = None) -> list[int]:
    """Queue `count` jobs of one kind and dispatch them: validated once, their ids, events,
    read-model rows and dispatches each written in one statement, whatever `count`."""
    model.job_type_for(job_type, queue)
    model.check_input("", data)
    ids = await store.next_job_ids(conn, count)
    queued = [model.queue_job(i, job_type=job_type, queue=queue, data=data) for i in ids]
    origin = await store.instance_id(conn)
    await store.save_jobs(conn, [Append(
        stream_id=model.stream_id_of(i), stream_type="job", expected_version=0, events=(q,),
        actor=actor) for i, q in zip(ids, queued, strict=True)],
        dispatches=lambda envs: [_dispatch_of(q, env, actor, origin)
                                 for q, env in zip(queued, envs, strict=True)])
    return ids


async def when_enqueue_job_requested(conn: AsyncConnection, envelope: Envelope) -> None:
    """`EnqueueJob` on Kafka: queue it (once per request id), or answer `JobRejected`."""
    cmd = EnqueueJob.model_validate(envelope.data)
    if await queries.job_id_for_request(conn, cmd.request_id) is not None:
        return
    try:
        await enqueue(conn, job_type=cmd.job_type, queue=cmd.queue, actor=envelope.actor,
                      job_input=cmd.job_input, data=cmd.data, org_id=cmd.org_id,
                      request_id=cmd.request_id, cause=envelope)
    except JobValidationError as exc:
        rejected = JobRejected(request_id=cmd.request_id, job_type=cmd.job_type,
                               queue=cmd.queue, reason=str(exc))
        env = envelope.caused(source=SOURCE, type=rejected.type, subject=cmd.request_id,
                              data=rejected.model_dump(mode="json"))
        await enqueue_outbox(conn, env, topic=rejected.topic, key=cmd.request_id)


Decide = Callable[[Job], list[DomainEvent]]


async def _apply(conn: AsyncConnection, job_id: int, decide: Decide,
                 envelope: Envelope | None = None,
                 actor: Actor | None = None, now: datetime | None = None) -> Job | None:
    # The writers of one job (API commands, the workers' reports, the watchdog) take turns on its
    # row: a cancel never loses a version race against a stream of progress reports.
    await store.lock_job(conn, job_id)
    j = await store.load_job(conn, job_id)
    if j is None:
        return None
    events = decide(j)
    await store.save_job(conn, job_id, j.version, events,
                         actor or (envelope.actor if envelope else Actor.system()),
                         cause=envelope, now=now)
    out: Job | None = j
    for e in events:
        out = model.evolve(out, e)
    return out


async def _apply_many(conn: AsyncConnection, runs: Sequence[tuple[int, Envelope, Decide]],
                      now: datetime | None = None) -> None:
    """`_apply` for a run of messages at once: their jobs locked and loaded (from the read
    model) in one statement, in id order, and all their events appended in one; each message
    is decided on its job as the messages before it in the run left it."""
    if not runs:
        return
    jobs = await store.lock_and_load_jobs(conn, [job_id for job_id, _, _ in runs])
    appends: list[Append] = []
    for job_id, envelope, decide in runs:
        j = jobs.get(job_id)
        if j is None:
            continue
        events = decide(j)
        if not events:
            continue
        appends.append(Append(
            stream_id=model.stream_id_of(job_id), stream_type="job",
            expected_version=j.version, events=tuple(events), actor=envelope.actor,
            correlation_id=envelope.correlationid or envelope.id, causation_id=envelope.id))
        after: Job | None = j
        for e in events:
            after = model.evolve(after, e)
        assert after is not None
        jobs[job_id] = replace(after, version=j.version + len(events))
    await store.save_jobs(conn, appends, now)


async def when_run_started_mark_running(conn: AsyncConnection, envelope: Envelope) -> None:
    await when_runs_started_mark_running(conn, [envelope])


async def when_runs_started_mark_running(conn: AsyncConnection,
                                         envelopes: Sequence[Envelope]) -> None:
    """Workers' claims: each granted when its attempt is still waiting (the job becomes
    running), refused otherwise (cancelled, stale, held by another worker). The answers go back
    on the control topic in this transaction, all of a poll's in one outbox write, and straight
    to Kafka once it commits (the consumer runner's `send_after_commit`); a worker runs a job
    only once granted. A grant and a cancel take turns on the job's row lock, and no answer is
    sent before its transaction commits."""
    origin = await store.instance_id(conn)
    claims: list[tuple[JobRunStarted, Envelope]] = []
    for envelope in envelopes:
        r = JobRunStarted.model_validate(envelope.data)
        if r.origin != origin and (r.origin or not await queries.job_exists(conn, r.job_id)):
            # Another deployment's dispatch (a second stack on the cluster): not ours to
            # answer. A dispatch from before origins existed (no origin) is answered if the job
            # is ours.
            continue
        claims.append((r, envelope))
    refusals: dict[int, str] = {}  # by index in `claims`; a claim never decided: no such job

    def deciding(index: int, r: JobRunStarted) -> Decide:
        def decide(j: Job) -> list[DomainEvent]:
            events = model.start(j, attempt=r.attempt, worker_id=r.worker.worker_id,
                                 host=r.worker.host, pid=r.worker.pid)
            if events:
                refusals.pop(index, None)
            else:
                refusals[index] = model.refusal(j, attempt=r.attempt)
            return events

        return decide

    for index, (r, _) in enumerate(claims):
        refusals[index] = f"Invalid job: {r.job_id}"
    await _apply_many(conn, [(r.job_id, envelope, deciding(index, r))
                             for index, (r, envelope) in enumerate(claims)])
    answers: list[OutgoingMessage] = []
    seen: dict[str, tuple[WorkerRef, datetime, int | None]] = {}
    for index, (r, envelope) in enumerate(claims):
        answer: JobRunGranted | JobRunRefused = (
            JobRunRefused(worker_id=r.worker.worker_id, job_id=r.job_id, attempt=r.attempt,
                          reason=refusals[index], origin=origin)
            if index in refusals else
            JobRunGranted(worker_id=r.worker.worker_id, job_id=r.job_id, attempt=r.attempt,
                          origin=origin))
        # Keyed by the worker: the others skip it without decoding it.
        answers.append(OutgoingMessage.of(envelope.caused(
            source=SOURCE, type=answer.type, subject=r.worker.worker_id,
            data=answer.model_dump(mode="json"), actor=Actor.system()),
            topic=answer.topic, key=r.worker.worker_id))
        seen[r.worker.worker_id] = (r.worker, envelope.time,
                                    None if index in refusals else r.job_id)
    await store.touch_workers_and_enqueue(conn, list(seen.values()), answers)
    # The outbox copies are the durable ones; these reach the workers without the relay's
    # crossing, once this transaction commits (a worker takes the first answer it gets).
    send_after_commit(conn, answers)


async def when_run_progressed_record(conn: AsyncConnection, envelope: Envelope) -> None:
    await when_runs_progressed_record(conn, [envelope])


async def when_runs_progressed_record(conn: AsyncConnection,
                                      envelopes: Sequence[Envelope]) -> None:
    def deciding(r: JobRunProgressed) -> Decide:
        return lambda j: model.progress(j, attempt=r.attempt, value=r.progress,
                                        message=r.message)

    reports = [JobRunProgressed.model_validate(e.data) for e in envelopes]
    await _apply_many(conn, [(r.job_id, e, deciding(r))
                             for r, e in zip(reports, envelopes, strict=True)])


async def when_run_finished_record_outcome(conn: AsyncConnection, envelope: Envelope) -> None:
    await when_runs_finished_record_outcome(conn, [envelope])


async def when_runs_finished_record_outcome(conn: AsyncConnection,
                                            envelopes: Sequence[Envelope]) -> None:
    now = datetime.now(UTC)

    def deciding(r: JobRunFinished) -> Decide:
        return lambda j: model.finish(j, attempt=r.attempt, outcome=r.outcome,
                                      message=r.message, now=now)

    reports = [JobRunFinished.model_validate(e.data) for e in envelopes]
    await _apply_many(conn, [(r.job_id, e, deciding(r))
                             for r, e in zip(reports, envelopes, strict=True)], now)
    outcomes: dict[str, list[int]] = {}
    for r in reports:
        counts = outcomes.setdefault(r.worker.worker_id, [0, 0])
        counts[0 if r.outcome == "succeeded" else 1] += 1
    for worker_id, (succeeded, failed) in outcomes.items():
        await store.record_worker_outcomes(conn, worker_id, succeeded=succeeded, failed=failed)


async def when_heartbeat_record_worker(conn: AsyncConnection, envelope: Envelope) -> None:
    hb = WorkerHeartbeat.model_validate(envelope.data)
    await store.touch_worker(conn, hb.worker, hb.at, job_id=hb.job_id, interval_s=hb.interval_s)


async def when_worker_stopped_record(conn: AsyncConnection, envelope: Envelope) -> None:
    st = WorkerStopped.model_validate(envelope.data)
    await store.mark_worker_stopped(conn, st.worker.worker_id, envelope.time,
                                    st.reason or "stopped")


# ---- API commands -----------------------------------------------------------------------------


async def cancel(conn: AsyncConnection, job_id: int, actor: Actor, *,
                 only_if_waiting: bool = False) -> bool:
    """Cancel a waiting or running job (a finished one is refused). With `only_if_waiting`, a
    job that has started is left alone (False): the check is made under the job's row lock."""
    who = actor.email or "system"
    skipped = False
    attempt: int | None = None

    def decide(j: Job) -> list[DomainEvent]:
        nonlocal skipped, attempt
        skipped = only_if_waiting and j.state.status != STATUS_WAITING
        attempt = j.state.attempt
        return [] if skipped else model.cancel(j, reason=f"by {who}")

    if await _apply(conn, job_id, decide, actor=actor) is None:
        raise JobNotFoundError(f"Invalid job: {job_id}")
    if skipped:
        return False
    await _send(conn, CancelJobRun(job_id=job_id, reason=f"by {who}", attempt=attempt),
                topic=CancelJobRun.topic, key=str(job_id), actor=actor)
    return True


async def rerun(conn: AsyncConnection, job_id: int, actor: Actor) -> Job:
    j = await _apply(conn, job_id, model.rerun, actor=actor)
    if j is None:
        raise JobNotFoundError(f"Invalid job: {job_id}")
    await dispatch(conn, j, j.state.attempt, actor)
    return j


async def stop_workers(conn: AsyncConnection, actor: Actor, requested_at: datetime,
                       **selector: Any) -> None:
    """Ask the workers `selector` picks (every one, or one `pid`) to stop after the job in hand;
    `cancel_current` also cancels that job."""
    event = StopWorker(requested_at=requested_at, **selector)
    env = Envelope(source=SOURCE, type=event.type, subject="workers", actor=actor,
                   data=event.model_dump(mode="json"))
    await enqueue_outbox(conn, env, topic=event.topic, key="workers")


# ---- the watchdog (run by the scheduler process) ----------------------------------------------


async def dispatch_due_retries(conn: AsyncConnection, now: datetime, limit: int = 100) -> int:
    rows = await store.lock_due_retries(conn, now, limit)
    for row in rows:
        j = await _apply(conn, row.id, lambda j: model.retry_due(j, now), now=now)
        if j is not None and j.retry_at is None and j.state.status == STATUS_WAITING:
            await dispatch(conn, j, j.state.attempt, Actor.system())
    return len(rows)


async def fail_jobs_of_dead_workers(conn: AsyncConnection, now: datetime,
                                    missed_beats: float = 3.0,
                                    grace_s: float = HEARTBEAT_GRACE_S) -> list[int]:
    """Running jobs whose worker missed its heartbeats (or stopped) fail this attempt with a
    clear message, and are retried or go to the dead set: never left running."""
    rows = await store.lock_jobs_of_dead_workers(conn, now, missed_beats, grace_s)
    failed = []
    for r in rows:
        why = (f"worker {r.host}:{r.pid} stopped while running it" if r.stopped_at else
               f"worker {r.host}:{r.pid} stopped sending heartbeats (last at "
               f"{r.last_seen_at:%Y-%m-%d %H:%M:%S} UTC)")
        j = await _apply(conn, r.id, _fail_if_running(r.attempt, why, now), now=now)
        if j is not None:
            failed.append(r.id)
            log.warning("jobs.dead_worker", job_id=r.id, worker_id=r.worker_id, error=why)
    return failed


def _fail_if_running(attempt: int, why: str, now: datetime) -> Decide:
    def decide(j: Job) -> list[DomainEvent]:
        if j.state.status != STATUS_RUNNING or j.state.attempt != attempt:
            return []
        return model.fail(j, attempt=attempt, error=why, now=now)

    return decide


async def cancel_if_waiting(conn: AsyncConnection, job_ids: list[int], actor: Actor) -> int:
    """`clear <queue>`: cancel those of `job_ids` still waiting (one may have started since)."""
    return sum([await cancel(conn, job_id, actor, only_if_waiting=True) for job_id in job_ids])


__all__ = ["JobCancelled", "JobRetried", "cancel", "enqueue", "rerun"]
