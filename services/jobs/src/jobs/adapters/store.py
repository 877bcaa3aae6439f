"""The job and task streams in the event store, the projection written with each append, and
the other writes of the service (row locks, workers, schedulers' beats, tick claims)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import DateTime, Row, func, literal, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters.tables import (
    job,
    job_id_seq,
    jobs_instance,
    scheduler,
    task,
    task_id_seq,
    task_tick,
    worker,
)
from jobs.domain.model import Job, replay, stream_id_of
from jobs.projections import project
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent, decode
from misp_contracts.events.jobs import (
    STATUS_RUNNING,
    STATUS_WAITING,
    JobState,
    TaskState,
    WorkerRef,
)
from misp_platform import outbox
from misp_platform.eventstore import Append, EventStore
from misp_platform.outbox import OutgoingMessage

store = EventStore("jobs")
_instance_ids: dict[str, str] = {}


async def instance_id(conn: AsyncConnection) -> str:
    """This deployment's id (`jobs_instance`), read once per database."""
    key = str(conn.engine.url)
    if key not in _instance_ids:
        _instance_ids[key] = str((await conn.execute(select(jobs_instance.c.id))).scalar_one())
    return _instance_ids[key]


async def next_job_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(job_id_seq.next_value()))).scalar_one())


async def next_job_ids(conn: AsyncConnection, count: int) -> list[int]:
    """`count` job ids in one statement."""
    return [int(i) for i in (await conn.execute(
        select(job_id_seq.next_value()).select_from(func.generate_series(1, count)))).scalars()]


async def next_task_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(task_id_seq.next_value()))).scalar_one())


async def load_job(conn: AsyncConnection, job_id: int) -> Job | None:
    stored = await store.load(conn, stream_id_of(job_id))
    events = [e for e in (decode(s.type, s.data) for s in stored) if e is not None]
    job = replay(events)
    return None if job is None else replace(job, version=stored[-1].version)


# What a write of new jobs sends with their rows: the messages made from their events'
# envelopes (their dispatches), queued in the outbox in the statement of the rows.
Dispatches = Callable[[Sequence[Envelope]], Sequence[OutgoingMessage]]


async def save_job(conn: AsyncConnection, job_id: int, version: int,
                   events: Sequence[DomainEvent], actor: Actor, *,
                   cause: Envelope | None = None,
                   now: datetime | None = None,
                   dispatches: Dispatches | None = None) -> list[Envelope]:
    """Append to the job's stream and update the read model: one transaction (the caller's)."""
    if not events:
        return []
    envelopes = await store.append(
        conn, stream_id=stream_id_of(job_id), stream_type="job", expected_version=version,
        events=events, actor=actor,
        correlation_id=(cause.correlationid or cause.id) if cause else None,
        causation_id=cause.id if cause else None)
    await project.apply_job_events(conn, envelopes, now or datetime.now(UTC),
                                   dispatches(envelopes) if dispatches else ())
    return envelopes


async def save_jobs(conn: AsyncConnection, appends: Sequence[Append],
                    now: datetime | None = None,
                    dispatches: Dispatches | None = None) -> list[Envelope]:
    """Append to many jobs' streams in one statement and update their read model (queued jobs'
    rows with `dispatches(envelopes)` queued in the outbox in the same statement)."""
    if not appends:
        return []
    envelopes = await store.append_many(conn, appends)
    await project.apply_job_events(conn, envelopes, now or datetime.now(UTC),
                                   dispatches(envelopes) if dispatches else ())
    return envelopes


async def lock_and_load_jobs(conn: AsyncConnection, job_ids: Sequence[int]) -> dict[int, Job]:
    """The jobs of `job_ids` that exist, their rows locked until the transaction ends (in id
    order: two such transactions never wait on each other in a cycle), read from the read
    model in the same statement: the `job` row is written in the transaction of each append,
    and a row locked after another writer committed is read as that writer left it, so it
    holds what a replay of the stream would give (the decisions read its status, attempt,
    worker, retry time, flags and version) without loading and decoding every event."""
    rows = await conn.execute(select(job).where(job.c.id.in_(sorted(set(job_ids))))
                              .order_by(job.c.id).with_for_update())
    return {r.id: Job(
        state=JobState(id=r.id, queue=r.queue, job_type=r.job_type, job_input=r.job_input,
                       data=r.data, org_id=r.org_id, status=r.status, progress=r.progress,
                       message=r.message, retries=r.retries, attempt=r.attempt,
                       max_attempts=r.max_attempts, task_id=r.task_id,
                       request_id=r.request_id),
        version=r.version, worker_id=r.worker_id, retry_at=r.retry_at, dead=r.dead,
        cancelled=r.cancelled) for r in rows}


async def lock_job(conn: AsyncConnection, job_id: int) -> None:
    """Take the job's row lock until the transaction ends: its writers take turns on it."""
    await conn.execute(select(job.c.id).where(job.c.id == job_id).with_for_update())


async def lock_due_retries(conn: AsyncConnection, now: datetime, limit: int) -> Sequence[Row[Any]]:
    """Up to `limit` waiting jobs whose retry is due, the earliest first, locked (those another
    transaction holds are skipped)."""
    return (await conn.execute(
        select(job.c.id).where(job.c.retry_at <= now, job.c.status == STATUS_WAITING)
        .order_by(job.c.retry_at).limit(limit).with_for_update(skip_locked=True))).all()


async def lock_jobs_of_dead_workers(conn: AsyncConnection, now: datetime, missed_beats: float,
                                    grace_s: float) -> Sequence[Any]:
    """Running jobs whose worker stopped or missed `missed_beats` heartbeats (plus `grace_s`),
    with that worker, the jobs' rows locked (those another transaction holds are skipped)."""
    return (await conn.execute(
        select(job.c.id, job.c.attempt, worker.c.worker_id, worker.c.host, worker.c.pid,
               worker.c.last_seen_at, worker.c.stopped_at)
        .select_from(job.join(worker, worker.c.worker_id == job.c.worker_id))
        .where(job.c.status == STATUS_RUNNING)
        .where((worker.c.stopped_at.is_not(None))
               | (worker.c.last_seen_at < literal(now, DateTime(timezone=True))
                  - func.make_interval(0, 0, 0, 0, 0, 0,
                                       worker.c.interval_s * missed_beats + grace_s)))
        .with_for_update(of=job, skip_locked=True))).all()


async def record_worker_outcome(conn: AsyncConnection, worker_id: str, outcome: str) -> None:
    """Count the worker's finished job as succeeded or failed; it holds no job any more."""
    counter = worker.c.succeeded if outcome == "succeeded" else worker.c.failed
    await conn.execute(update(worker).where(worker.c.worker_id == worker_id)
                       .values({counter: counter + 1, "job_id": None}))


async def record_worker_outcomes(conn: AsyncConnection, worker_id: str, *, succeeded: int,
                                 failed: int) -> None:
    """`record_worker_outcome` for several finished jobs of one worker at once."""
    await conn.execute(update(worker).where(worker.c.worker_id == worker_id).values(
        succeeded=worker.c.succeeded + succeeded, failed=worker.c.failed + failed, job_id=None))


async def touch_worker(conn: AsyncConnection, ref: WorkerRef, at: datetime, *,
                       job_id: int | None, interval_s: float | None = None) -> None:
    """Record the worker as seen at `at` (a report older than the last one changes nothing)."""
    values = {"service": ref.service, "queue": ref.queue, "host": ref.host, "pid": ref.pid,
              "user": ref.user, "job_id": job_id, "last_seen_at": at}
    if interval_s is not None:
        values["interval_s"] = interval_s
    stmt = pg_insert(worker).values(worker_id=ref.worker_id, started_at=at, **values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[worker.c.worker_id], set_=values,
        where=worker.c.last_seen_at <= stmt.excluded.last_seen_at))


# The workers of a run of claims seen (as `touch_worker` does, one row each) and the answers to
# those claims queued in the outbox (outbox.INSERT_ROWS_SQL): one statement, one round trip.
_TOUCH_WORKERS_AND_ENQUEUE = text(f"""
    WITH touched AS (
        INSERT INTO worker (worker_id, service, queue, host, pid, "user", job_id, last_seen_at,
                            started_at)
        SELECT w.worker_id, w.service, w.queue, w.host, w.pid, w."user", w.job_id,
               w.last_seen_at, w.last_seen_at
        FROM jsonb_to_recordset(CAST(:workers AS jsonb)) AS w(
            worker_id text, service text, queue text, host text, pid int, "user" text,
            job_id bigint, last_seen_at timestamptz)
        ON CONFLICT (worker_id) DO UPDATE SET
            service = EXCLUDED.service, queue = EXCLUDED.queue, host = EXCLUDED.host,
            pid = EXCLUDED.pid, "user" = EXCLUDED."user", job_id = EXCLUDED.job_id,
            last_seen_at = EXCLUDED.last_seen_at
        WHERE worker.last_seen_at <= EXCLUDED.last_seen_at
    ) {outbox.INSERT_ROWS_SQL}
""")


async def touch_workers_and_enqueue(conn: AsyncConnection,
                                    seen: Sequence[tuple[WorkerRef, datetime, int | None]],
                                    messages: Sequence[OutgoingMessage]) -> None:
    """`touch_worker` for each of `seen` (a worker once: its latest report) and
    `enqueue_messages(messages)`, in one statement."""
    if not messages:
        for ref, at, job_id in seen:
            await touch_worker(conn, ref, at, job_id=job_id)
        return
    workers = [{"worker_id": ref.worker_id, "service": ref.service, "queue": ref.queue,
                "host": ref.host, "pid": ref.pid, "user": ref.user, "job_id": job_id,
                "last_seen_at": at.isoformat()} for ref, at, job_id in seen]
    result = await conn.execute(_TOUCH_WORKERS_AND_ENQUEUE, {
        "workers": orjson.dumps(workers).decode(), "messages": outbox.messages_json(messages)})
    outbox.note_written(row[0] for row in result)


async def mark_worker_stopped(conn: AsyncConnection, worker_id: str, at: datetime,
                              reason: str) -> None:
    await conn.execute(update(worker).where(worker.c.worker_id == worker_id)
                       .values(stopped_at=at, stop_reason=reason))


async def record_scheduler_beat(conn: AsyncConnection, scheduler_id: str, *,
                                started_at: datetime, host: str, pid: int, interval_s: float,
                                at: datetime) -> None:
    """Record the scheduler as alive at `at` (its own row, one statement)."""
    values = {"host": host, "pid": pid, "interval_s": interval_s, "last_seen_at": at,
              "stopped_at": None}
    stmt = pg_insert(scheduler).values(scheduler_id=scheduler_id, started_at=started_at, **values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[scheduler.c.scheduler_id], set_=values))


async def record_scheduler_stop(conn: AsyncConnection, scheduler_id: str, at: datetime) -> None:
    await conn.execute(update(scheduler).where(scheduler.c.scheduler_id == scheduler_id)
                       .values(stopped_at=at))


# ---- tasks ------------------------------------------------------------------------------------

TASK_NAMESPACE = uuid.UUID("0d7b7c1e-3f53-4b8e-8b8e-6a1c2f4f9e21")


def task_stream(task_id: int) -> str:
    return str(uuid.uuid5(TASK_NAMESPACE, f"task:{task_id}"))


async def load_task(conn: AsyncConnection, task_id: int, *,
                    lock: bool = False) -> tuple[TaskState, int] | None:
    stmt = select(task.c.state, task.c.version).where(task.c.id == task_id)
    row = (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
    return None if row is None else (TaskState.model_validate(row.state), row.version)


async def save_task(conn: AsyncConnection, state: TaskState, version: int,
                    events: list[DomainEvent], actor: Actor, **columns: Any) -> list[Envelope]:
    """Append to the task's stream and upsert its read-model row: one transaction (the
    caller's)."""
    envs = await store.append(conn, stream_id=task_stream(state.id), stream_type="task",
                              expected_version=version, events=events, actor=actor)
    values = {"version": version + len(events), "state": state.model_dump(mode="json"),
              "type": state.type, "next_execution_at": state.next_execution_at,
              "paused": state.paused, **columns}
    stmt = pg_insert(task).values(id=state.id, stream_id=task_stream(state.id), **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[task.c.id], set_=values))
    return envs


async def claim_tick(conn: AsyncConnection, task_id: int, due_at: datetime, now: datetime,
                     scheduler_id: str) -> bool:
    """Claim the run of `task_id` due at `due_at`; False when another scheduler already has."""
    claimed = (await conn.execute(pg_insert(task_tick).values(
        task_id=task_id, due_at=due_at, claimed_by=scheduler_id, claimed_at=now,
        started_at=now, outcome="claimed").on_conflict_do_nothing()
        .returning(task_tick.c.task_id))).first()
    return claimed is not None


async def record_tick_outcome(conn: AsyncConnection, task_id: int, due_at: datetime,
                              outcome: str) -> None:
    await conn.execute(update(task_tick).where(task_tick.c.task_id == task_id,
                                               task_tick.c.due_at == due_at)
                       .values(outcome=outcome))


async def lock_task_seeding(conn: AsyncConnection) -> None:
    """Seeders take turns until the transaction ends (two consumers starting at once)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('jobs.seed_tasks'))"))
