"""An owner's job through the real processes and the gateway: `audit_verify`, enqueued over the
jobs API with the site admin's key, is run by the audit's own worker (supervisor's
`audit-worker-default`) and completes with the verification summary as its message."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from misp_contracts.events.jobs import STATUS_COMPLETED

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")


def _headers() -> dict[str, str]:
    path = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "admin.authkey"
    if not path.exists():
        pytest.fail(f"{path} is missing: identity writes it on first run", pytrace=False)
    return {"Authorization": path.read_text().strip(), "Accept": "application/json"}


def test_an_audit_verify_job_enqueued_over_the_api_is_run_by_the_audit_worker() -> None:
    made = httpx.post(f"{GATEWAY}/api/v1/jobs/jobs", headers=_headers(), timeout=30,
                      json={"job_type": "audit_verify", "worker": "default"})
    assert made.status_code == 200, made.text
    job_id = made.json()["Job"]["id"]

    deadline = time.monotonic() + 60
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{GATEWAY}/api/v1/jobs/jobs/{job_id}", headers=_headers(),
                             timeout=30)
        assert response.status_code == 200, response.text
        job = response.json()["Job"]
        if int(job["status"]) in (STATUS_COMPLETED, 3):
            break
        time.sleep(0.3)
    assert int(job.get("status", 0)) == STATUS_COMPLETED, job
    assert job["message"].startswith(("Audit log verified: ", "Audit log BROKEN: ")), job
