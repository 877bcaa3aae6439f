"""Read-model queries behind the job, task and worker endpoints and the diagnostics (reads: the
writes are the store's, store.py)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Row, and_, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.adapters.tables import job, job_attempt, scheduler, task, worker
from misp_contracts.events.jobs import STATUS_RUNNING, STATUS_WAITING
from misp_platform.auth.principals import principal_org


def alive(now: datetime, grace_s: float, table: Any = worker) -> Any:
    """A worker's (or a scheduler's) row is alive: not stopped, and its last beat is within
    three of its intervals (plus a grace)."""
    return (table.c.stopped_at.is_(None)
            & (table.c.last_seen_at >= literal(now, DateTime(timezone=True))
               - func.make_interval(0, 0, 0, 0, 0, 0, table.c.interval_s * 3 + grace_s)))


def _job_query(now: datetime, grace_s: float) -> Any:
    alive_worker = select(func.count()).where(worker.c.queue == job.c.queue,
                                              alive(now, grace_s)).scalar_subquery()
    return (select(job, principal_org.c.name.label("org_name"),
                   principal_org.c.uuid.label("org_uuid"),
                   (alive_worker > 0).label("worker_alive"))
            .select_from(job.outerjoin(principal_org, principal_org.c.org_id == job.c.org_id)))


async def alive_workers_per_queue(conn: AsyncConnection, now: datetime,
                                  grace_s: float) -> dict[str, int]:
    return {r.queue: r.n for r in await conn.execute(
        select(worker.c.queue, func.count().label("n")).where(alive(now, grace_s))
        .group_by(worker.c.queue))}


async def waiting_jobs_per_queue(conn: AsyncConnection) -> dict[str, int]:
    """Waiting jobs per queue (diagnostics, and `getWorkers`' job count)."""
    return {r.queue: r.n for r in await conn.execute(
        select(job.c.queue, func.count().label("n")).where(job.c.status == STATUS_WAITING)
        .group_by(job.c.queue))}


async def overdue_tasks(conn: AsyncConnection, now: datetime,
                        overdue_after: timedelta) -> Sequence[Row[Any, Any]]:
    """Unpaused tasks due more than `overdue_after` ago, the longest overdue first."""
    return (await conn.execute(select(task.c.id, task.c.next_execution_at).where(
        task.c.paused.is_(False), task.c.next_execution_at < now - overdue_after)
        .order_by(task.c.next_execution_at))).all()


async def job_page(conn: AsyncConnection, now: datetime, grace_s: float, *, queue: str | None,
                   offset: int, limit: int) -> Sequence[Row[Any]]:
    """MISP's job index: newest first, with the org and whether the queue has a live worker."""
    stmt = _job_query(now, grace_s).order_by(job.c.id.desc()).limit(limit).offset(offset)
    if queue:
        stmt = stmt.where(job.c.queue == queue)
    return (await conn.execute(stmt)).all()


async def job_progress(conn: AsyncConnection, *, job_id: int | None = None,
                       job_type: str | None = None) -> Row[Any, Any] | None:
    """A job's progress and status: by id, or the newest job of a type."""
    stmt = select(job.c.progress, job.c.status)
    if job_id is not None:
        stmt = stmt.where(job.c.id == job_id)
    else:
        stmt = stmt.where(job.c.job_type == job_type).order_by(job.c.id.desc()).limit(1)
    return (await conn.execute(stmt)).first()


async def job_with_attempts(conn: AsyncConnection, now: datetime, grace_s: float,
                            job_id: int) -> tuple[Row[Any], Sequence[Row[Any]]] | None:
    """The job's row (as in the index) and its attempts in order; None for an unknown job."""
    row = (await conn.execute(_job_query(now, grace_s).where(job.c.id == job_id))).first()
    if row is None:
        return None
    attempts = (await conn.execute(select(job_attempt).where(
        job_attempt.c.job_id == job_id).order_by(job_attempt.c.attempt))).all()
    return row, attempts


async def dead_jobs(conn: AsyncConnection, now: datetime, grace_s: float,
                    limit: int) -> Sequence[Row[Any]]:
    stmt = _job_query(now, grace_s).where(job.c.dead.is_(True)).order_by(job.c.id.desc())
    return (await conn.execute(stmt.limit(limit))).all()


async def tasks(conn: AsyncConnection, *, offset: int = 0,
                limit: int | None = None) -> Sequence[Row[Any]]:
    return (await conn.execute(select(task).order_by(task.c.id).offset(offset).limit(limit))).all()


async def task_row(conn: AsyncConnection, task_id: int) -> Row[Any]:
    return (await conn.execute(select(task).where(task.c.id == task_id))).one()


async def live_workers(conn: AsyncConnection, now: datetime, grace_s: float,
                       forget_after: timedelta) -> Sequence[Row[Any]]:
    """Workers not stopped and seen within `forget_after`, with whether each is alive."""
    return (await conn.execute(select(worker, alive(now, grace_s).label("alive")).where(
        worker.c.stopped_at.is_(None), worker.c.last_seen_at > now - forget_after)
        .order_by(worker.c.started_at))).all()


async def live_schedulers(conn: AsyncConnection, now: datetime, grace_s: float,
                          forget_after: timedelta) -> Sequence[Row[Any]]:
    """Schedulers not stopped and seen within `forget_after`, with whether each is alive."""
    return (await conn.execute(select(scheduler, alive(now, grace_s, scheduler).label("alive"))
                               .where(scheduler.c.stopped_at.is_(None),
                                      scheduler.c.last_seen_at > now - forget_after)
                               .order_by(scheduler.c.started_at))).all()


async def running_worker_with_pid(conn: AsyncConnection, pid: int) -> str | None:
    """The id of a worker with that pid that has not stopped, if any."""
    row = (await conn.execute(select(worker.c.worker_id).where(
        worker.c.pid == pid, worker.c.stopped_at.is_(None)))).first()
    return None if row is None else str(row.worker_id)


async def job_id_for_request(conn: AsyncConnection, request_id: str) -> int | None:
    """The job an `EnqueueJob` request id already queued, if any."""
    row = (await conn.execute(select(job.c.id).where(job.c.request_id == request_id))).first()
    return None if row is None else int(row.id)


async def job_exists(conn: AsyncConnection, job_id: int) -> bool:
    return (await conn.execute(select(job.c.id).where(job.c.id == job_id))).first() is not None


async def waiting_in_queue(conn: AsyncConnection, queue: str) -> list[int]:
    """The ids of the jobs waiting in `queue`, oldest first."""
    return list((await conn.execute(select(job.c.id).where(and_(
        job.c.queue == queue, job.c.status == STATUS_WAITING)).order_by(job.c.id)))
        .scalars().all())


async def active_runs_of_task(conn: AsyncConnection, task_id: int) -> int:
    """The task's jobs still waiting or running."""
    return int((await conn.execute(select(func.count()).select_from(job).where(
        job.c.task_id == task_id, job.c.status.in_([STATUS_WAITING, STATUS_RUNNING])))).scalar()
        or 0)


async def due_tasks(conn: AsyncConnection, now: datetime) -> list[tuple[int, datetime]]:
    """Unpaused tasks due by `now`, as (id, due time), the earliest first."""
    rows = await conn.execute(select(task.c.id, task.c.next_execution_at).where(
        task.c.next_execution_at <= now, task.c.paused.is_(False)).order_by(
        task.c.next_execution_at))
    return [(r.id, r.next_execution_at) for r in rows]


async def workers_by_queue(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Every worker's row, by queue."""
    return (await conn.execute(select(worker).order_by(worker.c.queue))).all()


async def job_counts_per_queue_and_status(conn: AsyncConnection) -> dict[str, dict[int, int]]:
    """`{queue: {status: number of jobs}}` (a status without jobs is absent)."""
    counts: dict[str, dict[int, int]] = {}
    for q, s, n in await conn.execute(select(job.c.queue, job.c.status, func.count())
                                      .group_by(job.c.queue, job.c.status)):
        counts.setdefault(q, {})[s] = n
    return counts


async def job_in_hand(conn: AsyncConnection, worker_id: str) -> int | None:
    """The job granted to the worker and not ended (the first, if it holds several; None:
    none, or no such worker). From the jobs' rows, which the grant writes: the worker's own
    row follows its heartbeats, and a claim now reaches the jobs service ahead of the
    heartbeat sent before it."""
    job_id = (await conn.execute(select(job.c.id).where(
        job.c.worker_id == worker_id, job.c.status == STATUS_RUNNING)
        .order_by(job.c.id).limit(1))).scalar()
    return None if job_id is None else int(job_id)


async def jobs_changed_since(conn: AsyncConnection, since: datetime) -> Sequence[Row[Any]]:
    """The jobs' rows modified at or after `since`, the oldest change first."""
    return (await conn.execute(select(job).where(
        job.c.date_modified >= since).order_by(job.c.date_modified))).all()


async def task_types(conn: AsyncConnection) -> set[str]:
    """The types that have a task."""
    return set((await conn.execute(select(task.c.type))).scalars().all())
