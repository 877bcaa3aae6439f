"""MISP's expired-session counter and purge (issue 17 item 6), through the gateway: the
diagnostics report counts identity's expired sessions (`sessionCount`, with the active ones in
`sessionStatus`); `POST servers/purgeSessions` queues identity's `purge_expired_sessions` job,
which runs and says how many it purged; only a site admin may ask."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from .support import GATEWAY, admin_headers, until


def call(method: str, path: str, headers: dict[str, str], json: Any = None) -> httpx.Response:
    return httpx.request(method, f"{GATEWAY}{path}", json=json, timeout=30,
                         headers={**headers, "Accept": "application/json"})


def test_the_diagnostics_count_expired_sessions_and_a_site_admin_purges_them() -> None:
    admin = admin_headers()
    password = uuid.uuid4().hex + "aA1!"
    added = call("POST", "/admin/users/add", admin, {
        "email": f"sessions-{uuid.uuid4().hex[:10]}@purge.test", "org_id": 1, "role_id": 3,
        "password": password, "change_pw": False})
    assert added.status_code == 200, added.text
    user = added.json()["User"]
    try:
        login = call("POST", "/users/login", {}, {"email": user["email"], "password": password})
        assert login.status_code == 200, login.text

        report = call("GET", "/servers/serverSettings/diagnostics", admin)
        assert report.status_code == 200, report.text
        status = report.json()["sessionStatus"]
        assert status["ok"] is True and status["active"] >= 1, status
        assert report.json()["sessionCount"] == status["expired"] >= 0

        refused = call("POST", "/servers/purgeSessions", {"Authorization": user["authkey"]})
        assert refused.status_code == 403, refused.text
        assert set(refused.json()) >= {"name", "message", "url"}

        queued = call("POST", "/servers/purgeSessions", admin)
        assert queued.status_code == 200, queued.text
        body = queued.json()
        assert body["saved"] is True and body["url"] == "/servers/purgeSessions", body
        job_id = body["id"]
        assert body["message"] == f"Expired sessions are being purged (job {job_id})."

        def finished() -> dict[str, Any] | None:
            job = call("GET", f"/api/v1/jobs/jobs/{job_id}", admin).json()["Job"]
            return job if job["job_status"] in ("Completed", "Failed") else None

        job = until(finished, "the purge job finishes", timeout_s=60)
        assert job["job_type"] == "purge_expired_sessions", job
        assert job["job_status"] == "Completed", job
        assert job["message"].startswith("Purged ") and job["message"].endswith(
            " expired session(s)."), job
        after = call("GET", "/servers/serverSettings/diagnostics", admin).json()
        assert after["sessionCount"] == 0, after["sessionStatus"]
    finally:
        gone = call("POST", f"/admin/users/delete/{user['id']}", admin)  # sessions go too
        assert gone.status_code == 200, gone.text
