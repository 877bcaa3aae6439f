"""Routes of the jobs service: MISP's job, task and worker paths, and under `/api/v1/jobs` what
MISP lacks (enqueue, view with attempts, cancel, re-run, the dead set, task pause and trigger)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from jobs.adapters import queries
from jobs.handlers import jobs as commands
from jobs.handlers import tasks as task_commands
from misp_contracts.events.jobs import (
    JOB_TYPES,
    QUEUES,
    STATUS_FAILED,
    STATUS_NAMES,
)
from misp_contracts.numbers import whole_number
from misp_platform.app import EngineDep
from misp_platform.auth import SiteAdmin
from misp_platform.misp import (
    BadRequest,
    MispId,
    NamedParams,
    NotFound,
    ValidationFailed,
    as_misp,
    misp_record,
    read_body,
    render_value,
    success,
)
from misp_platform.misp.errors import request_url
from misp_platform.misp.paging import Paging, paging

misp = APIRouter(tags=["jobs"])
PURGE_SESSIONS_JOB = "purge_expired_sessions"
router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
PAGE = 20  # MISP's job index pages by 20 when the client names no limit
FORGET_AFTER = timedelta(hours=1)
# A due task is ticked within the scheduler's poll (0.2 s): one a minute late is not being ticked.
OVERDUE_AFTER = timedelta(minutes=1)
GRACE_S = commands.HEARTBEAT_GRACE_S


def _job_fields(r: Any) -> dict[str, Any]:
    return {
        "id": r.id, "worker": r.queue, "job_type": r.job_type, "job_input": r.job_input,
        "status": r.status, "retries": r.retries, "message": r.message, "progress": r.progress,
        "org_id": r.org_id, "process_id": r.process_id or "", "date_created": r.date_created,
        "date_modified": r.date_modified,
        "job_status": STATUS_NAMES.get(r.status, "Unknown"),
        "failed": r.status == STATUS_FAILED, "worker_status": r.worker_alive,
    }


def _org(r: Any) -> dict[str, Any]:
    return {"id": r.org_id, "name": r.org_name or "", "uuid": r.org_uuid or ""}


async def diagnose_workers(app: Any) -> dict[str, Any]:
    """Workers alive per queue; degraded when a queue holds waiting jobs and no live worker."""
    now = datetime.now(UTC)
    async with app.state.engine.connect() as conn:
        alive = await queries.alive_workers_per_queue(conn, now, GRACE_S)
        waiting = await queries.waiting_jobs_per_queue(conn)
    starving = sorted(q for q, n in waiting.items() if n and not alive.get(q))
    if starving:
        raise RuntimeError(f"jobs wait in {', '.join(starving)} and no worker is alive there "
                           f"(alive: {alive or 'none'})")
    return {"alive_workers": alive, "waiting_jobs": waiting}


async def diagnose_schedulers(app: Any) -> dict[str, Any]:
    """Schedulers alive and ticking. Degraded when none is alive (no task ticks, no retry is
    dispatched and no dead worker's job is failed over until one runs again), and when a task is
    overdue although one is (alive but failing its rounds: its log says why)."""
    now = datetime.now(UTC)
    async with app.state.engine.connect() as conn:
        schedulers = await _schedulers(conn, now)
        overdue = await queries.overdue_tasks(conn, now, OVERDUE_AFTER)
    alive = sum(1 for w in schedulers["workers"] if w["alive"])
    if not alive:
        raise RuntimeError("no scheduler is alive: scheduled tasks, retries and the dead-worker "
                           "watchdog are stopped (`python -m jobs scheduler`)")
    if overdue:
        raise RuntimeError(
            f"{len(overdue)} task(s) overdue although {alive} scheduler(s) are alive (the "
            f"schedulers' logs say why): "
            + ", ".join(f"{r.id} since {r.next_execution_at:%Y-%m-%d %H:%M:%S} UTC"
                        for r in overdue[:10]))
    return {"alive_schedulers": alive}


@misp.get("/jobs/index")
@misp.get("/jobs/index/{queue}")
async def index(request: Request, _: SiteAdmin, engine: EngineDep, named: NamedParams,
                queue: str | None = None) -> list[dict[str, Any]]:
    if queue is not None and queue not in QUEUES:
        raise NotFound(f"Invalid queue: {queue}")
    page = paging(named, request.query_params, default_limit=PAGE)
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        rows = await queries.job_page(conn, now, GRACE_S, queue=queue, offset=page.offset,
                                      limit=page.limit)
    return [misp_record("Job", _job_fields(r), Org=_org(r)) for r in rows]


@misp.get("/jobs/getProgress/{key}")
async def get_progress(_: SiteAdmin, engine: EngineDep, key: str) -> dict[str, str]:
    if (job_id := whole_number(key)) is not None:
        selector: dict[str, Any] = {"job_id": job_id}
    elif key in JOB_TYPES:
        selector = {"job_type": key}
    else:
        raise NotFound("Invalid job")
    async with engine.connect() as conn:
        row = await queries.job_progress(conn, **selector)
    # MISP answers 0% for a job it does not know.
    return {"progress": f"{row.progress if row else 0}%"}


async def _view(engine: Any, job_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        found = await queries.job_with_attempts(conn, now, GRACE_S, job_id)
    if found is None:
        raise NotFound(f"Invalid job: {job_id}")
    row, attempts = found
    record = misp_record("Job", {**_job_fields(row), "attempt": row.attempt,
                                 "max_attempts": row.max_attempts, "dead": row.dead,
                                 "cancelled": row.cancelled, "retry_at": row.retry_at,
                                 "task_id": row.task_id}, Org=_org(row))
    record["JobAttempt"] = [render_value(dict(a._mapping)) for a in attempts]
    return record


@router.post("/jobs")
async def add_job(principal: SiteAdmin, engine: EngineDep, request: Request) -> dict[str, Any]:
    body = await read_body(request, "Job")
    url = request_url(request)
    job_type = body.get("job_type")
    if not isinstance(job_type, str):
        raise ValidationFailed("add", "Job", url, {"job_type": ["A job type is required"]})
    with as_misp(request, "add", "Job"):
        async with engine.begin() as conn:
            job_id = await commands.enqueue(
                conn, job_type=job_type, queue=body.get("worker") or body.get("queue"),
                actor=principal.actor(), job_input=str(body.get("job_input", "")),
                data=body.get("data") if isinstance(body.get("data"), dict) else None,
                org_id=principal.org_id)
    return await _view(engine, job_id)


@router.get("/jobs/{job_id}")
async def view_job(_: SiteAdmin, engine: EngineDep, job_id: MispId) -> dict[str, Any]:
    return await _view(engine, job_id)


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(principal: SiteAdmin, engine: EngineDep, request: Request,
                     job_id: MispId) -> dict[str, Any]:
    with as_misp(request, "cancel", "Job"):
        async with engine.begin() as conn:
            await commands.cancel(conn, job_id, principal.actor())
    return success("cancel", "Job", request_url(request), id=job_id, message="Job cancelled.")


@router.post("/jobs/{job_id}/rerun")
async def rerun_job(principal: SiteAdmin, engine: EngineDep, request: Request,
                    job_id: MispId) -> dict[str, Any]:
    with as_misp(request, "rerun", "Job"):
        async with engine.begin() as conn:
            await commands.rerun(conn, job_id, principal.actor())
    return success("rerun", "Job", request_url(request), id=job_id, message="Job re-run queued.")


@router.get("/dead")
async def dead_set(_: SiteAdmin, engine: EngineDep) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        rows = await queries.dead_jobs(conn, now, GRACE_S, limit=500)
    return [misp_record("Job", _job_fields(r), Org=_org(r)) for r in rows]


# ---- tasks -------------------------------------------------------------------------------------


def _task_fields(r: Any) -> dict[str, Any]:
    s = r.state
    nxt = r.next_execution_at
    return {
        "id": r.id, "type": r.type, "timer": int(s["timer"]) if float(s["timer"]).is_integer()
        else s["timer"], "scheduled_time": s["scheduled_time"], "process_id": "",
        "description": s.get("description") or JOB_TYPES[r.type].description
        if r.type in JOB_TYPES else s.get("description", ""),
        "next_execution_time": int(nxt.timestamp()) if nxt else 0, "message": r.message,
        "timezone": s["timezone"], "overlap": s["overlap"], "catch_up": s["catch_up"],
        "catch_up_max": s["catch_up_max"], "paused": r.paused, "last_outcome": r.last_outcome,
        "last_job_id": r.last_job_id, "last_run_at": r.last_run_at,
    }


@misp.get("/tasks/index")
async def tasks_index(_: SiteAdmin, engine: EngineDep, page: Paging) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await queries.tasks(conn, offset=page.offset, limit=page.limit)
    return [misp_record("Task", _task_fields(r)) for r in rows]


TASK_FIELDS = ("type", "timer", "scheduled_time", "timezone", "description", "overlap",
               "catch_up", "catch_up_max", "queue", "interval_s")


def _task_input(raw: dict[str, Any], url: str) -> tuple[dict[str, Any], date | None]:
    fields = {k: raw[k] for k in TASK_FIELDS if k in raw}
    if "timer" in fields:
        try:
            fields["timer"] = float(fields["timer"])
        except (TypeError, ValueError):
            raise ValidationFailed("set", "Task", url, {
                "timer": ["The frequency must be a number of hours"]}) from None
    day = raw.get("next_execution_time")
    parsed: date | None = None
    if day:
        try:
            parsed = date.fromisoformat(str(day))
        except ValueError:
            raise ValidationFailed("set", "Task", url, {"next_execution_time": [
                "Invalid date: use YYYY-MM-DD"]}) from None
    return fields, parsed


@misp.post("/tasks/setTask")
async def set_task(principal: SiteAdmin, engine: EngineDep, request: Request) -> dict[str, Any]:
    """`{"Task": {"<id>": {timer, scheduled_time, next_execution_time}}}`, all or nothing."""
    body = await read_body(request, "Task")
    url = request_url(request)
    if not body or not all(isinstance(v, dict) and whole_number(k) is not None
                            for k, v in body.items()):
        raise BadRequest("Expected {\"Task\": {\"<id>\": {\"timer\": .., \"scheduled_time\": ..}}}")
    now = datetime.now(UTC)
    with as_misp(request, "set", "Task"):
        async with engine.begin() as conn:
            for key, raw in body.items():
                fields, day = _task_input(raw, url)
                await task_commands.set_task(conn, int(key), fields, principal.actor(), now, day)
    return success("set", "Task", url, message="Task updated.")


@router.post("/tasks")
async def add_task(principal: SiteAdmin, engine: EngineDep, request: Request) -> dict[str, Any]:
    body = await read_body(request, "Task")
    url = request_url(request)
    fields, day = _task_input(body, url)
    with as_misp(request, "add", "Task"):
        async with engine.begin() as conn:
            state = await task_commands.set_task(conn, None, fields, principal.actor(),
                                                 datetime.now(UTC), day)
    async with engine.connect() as conn:
        row = await queries.task_row(conn, state.id)
    return misp_record("Task", _task_fields(row))


@router.post("/tasks/{task_id}/{action}")
async def task_action(principal: SiteAdmin, engine: EngineDep, request: Request, task_id: MispId,
                      action: str) -> dict[str, Any]:
    url = request_url(request)
    if action not in ("pause", "resume", "trigger"):
        raise NotFound(f"Unknown task action: {action}")
    with as_misp(request, action, "Task"):
        async with engine.begin() as conn:
            if action == "trigger":
                job_id = await task_commands.trigger(conn, task_id, principal.actor(),
                                                     datetime.now(UTC))
                return success("trigger", "Task", url, id=job_id,
                               message=f"Task triggered: job {job_id} queued.")
            await task_commands.pause(conn, task_id, action == "pause", principal.actor())
    return success(action, "Task", url, id=task_id, message=f"Task {action}d.")


# ---- workers -----------------------------------------------------------------------------------


@misp.get("/servers/getWorkers")
async def get_workers(_: SiteAdmin, engine: EngineDep) -> dict[str, Any]:
    now = datetime.now(UTC)
    async with engine.connect() as conn:
        # Stopped workers, and dead ones not seen for an hour, are history, not workers.
        rows = await queries.live_workers(conn, now, GRACE_S, FORGET_AFTER)
        counts = await queries.waiting_jobs_per_queue(conn)
        schedulers = await _schedulers(conn, now)
    out: dict[str, Any] = {q: _queue_entry([_worker_entry(
        w, user=w.user, worker_id=w.worker_id, service=w.service, job_id=w.job_id)
        for w in rows if w.queue == q], counts.get(q, 0)) for q in QUEUES}
    out["scheduler"] = schedulers
    out["proc_accessible"] = False
    out["controls"] = 1
    return out


def _worker_entry(row: Any, **fields: Any) -> dict[str, Any]:
    """One process of a `getWorkers` queue, in MISP's fields and ours."""
    return {"pid": row.pid, "alive": bool(row.alive), "correct_user": True,
            "ok": bool(row.alive), "host": row.host, "last_seen": row.last_seen_at, **fields}


def _queue_entry(workers: list[dict[str, Any]], job_count: int) -> dict[str, Any]:
    return {"ok": any(w["alive"] for w in workers), "workers": render_value(workers),
            "jobCount": job_count}


async def _schedulers(conn: Any, now: datetime) -> dict[str, Any]:
    """MISP's `scheduler` queue: the scheduler processes, alive when they beat on time."""
    rows = await queries.live_schedulers(conn, now, GRACE_S, FORGET_AFTER)
    return _queue_entry([_worker_entry(r, user="", worker_id=r.scheduler_id, service="jobs",
                                       job_id=None) for r in rows], 0)


async def _stop(engine: Any, principal: Any, **selector: Any) -> None:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await commands.stop_workers(conn, principal.actor(), now, **selector)


@misp.post("/servers/startWorker/{queue}")
async def start_worker(_: SiteAdmin, request: Request, queue: str) -> dict[str, Any]:
    if queue not in (*QUEUES, "scheduler"):
        raise NotFound(f"Invalid queue: {queue}")
    program = "python -m jobs scheduler" if queue == "scheduler" else \
        f"python -m <service> worker {queue}"
    # Processes are started by the supervisor or the orchestrator (scale the worker program).
    return success("start", "Worker", request_url(request),
                   message=f"Worker start for {queue} requested: workers are started by the "
                           f"process supervisor (`{program}`).")


@misp.post("/servers/purgeSessions")
async def purge_sessions(principal: SiteAdmin, engine: EngineDep,
                         request: Request) -> dict[str, Any]:
    """MISP's "purge expired sessions" of the diagnostics page, as a job: identity's
    `purge_expired_sessions` (the sessions are identity's), queued here like any job."""
    with as_misp(request, "purge", "Session"):
        async with engine.begin() as conn:
            job_id = await commands.enqueue(
                conn, job_type=PURGE_SESSIONS_JOB, queue=None, actor=principal.actor(),
                org_id=principal.org_id)
    return success("purge", "Session", request_url(request), id=job_id,
                   message=f"Expired sessions are being purged (job {job_id}).")


# A process id as the worker table keeps it (integer): anything else is no worker (404), not
# a number PostgreSQL refuses (500).
Pid = Annotated[int, Path(ge=0, le=2**31 - 1)]


@misp.post("/servers/stopWorker/{pid}")
async def stop_worker(principal: SiteAdmin, engine: EngineDep, request: Request,
                      pid: Pid) -> dict[str, Any]:
    async with engine.connect() as conn:
        known = await queries.running_worker_with_pid(conn, pid)
    if known is None:
        raise NotFound(f"Invalid worker: {pid}")
    await _stop(engine, principal, pid=pid)
    return success("stop", "Worker", request_url(request), message="Worker stopping.")


@misp.post("/servers/restartWorkers")
@misp.post("/servers/killAllWorkers")
async def restart_workers(principal: SiteAdmin, engine: EngineDep,
                          request: Request) -> dict[str, Any]:
    kill = request.url.path.rstrip("/").endswith("killAllWorkers")
    await _stop(engine, principal, cancel_current=kill)
    return success("restart", "Worker", request_url(request),
                   message="Killing workers." if kill else "Restarting workers.")


@misp.post("/servers/restartDeadWorkers")
async def restart_dead_workers(principal: SiteAdmin, engine: EngineDep,
                               request: Request) -> dict[str, Any]:
    async with engine.begin() as conn:
        failed = await commands.fail_jobs_of_dead_workers(conn, datetime.now(UTC))
    return success("restart", "Worker", request_url(request),
                   message=f"Restarting workers. {len(failed)} job(s) of dead workers requeued "
                           "or failed.")


routers = [misp, router]
