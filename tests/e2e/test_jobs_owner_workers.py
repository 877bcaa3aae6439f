"""Owners' jobs through the real processes and the gateway: `audit_verify` and
`settings_diagnostics`, enqueued over the jobs API with the site admin's key on each queue they
are registered on, are run by their owner's worker process (supervisor's `audit-worker`,
`settings-worker`: one process per service, a worker per queue) and complete; every queue an
owner's job type runs in has a live worker in `servers/getWorkers`."""

from __future__ import annotations

import asyncio
import os
import re
import time
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pymisp import PyMISP

from misp_contracts.events.jobs import JOB_TYPES, STATUS_COMPLETED, run_topic
from misp_contracts.events.jobs import QUEUES as JOB_QUEUES
from misp_contracts.topics import SERVICES
from misp_platform.kafka import client_options, topic_partitions

from .support import GATEWAY, admin_headers, admin_key, needs_a_process_per_role, until


def _run(job_type: str, queue: str) -> dict[str, Any]:
    made = httpx.post(f"{GATEWAY}/api/v1/jobs/jobs", headers=admin_headers(), timeout=30,
                      json={"job_type": job_type, "worker": queue})
    assert made.status_code == 200, made.text
    job_id = made.json()["Job"]["id"]

    deadline = time.monotonic() + 60
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{GATEWAY}/api/v1/jobs/jobs/{job_id}", headers=admin_headers(),
                             timeout=30)
        assert response.status_code == 200, response.text
        job = response.json()["Job"]
        if int(job["status"]) in (STATUS_COMPLETED, 3):
            break
        time.sleep(0.3)
    assert int(job.get("status", 0)) == STATUS_COMPLETED, job
    return job


@pytest.mark.parametrize("queue", ["default", "prio"])
def test_an_audit_verify_job_enqueued_over_the_api_is_run_by_the_audit_worker(
        queue: str) -> None:
    job = _run("audit_verify", queue)
    assert job["worker"] == queue
    # The stack's log is never tampered with (test_audit_log.py verifies it too): BROKEN is a bug.
    assert re.fullmatch(r"Audit log verified: \d+ entries in \d+ chains, \d+ checkpoints "
                        r"\(epoch \d+\)\.", job["message"]), job


def test_a_settings_diagnostics_job_on_the_prio_queue_is_run_by_the_settings_worker() -> None:
    job = _run("settings_diagnostics", "prio")
    assert job["worker"] == "prio"


def test_every_queue_of_an_owners_job_type_has_a_live_worker() -> None:
    workers = httpx.get(f"{GATEWAY}/servers/getWorkers", headers=admin_headers(), timeout=30).json()
    live = {(w["service"], q) for q in JOB_QUEUES for w in workers[q]["workers"] if w["alive"]}
    # The services' own types (the jobs service's no-op aside; tests may register their own).
    wanted = {(t.owner, q) for t in JOB_TYPES.values() for q in t.queues
              if t.owner in SERVICES and t.owner != "jobs"}
    assert wanted <= live, sorted(wanted - live)


@needs_a_process_per_role
def test_stopping_an_owners_worker_process_restarts_it_with_all_its_queues() -> None:
    """`servers/stopWorker/{pid}` reaches every worker of the process (one per queue); the
    process leaves after the jobs in hand and the supervisor starts it again, queues and all."""

    def audit_workers() -> dict[str, set[str]]:
        ws = httpx.get(f"{GATEWAY}/servers/getWorkers", headers=admin_headers(), timeout=30)
        return {q: {w["pid"] for w in ws.json()[q]["workers"]
                    if w["alive"] and w["service"] == "audit"} for q in ("default", "prio")}

    before = until(lambda: (w := audit_workers())["default"] & w["prio"] and w,
                   "the audit worker process serving default and prio")
    pid = sorted(before["default"] & before["prio"])[0]
    stop = httpx.post(f"{GATEWAY}/servers/stopWorker/{pid}", headers=admin_headers(), timeout=30)
    assert stop.status_code == 200 and stop.json()["saved"] is True, stop.text

    def restarted() -> dict[str, set[str]] | None:
        w = audit_workers()
        fresh = (w["default"] & w["prio"]) - {pid}
        return w if fresh and pid not in w["default"] | w["prio"] else None

    after = until(restarted, "a new audit worker process on both queues", timeout_s=60)
    assert pid not in after["default"] | after["prio"]


def _live_pids() -> dict[tuple[str, str], set[str]]:
    ws = httpx.get(f"{GATEWAY}/servers/getWorkers", headers=admin_headers(), timeout=30).json()
    out: dict[tuple[str, str], set[str]] = {}
    for q in JOB_QUEUES:
        for w in ws[q]["workers"]:
            if w["alive"]:
                out.setdefault((w["service"], q), set()).add(w["pid"])
    return out


def _all_replaced(before: dict[tuple[str, str], set[str]], what: str
                  ) -> dict[tuple[str, str], set[str]]:
    old = set().union(*before.values())

    def replaced() -> dict[tuple[str, str], set[str]] | None:
        now = _live_pids()
        served_again = set(now) >= set(before)
        return now if served_again and not old & set().union(*now.values()) else None

    return until(replaced, what, timeout_s=90)


@needs_a_process_per_role
def test_pymisps_restart_and_kill_all_workers_replace_every_worker_process() -> None:
    """MISP's "Restart all workers" and "Kill all workers", with PyMISP: a stop to every worker
    over the control topic (a kill also cancels the job in hand), and the supervisor starts
    each process again with the queues it served."""
    misp = PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)
    before = until(_live_pids, "live workers")
    restarted = misp.restart_workers()
    assert isinstance(restarted, dict) and restarted["saved"] is True, restarted
    after_restart = _all_replaced(before, "every (service, queue) served by a new process")

    made = httpx.post(f"{GATEWAY}/api/v1/jobs/jobs", headers=admin_headers(), timeout=30,
                      json={"job_type": "noop", "worker": "default",
                            "data": {"steps": 600, "step_s": 0.05}})
    assert made.status_code == 200, made.text
    job_id = made.json()["Job"]["id"]

    def job() -> dict[str, Any]:
        r = httpx.get(f"{GATEWAY}/api/v1/jobs/jobs/{job_id}", headers=admin_headers(),
                      timeout=30)
        assert r.status_code == 200, r.text
        state: dict[str, Any] = r.json()["Job"]
        return state

    until(lambda: int(job()["status"]) == 2, "the long job running")
    killed = misp.kill_all_workers()
    assert isinstance(killed, dict) and killed["saved"] is True, killed

    def failed() -> dict[str, Any] | None:
        state = job()
        return state if int(state["status"]) == 3 else None

    cancelled = until(failed, "the job in hand cancelled by the kill")
    assert "cancel" in cancelled["message"].lower(), cancelled
    _all_replaced(after_restart, "every (service, queue) served again after the kill")
    # Instead of a pause: the new workers have read their run topic to its end (a RunJob of the
    # cancelled job left there would have been taken), and the job is still as cancelled.
    until(lambda: asyncio.run(_worker_lag(run_topic("jobs", "default"),
                                          "misp.jobs.worker.default")) == 0,
          "the new default workers at the end of their run topic")
    final = job()
    assert (int(final["status"]), final["message"]) == (3, cancelled["message"]), final
    assert (final["attempt"], final["retries"]) == (cancelled["attempt"], "0"), final


async def _worker_lag(topic: str, group: str) -> int:
    """How many messages of `topic` the consumer group `group` has not committed yet."""
    bootstrap = os.environ["MISP_KAFKA_BOOTSTRAP_SERVERS"]
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        ends = await consumer.end_offsets(await topic_partitions(consumer, topic))
    finally:
        await consumer.stop()
        await admin.close()
    return sum(end - (committed[tp].offset if tp in committed else 0)
               for tp, end in ends.items())
