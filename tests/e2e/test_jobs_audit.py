"""Job and task changes reach the audit log (issue 7 §7), through the real processes: a task
created and scheduled and a job queued and cancelled over the gateway become MISP Log rows with
the acting admin, found with the audit's search."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from .support import GATEWAY, admin_headers, until


def log_rows(http: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    response = http.post("/admin/logs/index", headers=admin_headers(), json=filters)
    assert response.status_code == 200, response.text
    return [r["Log"] for r in response.json()]


def test_a_tasks_schedule_and_a_jobs_cancel_are_logged_with_the_admin() -> None:
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        me_view = http.get("/users/view/me", headers=admin_headers()).json()
        me, my_org = me_view["User"]["email"], me_view["Organisation"]["name"]
        # a token of this run in the task's titles: no row of an earlier run reads the same
        description = f"e2e audit task {secrets.token_hex(5)}"
        made = http.post("/api/v1/jobs/tasks", headers=admin_headers(), json={
            "type": "noop", "description": description})
        assert made.status_code == 200, made.text
        task_id = made.json()["Task"]["id"]
        # far in the future, then paused: the running stack never ticks it
        scheduled = http.post("/tasks/setTask", headers=admin_headers(), json={"Task": {
            task_id: {"timer": 168, "scheduled_time": "01:30",
                      "next_execution_time": "2099-01-05"}}})
        assert scheduled.status_code == 200, scheduled.text
        assert http.post(f"/api/v1/jobs/tasks/{task_id}/pause",
                         headers=admin_headers()).status_code == 200

        # no worker of the stack runs jobs' no-op type on `update`: the job waits until cancelled
        queued = http.post("/api/v1/jobs/jobs", headers=admin_headers(),
                           json={"job_type": "noop", "worker": "update"})
        assert queued.status_code == 200, queued.text
        job_id = queued.json()["Job"]["id"]
        cancel = http.post(f"/api/v1/jobs/jobs/{job_id}/cancel", headers=admin_headers())
        assert cancel.status_code == 200, cancel.text

        # (filtered by the admin too: the tests' own jobs databases publish on the same topics)
        def job_log() -> list[dict[str, Any]] | None:
            rows = log_rows(http, model="Job", model_id=job_id, email=me)
            return rows if {"queued", "cancelled"} <= {r["action"] for r in rows} else None

        def task_log() -> list[dict[str, Any]] | None:
            rows = log_rows(http, model="Task", model_id=task_id, email=me)
            return rows if len(rows) >= 3 else None

        jobs = until(job_log, "the job's queue and cancel in the audit log")
        tasks = until(task_log, "the task's creation, schedule and pause in the audit log")
    # a row whose event carries the state names it; the others are titled by the id alone
    assert sorted((r["action"], r["title"]) for r in jobs) == [
        ("cancelled", f"Job ({job_id})"), ("queued", f"Job ({job_id}): noop")]
    assert [(r["action"], r["title"]) for r in tasks] == [
        ("scheduled", f"Task ({task_id}): {description}"),
        ("scheduled", f"Task ({task_id}): {description}"), ("paused", f"Task ({task_id})")]
    assert "timer (0) => (168)" in tasks[1]["change"]
    assert [r["org"] for r in jobs + tasks] == [my_org] * 5  # two job rows, three task rows
