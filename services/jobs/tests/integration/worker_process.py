"""A worker of the tests' own job type as its own OS process, for crash tests.

`python worker_process.py DB_URL BOOTSTRAP GROUP [PREFETCH]` runs `test_noop` jobs of the
default queue until SIGTERM; each run adds a row to `job_effect` (deliberately not idempotent by
itself), in the transaction the worker records the run in. `worker()` makes the same worker
in-process.
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.events.jobs import QUEUES, JobType, register_job_type
from misp_platform.db import create_engine
from misp_platform.roles import stop_on_signals
from misp_platform.worker import JobContext, WorkerRunner

# As the tests' conftest registers it (this process does not import the conftest).
register_job_type(JobType(name="test_noop", owner="jobstest", queues=QUEUES,
                          description="The no-op job, run only by the jobs tests' own workers."))


async def record_effect(conn: AsyncConnection, ctx: JobContext) -> str:
    await conn.execute(text("INSERT INTO job_effect (job_id, attempt) VALUES (:j, :a)"),
                       {"j": ctx.job.job_id, "a": ctx.job.attempt})
    return "Effect recorded."


def worker(database_url: str, bootstrap: str, group: str,
           engine: AsyncEngine | None = None, prefetch: int = 1) -> WorkerRunner:
    return WorkerRunner(service="jobstest", queue="default",
                        engine=engine or create_engine(database_url),
                        bootstrap_servers=bootstrap, handlers={"test_noop": record_effect},
                        group=group, heartbeat_s=0.5, prefetch=prefetch)


async def main(database_url: str, bootstrap: str, group: str, prefetch: int) -> None:
    runner = worker(database_url, bootstrap, group, prefetch=prefetch)
    try:
        await runner.run(stop_on_signals())
    finally:
        await runner.engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3],
                     int(sys.argv[4]) if len(sys.argv) > 4 else 1))
