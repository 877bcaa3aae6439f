"""MISP's job, task and worker paths in-process: shapes, status codes, and bad input answered
with MISP's 4xx bodies (never a 500, never half-written)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import task
from misp_platform.db import outbox

from ..support import auth


async def add_job(client: httpx.AsyncClient, key: str, **body: Any) -> httpx.Response:
    return await client.post("/api/v1/jobs/jobs", json={"job_type": "noop", **body},
                             headers=auth(key))


async def test_a_queued_job_shows_in_the_index_and_progress_in_misps_shapes(
        client: httpx.AsyncClient, admin_key: str, jobs_engine: AsyncEngine) -> None:
    response = await add_job(client, admin_key, worker="prio", job_input="Event:5")
    assert response.status_code == 200, response.text
    created = response.json()
    job_id = created["Job"]["id"]
    assert created["JobAttempt"][0]["attempt"] == "1"

    rows = (await client.get("/jobs/index/prio", headers=auth(admin_key))).json()
    job = next(r for r in rows if r["Job"]["id"] == job_id)
    assert job["Job"]["worker"] == "prio" and job["Job"]["job_type"] == "noop"
    assert job["Job"]["status"] == "1" and job["Job"]["job_status"] == "Waiting"
    assert job["Job"]["failed"] is False and job["Job"]["job_input"] == "Event:5"
    assert len(job["Job"]["date_created"]) == 19 and set(job["Org"]) == {"id", "name", "uuid"}
    on_default = await add_job(client, admin_key, worker="default")
    assert on_default.status_code == 200, on_default.text
    default = (await client.get("/jobs/index/default.json", headers=auth(admin_key))).json()
    # A fresh database: the default queue's index is its one job, and not the prio one.
    assert [(r["Job"]["id"], r["Job"]["worker"]) for r in default] == [
        (on_default.json()["Job"]["id"], "default")]
    assert (await client.get(f"/jobs/getProgress/{job_id}", headers=auth(admin_key))).json() \
        == {"progress": "0%"}
    async with jobs_engine.connect() as conn:
        queued = (await conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.topic == "misp.jobs.run-jobs-prio.commands.v1"))).scalar()
    assert queued == 1  # the dispatch is written with the job, in one transaction


async def test_bad_job_input_gets_misps_4xx_bodies(client: httpx.AsyncClient,
                                                   admin_key: str) -> None:
    unknown_type = await add_job(client, admin_key, job_type="mine_bitcoin")
    assert unknown_type.status_code == 403
    assert unknown_type.json()["saved"] is False
    assert "Unknown job type" in unknown_type.json()["message"]
    wrong_queue = await add_job(client, admin_key, job_type="audit_prune", worker="email")
    assert wrong_queue.status_code == 403 and "does not run" in wrong_queue.json()["message"]
    assert (await client.get("/jobs/index/nope", headers=auth(admin_key))).status_code == 404
    missing = await client.post("/api/v1/jobs/jobs/999/cancel", headers=auth(admin_key))
    assert missing.status_code == 404 and missing.json()["message"].startswith("Invalid job")


async def test_cancel_a_waiting_job_once_and_re_run_it(client: httpx.AsyncClient,
                                                       admin_key: str) -> None:
    job_id = (await add_job(client, admin_key)).json()["Job"]["id"]
    rerun_waiting = await client.post(f"/api/v1/jobs/jobs/{job_id}/rerun", headers=auth(admin_key))
    assert rerun_waiting.status_code == 403 and "only a failed job" in rerun_waiting.text
    first = await client.post(f"/api/v1/jobs/jobs/{job_id}/cancel", headers=auth(admin_key))
    assert first.status_code == 200 and first.json()["message"] == "Job cancelled."
    again = await client.post(f"/api/v1/jobs/jobs/{job_id}/cancel", headers=auth(admin_key))
    assert again.status_code == 403 and "already failed" in again.json()["message"]
    view = (await client.get(f"/api/v1/jobs/jobs/{job_id}", headers=auth(admin_key))).json()
    assert view["Job"]["job_status"] == "Failed" and view["Job"]["cancelled"] is True
    assert view["JobAttempt"][0]["outcome"] == "cancelled"
    rerun = await client.post(f"/api/v1/jobs/jobs/{job_id}/rerun", headers=auth(admin_key))
    assert rerun.status_code == 200
    view = (await client.get(f"/api/v1/jobs/jobs/{job_id}", headers=auth(admin_key))).json()
    assert view["Job"]["job_status"] == "Waiting" and len(view["JobAttempt"]) == 2


async def test_only_site_admins_see_jobs(client: httpx.AsyncClient, user_key: str) -> None:
    for path in ("/jobs/index", "/tasks/index", "/servers/getWorkers"):
        response = await client.get(path, headers=auth(user_key))
        assert response.status_code == 403, path
        assert response.json()["message"] == \
            "You do not have permission to use this functionality."


async def test_tasks_are_created_listed_and_set_all_or_nothing(
        client: httpx.AsyncClient, admin_key: str, jobs_engine: AsyncEngine) -> None:
    made = await client.post("/api/v1/jobs/tasks", json={
        "type": "audit_verify", "timer": 24, "scheduled_time": "03:00",
        "timezone": "Europe/Luxembourg"}, headers=auth(admin_key))
    assert made.status_code == 200, made.text
    task_id = made.json()["Task"]["id"]
    other = (await client.post("/api/v1/jobs/tasks", json={"type": "noop"},
                               headers=auth(admin_key))).json()["Task"]["id"]
    rows = (await client.get("/tasks/index", headers=auth(admin_key))).json()
    mine = next(r["Task"] for r in rows if r["Task"]["id"] == task_id)
    assert mine["timer"] == "24" and mine["scheduled_time"] == "03:00"
    assert mine["next_execution_time"].isdigit() and mine["message"] == "Not scheduled yet."

    for bad in ({"scheduled_time": "25:61"}, {"timer": -2}, {"timer": "often"},
                {"next_execution_time": "tomorrow"}, {"overlap": "sometimes"}):
        response = await client.post("/tasks/setTask", json={"Task": {
            other: {"timer": 1, "scheduled_time": "01:00"}, task_id: bad}},
            headers=auth(admin_key))
        assert response.status_code == 403, (bad, response.text)
        assert response.json()["saved"] is False
    async with jobs_engine.connect() as conn:
        untouched = (await conn.execute(select(task.c.state).where(
            task.c.id == int(other)))).scalar_one()
    assert untouched["timer"] == 0  # nothing is half-scheduled

    ok = await client.post("/tasks/setTask", json={"Task": {task_id: {
        "timer": 168, "scheduled_time": "01:30", "next_execution_time": "2030-01-06"}}},
        headers=auth(admin_key))
    assert ok.status_code == 200, ok.text
    mine = next(r["Task"] for r in (await client.get("/tasks/index", headers=auth(admin_key)))
                .json() if r["Task"]["id"] == task_id)
    assert mine["timer"] == "168" and mine["scheduled_time"] == "01:30"
    assert mine["message"].startswith("Scheduled for 2030-01-06 00:30")  # 01:30 in Luxembourg

    paused = await client.post(f"/api/v1/jobs/tasks/{task_id}/pause", headers=auth(admin_key))
    assert paused.status_code == 200
    triggered = await client.post(f"/api/v1/jobs/tasks/{task_id}/trigger",
                                  headers=auth(admin_key))
    assert triggered.status_code == 200 and "queued" in triggered.json()["message"]
    missing = await client.post("/api/v1/jobs/tasks/12/trigger", headers=auth(admin_key))
    assert missing.status_code == 404


async def test_worker_paths_answer_in_misps_shapes(client: httpx.AsyncClient,
                                                  admin_key: str) -> None:
    workers = (await client.get("/servers/getWorkers", headers=auth(admin_key))).json()
    assert set(workers) >= {"default", "prio", "email", "cache", "update", "controls"}
    assert workers["default"]["workers"] == [] and workers["default"]["ok"] is False
    assert (await client.post("/servers/startWorker/nope", headers=auth(admin_key))) \
        .status_code == 404
    for pid in ("1", "-268838201476778", "2147483648", "\u00b2"):  # none fits worker.pid
        assert (await client.post(f"/servers/stopWorker/{pid}", headers=auth(admin_key))) \
            .status_code == 404, pid
    restart = await client.post("/servers/restartWorkers", headers=auth(admin_key))
    assert restart.status_code == 200 and restart.json()["message"] == "Restarting workers."
    dead = await client.post("/servers/restartDeadWorkers", headers=auth(admin_key))
    assert dead.status_code == 200 and dead.json()["saved"] is True


async def test_the_first_run_seeds_misps_unscheduled_tasks_once(
        client: httpx.AsyncClient, admin_key: str, jobs_engine: AsyncEngine) -> None:
    from jobs.handlers.tasks import SEEDED_SCHEDULES, SEEDED_TYPES, seed_tasks

    for _ in range(2):
        async with jobs_engine.begin() as conn:
            await seed_tasks(conn)
    rows = [r["Task"] for r in (await client.get("/tasks/index", headers=auth(admin_key))).json()]
    assert sorted(r["type"] for r in rows) == sorted([*SEEDED_TYPES, *SEEDED_SCHEDULES])
    unscheduled = {r["type"]: (r["message"], r["next_execution_time"], r["timer"])
                   for r in rows if r["type"] in SEEDED_TYPES}
    assert unscheduled == dict.fromkeys(SEEDED_TYPES, ("Not scheduled yet.", "0", "0"))
    [warnings] = [r for r in rows if r["type"] == "authkey_expiry_warnings"]
    assert warnings["timer"] == "24" and warnings["scheduled_time"] == "06:00"
    assert int(warnings["next_execution_time"]) > 0


async def test_diagnostics_report_a_queue_whose_jobs_wait_without_a_live_worker(
        client: httpx.AsyncClient, admin_key: str, jobs_engine: AsyncEngine) -> None:
    quiet = (await client.get("/diagnostics")).json()["checks"]["workers"]
    assert quiet["ok"] is True
    assert (await add_job(client, admin_key, worker="cache")).status_code == 200
    starving = (await client.get("/diagnostics")).json()
    assert starving["status"] == "degraded"
    assert starving["checks"]["workers"]["ok"] is False
    assert "cache" in starving["checks"]["workers"]["error"]
