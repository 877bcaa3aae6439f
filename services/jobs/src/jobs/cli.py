"""The jobs service's extra commands: `worker [queue ...]` (the no-op type), `scheduler`, and
the ops tools `stats`, `clear <queue>`, `cleanup <worker>`, `tail [once]` (the book's CakeResque
commands)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from sqlalchemy import func, select

from jobs.adapters.tables import job, worker
from jobs.handlers import jobs as job_handlers
from jobs.handlers.noop import run_noop
from jobs.scheduler import Scheduler
from misp_contracts.envelope import Actor
from misp_contracts.events.jobs import QUEUES, STATUS_NAMES
from misp_contracts.topics import owned_by
from misp_platform.config import ServiceSettings
from misp_platform.db import create_engine
from misp_platform.kafka import ensure_topics
from misp_platform.worker import JobHandler
from misp_platform.worker_command import worker_command

OPERATOR = Actor(email="cli", org_name="SYSTEM")
CLEAR_BATCH = 200  # jobs cancelled per transaction by `clear`


def _stop() -> asyncio.Event:
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    return stop


def _noop_handlers(_settings: ServiceSettings) -> dict[str, JobHandler]:
    return {"noop": run_noop}


def scheduler_command(settings: ServiceSettings, _args: list[str]) -> int:
    async def main() -> None:
        await ensure_topics(settings.kafka_bootstrap_servers, owned_by("jobs"))
        engine = create_engine(settings.database_url)
        try:
            await Scheduler(engine, poll_s=getattr(settings, "scheduler_poll_s", 0.2),
                            missed_beats=getattr(settings, "missed_heartbeats", 3.0),
                            beat_s=getattr(settings, "scheduler_beat_s", 2.0)).run(_stop())
        finally:
            await engine.dispose()

    asyncio.run(main())
    return 0


def stats_command(settings: ServiceSettings, _args: list[str]) -> int:
    async def main() -> None:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                print(f"{'worker':<48} {'queue':<8} {'ok':>6} {'failed':>6} {'alive':>5}")
                now = datetime.now(UTC)
                for w in await conn.execute(select(worker).order_by(worker.c.queue)):
                    alive = w.stopped_at is None and (now - w.last_seen_at).total_seconds() \
                        < 3 * w.interval_s
                    print(f"{w.worker_id:<48} {w.queue:<8} {w.succeeded:>6} {w.failed:>6} "
                          f"{'yes' if alive else 'no':>5}")
                print()
                print(f"{'queue':<8} " + " ".join(f"{STATUS_NAMES[s]:>9}" for s in (1, 2, 3, 4)))
                rows = await conn.execute(select(job.c.queue, job.c.status, func.count())
                                          .group_by(job.c.queue, job.c.status))
                counts: dict[str, dict[int, int]] = {}
                for q, s, n in rows:
                    counts.setdefault(q, {})[s] = n
                for q in QUEUES:
                    print(f"{q:<8} " + " ".join(f"{counts.get(q, {}).get(s, 0):>9}"
                                                for s in (1, 2, 3, 4)))
        finally:
            await engine.dispose()

    asyncio.run(main())
    return 0


def clear_command(settings: ServiceSettings, args: list[str]) -> int:
    """Cancel every job waiting in a queue, a batch per transaction, with a progress bar."""
    if len(args) != 1 or args[0] not in QUEUES:
        print(f"usage: python -m jobs clear <{'|'.join(QUEUES)}>", file=sys.stderr)
        return 2
    queue = args[0]

    async def main() -> int:
        engine = create_engine(settings.database_url)
        cancelled = 0
        try:
            async with engine.connect() as conn:
                ids = await job_handlers.waiting_in_queue(conn, queue)
            with Progress(*Progress.get_default_columns(), MofNCompleteColumn(),
                          console=Console(stderr=True)) as bar:
                task = bar.add_task(f"clearing {queue}", total=len(ids))
                for start in range(0, len(ids), CLEAR_BATCH):
                    async with engine.begin() as conn:
                        cancelled += await job_handlers.cancel_if_waiting(
                            conn, ids[start:start + CLEAR_BATCH], OPERATOR)
                    bar.advance(task, len(ids[start:start + CLEAR_BATCH]))
            return cancelled
        finally:
            await engine.dispose()

    print(f"cancelled {asyncio.run(main())} waiting job(s) in {queue}")
    return 0


def cleanup_command(settings: ServiceSettings, args: list[str]) -> int:
    if len(args) != 1:
        print("usage: python -m jobs cleanup <worker id>", file=sys.stderr)
        return 2

    async def main() -> int | None:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                job_id = (await conn.execute(select(worker.c.job_id).where(
                    worker.c.worker_id == args[0]))).scalar()
                if job_id is None:
                    return None
                await job_handlers.cancel(conn, int(job_id), OPERATOR)
                return int(job_id)
        finally:
            await engine.dispose()

    done = asyncio.run(main())
    print("no job in hand" if done is None else f"cancelled job {done}")
    return 0 if done is not None else 1


def tail_command(settings: ServiceSettings, args: list[str]) -> int:
    """Follow the jobs as they change (id, queue, type, status, progress bar, message)."""
    once = "once" in args  # `tail once`: print what is there and exit

    async def main() -> None:
        engine = create_engine(settings.database_url)
        seen: dict[int, tuple[int, int, str]] = {}
        since = datetime.now(UTC) if not once else datetime.min.replace(tzinfo=UTC)
        if not once:
            print(f"following the jobs changed since {since:%H:%M:%S} UTC (Ctrl-C stops)",
                  file=sys.stderr, flush=True)
        try:
            while True:
                async with engine.connect() as conn:
                    rows = (await conn.execute(select(job).where(
                        job.c.date_modified >= since).order_by(job.c.date_modified))).all()
                for r in rows:
                    key = (r.status, r.progress, r.message)
                    if seen.get(r.id) != key:
                        seen[r.id] = key
                        bar = "#" * (r.progress // 5)
                        print(f"{r.date_modified:%H:%M:%S} job {r.id:<6} {r.queue:<7} "
                              f"{r.job_type:<22} {STATUS_NAMES.get(r.status, '?'):<9} "
                              f"[{bar:<20}] {r.progress:>3}% {r.message}", flush=True)
                if once:
                    return
                await asyncio.sleep(0.5)
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


COMMANDS = {
    "worker": worker_command("jobs", _noop_handlers),
    "scheduler": scheduler_command,
    "stats": stats_command,
    "clear": clear_command,
    "cleanup": cleanup_command,
    "tail": tail_command,
}
