"""The small profile's process: the real `python -m orgs all` (API, relay and consumers in one
process) against the stack's Kafka and PostgreSQL answers, applies its own writes and stops
cleanly on SIGTERM.

It runs on a fresh orgs database (the `orgs_db` fixture) with consumer groups of its own started
at the topics' ends: joining the live `misp.orgs` groups would have it apply the live stack's
events to this test's database (and take partitions from the live consumers), and a new group
starting at the beginning would replay every event ever published. Its relay takes the outbox
lock of its own database, so it never competes with the live relay."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.testing import start_group_at_end
from orgs.consumer import topics
from orgs.settings import OrgsSettings

from ..conftest import PEPPER, Keys
from ..support import auth


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_all(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "orgs", "all"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


@pytest.fixture
async def all_process(orgs_db: str, kafka_bootstrap: str, orgs_settings: OrgsSettings,
                      tmp_path: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m orgs all` on a free port, in consumer groups of its own; its base URL."""
    group = f"test-orgs-all-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, sorted(topics(orgs_settings)))
    await start_group_at_end(kafka_bootstrap, f"{group}.principals", sorted(PRINCIPAL_TOPICS))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MISP_FAILPOINTS"}
    env.update({"ORGS_DATABASE_URL": orgs_db, "ORGS_CONSUMER_GROUP": group,
                "ORGS_HTTP_HOST": "127.0.0.1", "ORGS_HTTP_PORT": str(port),
                "MISP_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "MISP_PEPPER": PEPPER,
                "MISP_LOG_FORMAT": "json"})
    log = (tmp_path / "orgs-all.log").open("ab")
    process = start_all(env, log)
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


async def ready(base_url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, "`python -m orgs all` exited while starting"
            try:
                if (await http.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"/ready never answered 200 within {timeout_s} s")


async def test_one_process_serves_applies_its_writes_and_stops_on_sigterm(
        all_process: tuple[subprocess.Popen[bytes], str], keys: Keys) -> None:
    process, base_url = all_process
    await ready(base_url, process)

    name = f"Org {uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        added = await http.post("/admin/organisations/add", json={"name": name},
                                headers=auth(keys["site_admin"]))
        assert added.status_code == 200, added.text
        org_id = added.json()["Organisation"]["id"]
        view = await http.get(f"/organisations/view/{org_id}", headers=auth(keys["site_admin"]))
        assert view.status_code == 200, view.text
        assert view.json()["Organisation"]["name"] == name

    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await asyncio.to_thread(process.wait, 15)
    assert code == 0 and time.monotonic() - started < 15
