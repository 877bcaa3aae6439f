"""What this platform adds for its operator (site admins): the messages it could not deliver
(the relays' parked messages and the consumers' dead-lettered streams, as every service's
diagnostics report them through servers/serverSettings/diagnostics), and the audit log's
verification (the hash chains against the signed checkpoints and their copies on Kafka).

The verification walks the whole log (tens of seconds on a large one, past the console's API
timeout), so the page runs it as the audit's `audit_verify` job (the work of
api/v1/audit/verify, in a worker) and shows the job's progress and verdict.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.gateway import ApiError
from console.pages.common import api, posted_form, records, viewer_of
from console.pages.logs import live_feed, part
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

VERIFY_JOB = "audit_verify"
DB_ONLY = "db-only"  # audit.handlers.jobs.DB_ONLY


def undelivered(report: Any) -> list[dict[str, Any]]:
    """Per service: parked messages (refused by Kafka for good), the outbox backlog and the
    dead-lettered streams, from the diagnostics report."""
    outbox, services = part(report, "outbox"), part(report, "services")
    out = []
    for name in sorted(set(outbox) | set(services)):
        parked, service = part(outbox, name), part(services, name)
        consistency = part(part(service, "checks"), "consistency")
        flagged = consistency.get("flagged_streams")
        out.append({
            "service": name,
            "reachable": service.get("reachable", True),
            "parked_ok": parked.get("ok"),
            "parked": parked.get("parked_messages"),
            "parked_problem": parked.get("error") or parked.get("detail"),
            "backlog": consistency.get("outbox_backlog"),
            "oldest": consistency.get("outbox_oldest"),
            "flagged": [f for f in flagged if isinstance(f, dict)]
            if isinstance(flagged, list) else [],
        })
    return out


@router.get("/console/operator")
async def operator(request: Request) -> Response:
    viewer = await viewer_of(request)
    report = await api(request, viewer, "GET", "/servers/serverSettings/diagnostics")
    return render(request, "operator/index.html", viewer=viewer, services=undelivered(report),
                  title="Undelivered messages")


def job_of(body: Any) -> dict[str, Any] | None:
    if isinstance(body, dict) and isinstance(body.get("Job"), dict):
        return dict(body["Job"])
    return None


@router.get("/console/audit/verify")
async def verify_page(request: Request) -> Response:
    viewer = await viewer_of(request)
    job = None
    raw = request.query_params.get("job", "")
    if raw.isdigit() and len(raw) < 19:
        job = job_of(await api(request, viewer, "GET", f"/api/v1/jobs/jobs/{raw}"))
        if job is not None and job.get("job_type") != VERIFY_JOB:
            raise ApiError(404, "Invalid job.")
        if job is not None and request.query_params.get("fragment") == "1":
            return render(request, "operator/_verify_job.html", viewer=viewer, job=job)
    body = await api(request, viewer, "GET", "/jobs/index/page:1/limit:100")
    recent = [row["Job"] for row in records(body, "Job")
              if row["Job"].get("job_type") == VERIFY_JOB][:10]
    key = await api(request, viewer, "GET", "/api/v1/audit/public-key")
    return render(request, "operator/verify.html", viewer=viewer, job=job, recent=recent,
                  key=key if isinstance(key, dict) else {}, live=live_feed("jobs"),
                  title="Verify the audit log")


@router.post("/console/audit/verify")
async def verify(request: Request) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    job = job_of(await api(request, viewer, "POST", "/api/v1/jobs/jobs", json={
        "job_type": VERIFY_JOB, "job_input": DB_ONLY if form.flag("db_only") else ""}))
    if job is None:
        raise ApiError(502, "The jobs API did not answer a job.")
    return redirect(f"/console/audit/verify?job={int(job['id'])}",
                    flash="The verification is queued.", kind="info")
