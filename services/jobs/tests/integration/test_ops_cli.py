"""The ops commands (the book's CakeResque ones) as real processes on a test database:
`stats`, `clear <queue>`, `cleanup <worker>`, `tail once`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters.tables import job
from jobs.handlers import jobs as commands
from misp_contracts.envelope import Actor


async def run_cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "jobs", *args], capture_output=True, text=True,
        timeout=60, env={**os.environ, "JOBS_DATABASE_URL": db, "MISP_LOG_FORMAT": "json"})


async def test_stats_clear_and_tail_work_on_the_jobs_table(jobs_engine: AsyncEngine,
                                                          jobs_db: str) -> None:
    async with jobs_engine.begin() as conn:
        ids = [await commands.enqueue(conn, job_type="noop", queue=q, actor=Actor.system())
               for q in ("email", "email", "prio")]
    stats = await run_cli(jobs_db, "stats")
    assert stats.returncode == 0, stats.stderr
    email_line = next(line for line in stats.stdout.splitlines() if line.startswith("email"))
    assert email_line.split()[1] == "2"  # two waiting

    cleared = await run_cli(jobs_db, "clear", "email")
    assert cleared.returncode == 0 and "cancelled 2 waiting job(s) in email" in cleared.stdout
    assert "clearing email" in cleared.stderr and "2/2" in cleared.stderr  # the progress bar
    async with jobs_engine.connect() as conn:
        statuses = dict((await conn.execute(select(job.c.id, job.c.status).where(
            job.c.id.in_(ids)))).all())
    assert [statuses[i] for i in ids] == [3, 3, 1]

    tail = await run_cli(jobs_db, "tail", "once")
    assert tail.returncode == 0
    assert sum(f"job {i}" in tail.stdout for i in ids) == 3 and "Cancelled" in tail.stdout

    bad = await run_cli(jobs_db, "clear", "nowhere")
    assert bad.returncode == 2
    nobody = await run_cli(jobs_db, "cleanup", "no-such-worker")
    assert nobody.returncode == 1 and "no job in hand" in nobody.stdout
