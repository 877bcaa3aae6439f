"""Jobs and scheduled tasks: MISP's jobs/index (with its queue filter, a status filter, progress
bars and live updates), a job's page with its attempts, cancel and re-run, the dead set, and
tasks/index with each task's schedule. Site admins only: the API refuses everyone else."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import Form
from console.gateway import ApiError
from console.pages.common import api, page_number, posted_form, records, viewer_of
from console.viewer import Viewer
from console.web import query_string, redirect, render, safe_target

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
# MISP's queues (BackgroundJobsTool::VALID_QUEUES but the scheduler's) and job statuses.
QUEUES = ("default", "prio", "email", "cache", "update")
STATUSES = ("Waiting", "Running", "Failed", "Completed")
# A job the API can still cancel: created, waiting or running.
OPEN_STATUSES = (0, 1, 2)
TASK_ACTIONS = ("pause", "resume", "trigger")


def progress_of(job: dict[str, Any]) -> int:
    """A job's progress in percent, 0..100 (a completed job is done whatever it reported)."""
    if str(job.get("job_status")) == "Completed":
        return 100
    try:
        return max(0, min(100, int(job.get("progress") or 0)))
    except (TypeError, ValueError):
        return 0


def is_open(job: dict[str, Any]) -> bool:
    try:
        status = int(job.get("status") or 0)
    except (TypeError, ValueError):
        return False
    return status in OPEN_STATUSES and not job.get("cancelled") and not job.get("dead")


def job_rows(body: Any) -> list[dict[str, Any]]:
    """The API's `[{"Job": {...}, "Org": {...}}]` with what the table shows."""
    rows = []
    for record in records(body, "Job"):
        job = dict(record["Job"])
        job["percent"] = progress_of(job)
        job["open"] = is_open(job)
        rows.append({"Job": job, "Org": record.get("Org") or {}})
    return rows


def with_status(rows: list[dict[str, Any]], status: str) -> list[dict[str, Any]]:
    return [r for r in rows if not status or r["Job"].get("job_status") == status]


def _filters(request: Request) -> dict[str, str]:
    queue = request.query_params.get("queue", "")
    status = request.query_params.get("status", "")
    return {"queue": queue if queue in QUEUES else "",
            "status": status if status in STATUSES else ""}


@router.get("/jobs/index")
async def index(request: Request) -> Response:
    """The job list; `?fragment=1` renders its table only (what a live update fetches)."""
    viewer = await viewer_of(request)
    filters = _filters(request)
    page = page_number(request)
    queue = f"/{filters['queue']}" if filters["queue"] else ""
    body = await api(request, viewer, "GET",
                     f"/jobs/index{queue}/page:{page}/limit:{PAGE_SIZE}")
    fetched = job_rows(body)
    jobs = with_status(fetched, filters["status"])
    here = "/jobs/index" + query_string({**filters, "page": page if page > 1 else ""})
    context: dict[str, Any] = {"jobs": jobs, "filters": filters, "page": page, "here": here,
               "has_next": len(fetched) == PAGE_SIZE, "queues": QUEUES, "statuses": STATUSES,
               "refresh": "/jobs/index" + query_string(
                   {**filters, "page": page if page > 1 else "", "fragment": 1})}
    template = "jobs/_table.html" if request.query_params.get("fragment") else "jobs/index.html"
    return render(request, template, viewer=viewer, **context)


@router.get("/jobs/dead")
async def dead(request: Request) -> Response:
    """The operator's dead set: jobs that used up their attempts."""
    viewer = await viewer_of(request)
    jobs = job_rows(await api(request, viewer, "GET", "/api/v1/jobs/dead"))
    return render(request, "jobs/dead.html", viewer=viewer, jobs=jobs, here="/jobs/dead")


@router.get("/jobs/view/{job_id}")
async def view(job_id: str, request: Request) -> Response:
    viewer = await viewer_of(request)
    body = await api(request, viewer, "GET", f"/api/v1/jobs/jobs/{quote(job_id, safe='')}")
    job = dict(body.get("Job") or {}) if isinstance(body, dict) else {}
    job["percent"] = progress_of(job)
    job["open"] = is_open(job)
    return render(request, "jobs/view.html", viewer=viewer, job=job,
                  org=(body.get("Org") or {}) if isinstance(body, dict) else {},
                  attempts=[a for a in (body.get("JobAttempt") or [])
                            if isinstance(a, dict)] if isinstance(body, dict) else [],
                  here=f"/jobs/view/{job.get('id', '')}")


async def api_action(request: Request, path: str, back: str, *,
                     form: Form | None = None) -> Response:
    """A button's POST: the call to the API as the viewer, then back to `back` with the API's
    message (its refusal as an error message)."""
    viewer = await viewer_of(request)
    if form is None:
        await posted_form(request, viewer)
    try:
        answer = await api(request, viewer, "POST", path)
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        return redirect(back, flash=exc.message, kind="error")
    message = answer.get("message") if isinstance(answer, dict) else None
    return redirect(back, flash=str(message or "Done."))


async def _job_action(request: Request, job_id: str, action: str) -> Response:
    form = await posted_form(request, await viewer_of(request))
    return await api_action(request, f"/api/v1/jobs/jobs/{quote(job_id, safe='')}/{action}",
                            safe_target(form.get("next"), "/jobs/index"), form=form)


@router.post("/jobs/cancel/{job_id}")
async def cancel(job_id: str, request: Request) -> Response:
    return await _job_action(request, job_id, "cancel")


@router.post("/jobs/rerun/{job_id}")
async def rerun(job_id: str, request: Request) -> Response:
    return await _job_action(request, job_id, "rerun")


# ---- scheduled tasks ---------------------------------------------------------------------------


def task_input(form: Form) -> dict[str, Any]:
    """setTask's fields of one task from its row's form (the next day only when given)."""
    fields: dict[str, Any] = {"timer": form.text("timer"),
                              "scheduled_time": form.text("scheduled_time")}
    if form.text("next_execution_time"):
        fields["next_execution_time"] = form.text("next_execution_time")
    return fields


async def _tasks_page(request: Request, viewer: Viewer, *, errors: dict[str, str] | None = None,
                      failed: str = "", values: dict[str, str] | None = None,
                      status_code: int = 200) -> Response:
    tasks = [dict(r["Task"]) for r in records(
        await api(request, viewer, "GET", "/tasks/index"), "Task")]
    return render(request, "jobs/tasks.html", viewer=viewer, tasks=tasks, errors=errors or {},
                  failed=failed, values=values or {}, status_code=status_code)


@router.get("/tasks/index")
@router.get("/tasks")
async def tasks(request: Request) -> Response:
    viewer = await viewer_of(request)
    return await _tasks_page(request, viewer)


@router.post("/tasks/setTask")
async def set_task(request: Request) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    task_id = form.text("id")
    fields = task_input(form)
    try:
        answer = await api(request, viewer, "POST", "/tasks/setTask",
                           json={"Task": {task_id: fields}})
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        errors = exc.field_errors or {"timer": exc.message}
        return await _tasks_page(request, viewer, errors=errors, failed=task_id,
                                 values={k: str(v) for k, v in fields.items()},
                                 status_code=exc.status)
    message = answer.get("message") if isinstance(answer, dict) else None
    return redirect(f"/tasks/index#t-{task_id}", flash=str(message or "Task updated."))


@router.post("/tasks/{action}/{task_id}")
async def task_action(action: str, task_id: str, request: Request) -> Response:
    if action not in TASK_ACTIONS:
        return redirect("/tasks/index", flash=f"Unknown task action: {action}", kind="error")
    return await api_action(request, f"/api/v1/jobs/tasks/{quote(task_id, safe='')}/{action}",
                            f"/tasks/index#t-{quote(task_id, safe='')}")
