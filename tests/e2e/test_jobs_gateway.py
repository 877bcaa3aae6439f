"""The jobs service through the gateway: PyMISP's worker calls, a real worker process that
runs a job enqueued over HTTP, and a graceful stop over the control topic (stopWorker)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymisp import PyMISP

from misp_contracts.events.jobs import run_topic
from misp_platform.testing import start_group_at_end

from .support import GATEWAY, PROFILE, admin_headers, admin_key, until


def test_pymisps_worker_calls_answer_in_misps_shapes() -> None:
    misp = PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)
    workers = misp.get_workers()
    assert isinstance(workers, dict) and workers["controls"] == 1
    assert {"default", "prio", "email", "cache", "update"} <= set(workers)
    # MISP's `scheduler` queue: the stack's two scheduler processes (deploy/programs.tsv), alive
    # (one, in jobs' one process, in the small profile).
    assert workers["scheduler"]["ok"] is True
    assert len({w["pid"] for w in workers["scheduler"]["workers"] if w["alive"]}) == (
        1 if PROFILE == "small" else 2)
    assert misp.start_worker("default")["saved"] is True
    assert misp.restart_dead_workers()["success"] is True
    assert "errors" in misp.stop_worker_by_pid(2**31 - 7)  # no such worker: a 4xx


def test_a_real_worker_runs_a_job_and_stops_when_asked(tmp_path: Path) -> None:
    env = {**os.environ, "JOBS_WORKER_GROUP": f"e2e-jobs-{uuid.uuid4().hex}",
           "JOBS_WORKER_HEARTBEAT_S": "0.5", "MISP_LOG_FORMAT": "json"}
    log = (tmp_path / "worker.log").open("wb")
    # A group of its own that starts at the end of the queue (auto_offset_reset stays earliest
    # in production: jobs queued before the first worker starts are not lost), so it never
    # claims the dispatches of other tests' databases left on the topic.
    asyncio.run(start_group_at_end(os.environ["MISP_KAFKA_BOOTSTRAP_SERVERS"],
                                   env["JOBS_WORKER_GROUP"], [run_topic("jobs", "cache")]))
    proc = subprocess.Popen([sys.executable, "-m", "jobs", "worker", "cache"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def listed() -> Any:
            ws = httpx.get(f"{GATEWAY}/servers/getWorkers", headers=admin_headers()).json()
            return [w for w in ws["cache"]["workers"] if w["pid"] == str(proc.pid)
                    and w["alive"]]

        # No wait for the group's partitions: it was committed at the end before the job was
        # queued, so the worker reads the job whenever its partitions come.
        until(listed, "the worker's heartbeat")
        made = httpx.post(f"{GATEWAY}/api/v1/jobs/jobs", headers=admin_headers(), json={
            "job_type": "noop", "worker": "cache", "data": {"steps": 2, "step_s": 0.05}})
        assert made.status_code == 200, made.text
        job_id = made.json()["Job"]["id"]

        def completed() -> Any:
            rows = httpx.get(f"{GATEWAY}/jobs/index/cache", headers=admin_headers()).json()
            return [r for r in rows if r["Job"]["id"] == job_id
                    and r["Job"]["job_status"] == "Completed"]

        row = until(completed, "the job to complete")[0]["Job"]
        assert row["progress"] == "100" and row["worker_status"] is True
        progress = httpx.get(f"{GATEWAY}/jobs/getProgress/{job_id}", headers=admin_headers())
        assert progress.json() == {"progress": "100%"}

        stop = httpx.post(f"{GATEWAY}/servers/stopWorker/{proc.pid}", headers=admin_headers())
        assert stop.status_code == 200 and stop.json()["saved"] is True
        assert proc.wait(30) == 0  # a graceful stop, not a kill
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
