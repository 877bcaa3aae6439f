"""Server settings: MISP's settings and diagnostics tool (servers/serverSettings[/<tab>]), with
its tabs, inline edits (servers/serverSettingsEdit/<name>), the Diagnostics and Workers tabs and
the report download. Site admins only: the API refuses everyone else."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.gateway import ApiError
from console.pages.common import api, posted_form, viewer_of
from console.pages.jobs import api_action
from console.viewer import Viewer
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

LEVELS = {0: "critical", 1: "recommended", 2: "optional", 3: "deprecated"}
BOOLEAN_CHOICES = (("true", "true"), ("false", "false"))
REDACTED = "*****"
_TAB = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
WORKERS = "/servers/serverSettings/workers"
# getWorkers' keys that are no queue
NOT_QUEUES = ("proc_accessible", "controls")


def level_name(level: Any) -> str:
    try:
        return LEVELS.get(int(level), "optional")
    except (TypeError, ValueError):
        return "optional"


def shown(value: Any) -> str:
    """A setting's value as a form field holds it (booleans as MISP's true/false)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def posted_value(setting_type: str, raw: str, *, redacted: bool = False) -> Any:
    """The JSON value of an edit: a boolean setting's true/false as a JSON boolean (MISP casts a
    string, so "false" would be true), a hidden one left blank as MISP's mask (the API answers
    "No change."), anything else the text as typed: the API validates it."""
    if setting_type == "boolean" and raw.strip().lower() in ("true", "false"):
        return raw.strip().lower() == "true"
    if redacted and raw == "":
        return REDACTED
    return raw


def setting_row(row: dict[str, Any]) -> dict[str, Any]:
    """One finalSettings item, with what the page shows: its severity, its control."""
    options = row.get("options")
    if row.get("type") == "boolean":
        control, choices = "select", list(BOOLEAN_CHOICES)
    elif isinstance(options, dict) and options:
        control, choices = "select", [(str(k), str(v)) for k, v in options.items()]
    elif row.get("redacted"):
        control, choices = "password", []
    else:
        control, choices = "text", []
    if control == "select" and row.get("null") and not any(k == "" for k, _ in choices):
        choices.insert(0, ("", "(not set)"))
    value = "" if control == "password" else shown(row.get("value"))
    return {**row, "severity": level_name(row.get("level")), "control": control,
            "choices": choices, "shown": value,
            "editable": not row.get("cli_only"),
            # false: it drives a feature that lives outside this product (stored all the same)
            "used_here": row.get("used_here") is not False}


def tab_figures(tabs: Any) -> list[dict[str, Any]]:
    """The tabs' names and problem figures (MISP's number next to each tab, coloured by the worst
    severity among its problems)."""
    out = []
    for name, figures in (tabs or {}).items() if isinstance(tabs, dict) else ():
        data = figures if isinstance(figures, dict) else {}
        errors = int(data.get("errors") or 0)
        out.append({"name": str(name), "count": int(data.get("count") or 0), "errors": errors,
                    "severity": level_name(data.get("severity")) if errors else "ok"})
    return out


def severity_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """A tab's problems per severity."""
    counts = {name: 0 for name in ("critical", "recommended", "optional")}
    for row in rows:
        if row.get("error") and row["severity"] in counts:
            counts[row["severity"]] += 1
    return counts


def queues_of(workers: Any) -> list[dict[str, Any]]:
    """getWorkers' queues (the scheduler's last), each with its processes."""
    if not isinstance(workers, dict):
        return []
    queues = []
    for name, entry in workers.items():
        if name in NOT_QUEUES or not isinstance(entry, dict):
            continue
        queues.append({"name": str(name), "ok": bool(entry.get("ok")),
                       "job_count": entry.get("jobCount", 0),
                       "workers": [w for w in entry.get("workers") or [] if isinstance(w, dict)]})
    return sorted(queues, key=lambda q: (q["name"] == "scheduler", q["name"]))


async def _tab_page(request: Request, viewer: Viewer, tab: str, *,
                    errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                    status_code: int = 200) -> Response:
    body = await api(request, viewer, "GET", f"/servers/serverSettings/{quote(tab, safe='')}")
    rows = [setting_row(r) for r in body.get("finalSettings") or [] if isinstance(r, dict)]
    for row in rows:
        if values and row["setting"] in values:
            row["shown"] = values[row["setting"]]
    return render(request, "settings/tab.html", viewer=viewer, status_code=status_code,
                  tab=body.get("tab", tab), tabs=tab_figures(body.get("tabs")), rows=rows,
                  counts=severity_counts(rows), errors=errors or {},
                  not_used=sum(1 for row in rows if not row["used_here"]))


@router.get("/servers/serverSettings")
async def overview(request: Request) -> Response:
    viewer = await viewer_of(request)
    # a tab's answer holds every tab's figures and the overall issues, without the diagnostics
    body = await api(request, viewer, "GET", "/servers/serverSettings/MISP")
    issues = body.get("issues") if isinstance(body.get("issues"), dict) else {}
    levels = [{"severity": level_name(level), "count": int((item or {}).get("value") or 0),
               "description": (item or {}).get("description", "")}
              for level, item in sorted((issues.get("errors") or {}).items())]
    return render(request, "settings/overview.html", viewer=viewer,
                  tabs=tab_figures(body.get("tabs")), levels=levels,
                  deprecated=issues.get("deprecated", 0))


@router.get("/servers/serverSettings/diagnostics")
async def diagnostics(request: Request) -> Response:
    viewer = await viewer_of(request)
    report, body = await asyncio.gather(
        api(request, viewer, "GET", "/servers/serverSettings/diagnostics"),
        api(request, viewer, "GET", "/servers/serverSettings/MISP"))
    report = report if isinstance(report, dict) else {}
    known = ("version", "services", "dbSchemaDiagnostics", "dbDiagnostics", "kafka", "workers",
             "sessionCount", "sessionStatus")
    return render(request, "settings/diagnostics.html", viewer=viewer, report=report,
                  tabs=tab_figures(body.get("tabs")), services=report.get("services") or {},
                  others={k: v for k, v in report.items() if k not in known})


@router.get("/servers/serverSettings/download")
async def download(request: Request) -> Response:
    """MISP's "Download report": the API's whole report as a JSON file."""
    viewer = await viewer_of(request)
    report = await api(request, viewer, "GET", "/servers/serverSettings/download")
    return Response(json.dumps(report, indent=2, sort_keys=True), media_type="application/json",
                    headers={"Content-Disposition": 'attachment; filename="MISP.report.json"'})


@router.get("/servers/serverSettings/workers")
async def workers(request: Request) -> Response:
    viewer = await viewer_of(request)
    answer, body = await asyncio.gather(
        api(request, viewer, "GET", "/servers/getWorkers"),
        api(request, viewer, "GET", "/servers/serverSettings/MISP"))
    message = None if isinstance(answer, dict) else " ".join(str(m) for m in answer or [])
    return render(request, "settings/workers.html", viewer=viewer, queues=queues_of(answer),
                  tabs=tab_figures(body.get("tabs")), message=message,
                  controls=isinstance(answer, dict) and bool(answer.get("controls")))


@router.get("/servers/serverSettings/{tab}")
async def tab_page(tab: str, request: Request) -> Response:
    viewer = await viewer_of(request)
    return await _tab_page(request, viewer, tab)


@router.post("/servers/serverSettingsEdit/{name}")
async def edit(name: str, request: Request) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    tab = form.text("tab") if _TAB.match(form.text("tab")) else "MISP"
    raw = form["value"]
    try:
        await api(request, viewer, "POST", f"/servers/serverSettingsEdit/{quote(name, safe='')}",
                  json={"value": posted_value(form.text("type"), raw,
                                              redacted=form.flag("redacted"))})
    except ApiError as exc:
        if exc.status >= 500 or exc.status == 401:
            raise
        return await _tab_page(request, viewer, tab, errors={name: exc.message},
                               values={name: raw}, status_code=exc.status)
    return redirect(f"/servers/serverSettings/{tab}#s-{name}", flash=f"{name}: Field updated")


async def _worker_action(request: Request, path: str) -> Response:
    return await api_action(request, path, WORKERS)


@router.post("/servers/purgeSessions")
async def purge_sessions(request: Request) -> Response:
    """MISP's "purge expired sessions" button of the diagnostics page (a job)."""
    return await api_action(request, "/servers/purgeSessions",
                            "/servers/serverSettings/diagnostics#d-sessions")


@router.post("/servers/startWorker/{queue}")
async def start_worker(queue: str, request: Request) -> Response:
    return await _worker_action(request, f"/servers/startWorker/{quote(queue, safe='')}")


@router.post("/servers/stopWorker/{pid}")
async def stop_worker(pid: str, request: Request) -> Response:
    return await _worker_action(request, f"/servers/stopWorker/{quote(pid, safe='')}")


@router.post("/servers/restartWorkers")
async def restart_workers(request: Request) -> Response:
    return await _worker_action(request, "/servers/restartWorkers")


@router.post("/servers/restartDeadWorkers")
async def restart_dead_workers(request: Request) -> Response:
    return await _worker_action(request, "/servers/restartDeadWorkers")


@router.post("/servers/killAllWorkers")
async def kill_all_workers(request: Request) -> Response:
    return await _worker_action(request, "/servers/killAllWorkers")
