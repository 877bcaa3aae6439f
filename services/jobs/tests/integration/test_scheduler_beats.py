"""A scheduler that stops is seen, not silent: real `python -m jobs scheduler` processes beat in
`scheduler`, `servers/getWorkers` lists them under MISP's `scheduler` queue, and the diagnostics
are degraded while none is alive (none yet, one SIGKILLed, one stopped), or while a task is
overdue although one beats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import task
from jobs.handlers import tasks
from jobs.scheduler import Scheduler
from misp_contracts.envelope import Actor
from misp_platform.testing import eventually

from ..support import auth

BEAT_S = "0.5"


@contextmanager
def scheduler_process(db: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs", "scheduler"], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "JOBS_DATABASE_URL": db, "JOBS_SCHEDULER_BEAT_S": BEAT_S,
                 "MISP_LOG_FORMAT": "json"})
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(15)


async def schedulers(client: httpx.AsyncClient, key: str) -> dict[str, Any]:
    response = await client.get("/servers/getWorkers", headers=auth(key))
    assert response.status_code == 200, response.text
    queue: dict[str, Any] = response.json()["scheduler"]
    return queue


async def diagnosis(client: httpx.AsyncClient) -> dict[str, Any]:
    check: dict[str, Any] = (await client.get("/diagnostics")).json()["checks"]["schedulers"]
    return check


async def test_schedulers_are_listed_while_they_beat_and_their_absence_is_diagnosed(
        client: httpx.AsyncClient, admin_key: str, jobs_db: str, tmp_path: Path) -> None:
    assert await schedulers(client, admin_key) == {"ok": False, "workers": [], "jobCount": 0}
    none = await diagnosis(client)
    assert none["ok"] is False and "no scheduler is alive" in none["error"]

    with scheduler_process(jobs_db, tmp_path / "a.log") as a, \
            scheduler_process(jobs_db, tmp_path / "b.log") as b:
        async def both_alive() -> Any:
            q = await schedulers(client, admin_key)
            alive = {w["pid"] for w in q["workers"] if w["alive"]}
            return q if alive == {str(a.pid), str(b.pid)} else None

        listed = await eventually(both_alive, 30)
        assert listed["ok"] is True and all(w["service"] == "jobs" for w in listed["workers"])
        assert await diagnosis(client) == {"ok": True, "alive_schedulers": 2}

        a.send_signal(signal.SIGKILL)  # no stop recorded: its beats just stop

        async def a_dead() -> Any:
            q = await schedulers(client, admin_key)
            by_pid = {w["pid"]: w["alive"] for w in q["workers"]}
            return by_pid == {str(a.pid): False, str(b.pid): True}

        assert await eventually(a_dead, 30)
        assert await diagnosis(client) == {"ok": True, "alive_schedulers": 1}

        b.send_signal(signal.SIGTERM)  # a clean stop is recorded: it leaves the list
        assert b.wait(15) == 0

        async def b_gone() -> Any:
            q = await schedulers(client, admin_key)
            return [w["pid"] for w in q["workers"]] == [str(a.pid)] and not q["ok"]

        assert await eventually(b_gone, 30)
        stopped = await diagnosis(client)
        assert stopped["ok"] is False and "no scheduler is alive" in stopped["error"]


async def test_a_task_overdue_while_a_scheduler_beats_is_diagnosed(
        client: httpx.AsyncClient, admin_key: str, jobs_engine: AsyncEngine) -> None:
    # A scheduler that beats but whose rounds fail (its log says why): the task it should have
    # ticked a while ago is overdue, and the diagnostics say so.
    beating = Scheduler(jobs_engine, beat_s=30)
    await beating.beat()
    async with jobs_engine.begin() as conn:
        state = await tasks.set_task(conn, None, {"type": "noop", "timer": 1},
                                     Actor.system(), datetime.now(UTC))
    assert await diagnosis(client) == {"ok": True, "alive_schedulers": 1}
    late = datetime.now(UTC) - timedelta(minutes=5)
    async with jobs_engine.begin() as conn:
        await conn.execute(update(task).where(task.c.id == state.id).values(
            next_execution_at=late))
    overdue = await diagnosis(client)
    assert overdue["ok"] is False
    assert "1 task(s) overdue although 1 scheduler(s) are alive" in overdue["error"]
    assert f"{state.id} since {late:%Y-%m-%d %H:%M:%S} UTC" in overdue["error"]
    async with jobs_engine.begin() as conn:
        await conn.execute(update(task).where(task.c.id == state.id).values(paused=True))
    assert (await diagnosis(client))["ok"] is True  # a paused task is not overdue
