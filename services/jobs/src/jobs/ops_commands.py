"""The jobs ops commands (the book's CakeResque ones): `stats`, `clear QUEUE`,
`cleanup WORKER_ID`, `tail [--once]`."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from jobs.adapters import queries
from jobs.handlers import jobs as job_handlers
from misp_contracts.envelope import Actor
from misp_contracts.events.jobs import QUEUES, STATUS_NAMES
from misp_platform.cli_support import (
    FAILED,
    OK,
    confirm,
    dry_run_option,
    epilog,
    with_settings,
    yes_option,
)
from misp_platform.config import DATABASE, ServiceSettings
from misp_platform.db import engine_for
from misp_platform.progress import progress

OPERATOR = Actor(email="cli", org_name="SYSTEM")
CLEAR_BATCH = 200  # jobs cancelled per transaction by `clear`


@click.command(name="stats", epilog=epilog())
@with_settings(DATABASE)
def stats_command(settings: ServiceSettings) -> int:
    """Print the counts per worker and per queue.

    Each worker's succeeded and failed jobs and whether it is alive, then the jobs of each queue
    by status.
    """

    async def main() -> None:
        engine = engine_for(settings)
        try:
            async with engine.connect() as conn:
                click.echo(f"{'worker':<48} {'queue':<8} {'ok':>6} {'failed':>6} {'alive':>5}")
                now = datetime.now(UTC)
                for w in await queries.workers_by_queue(conn):
                    alive = w.stopped_at is None and (now - w.last_seen_at).total_seconds() \
                        < 3 * w.interval_s
                    click.echo(f"{w.worker_id:<48} {w.queue:<8} {w.succeeded:>6} "
                               f"{w.failed:>6} {'yes' if alive else 'no':>5}")
                click.echo()
                click.echo(f"{'queue':<8} " + " ".join(f"{STATUS_NAMES[s]:>9}"
                                                       for s in (1, 2, 3, 4)))
                counts = await queries.job_counts_per_queue_and_status(conn)
                for q in QUEUES:
                    click.echo(f"{q:<8} " + " ".join(f"{counts.get(q, {}).get(s, 0):>9}"
                                                     for s in (1, 2, 3, 4)))
        finally:
            await engine.dispose()

    asyncio.run(main())
    return OK


async def _clear(engine: AsyncEngine, queue: str, ids: list[int]) -> int:
    cancelled = 0
    with progress(f"clearing {queue}", len(ids)) as bar:
        for start in range(0, len(ids), CLEAR_BATCH):
            chunk = ids[start:start + CLEAR_BATCH]
            async with engine.begin() as conn:
                cancelled += await job_handlers.cancel_if_waiting(conn, chunk, OPERATOR)
            bar.advance(len(chunk))
    return cancelled


@click.command(name="clear", epilog=epilog(), help=f"""Cancel every job waiting in QUEUE.

    QUEUE is one of {", ".join(QUEUES)}. A batch per transaction; a job that started meanwhile is
    left alone. Cancels jobs: asks for confirmation.
    """)
@click.argument("queue", metavar="QUEUE", type=click.Choice(QUEUES))
@yes_option
@dry_run_option
@with_settings(DATABASE)
def clear_command(settings: ServiceSettings, queue: str, yes: bool, dry_run: bool) -> int:
    async def waiting(engine: AsyncEngine) -> list[int]:
        async with engine.connect() as conn:
            return await queries.waiting_in_queue(conn, queue)

    async def main() -> None:
        engine = engine_for(settings)
        try:
            ids = await waiting(engine)
            if dry_run:
                click.echo(f"would cancel {len(ids)} waiting job(s) in {queue} (dry run)")
                return
            if ids:
                confirm(f"Cancel the {len(ids)} job(s) waiting in {queue}?", yes=yes)
            click.echo(f"cancelled {await _clear(engine, queue, ids)} waiting job(s) in {queue}")
        finally:
            await engine.dispose()

    asyncio.run(main())
    return OK


async def _job_in_hand(engine: AsyncEngine, worker_id: str) -> int | None:
    async with engine.connect() as conn:
        return await queries.job_in_hand(conn, worker_id)


async def _cancel_in_hand(engine: AsyncEngine, worker_id: str, job_id: int) -> bool:
    """Cancel `job_id` if the worker still has it in hand (it may have moved on)."""
    async with engine.begin() as conn:
        if await queries.job_in_hand(conn, worker_id) != job_id:
            return False
        await job_handlers.cancel(conn, job_id, OPERATOR)
        return True


@click.command(name="cleanup", epilog=epilog(
    "the worker has no job in hand, or moved on to another before it was cancelled"))
@click.argument("worker_id")
@yes_option
@dry_run_option
@with_settings(DATABASE)
def cleanup_command(settings: ServiceSettings, worker_id: str, yes: bool, dry_run: bool) -> int:
    """Cancel the job a worker has in hand.

    WORKER_ID is the worker's id, as `stats` shows it. The job's effect is rolled back and it
    counts as failed; the worker goes on with the next job. Asks for confirmation.
    """

    async def main() -> int:
        engine = engine_for(settings)
        try:
            job_id = await _job_in_hand(engine, worker_id)
            if job_id is None:
                click.echo("no job in hand")
                return FAILED
            if dry_run:
                click.echo(f"would cancel job {job_id} (dry run)")
                return OK
            confirm(f"Cancel job {job_id}, in the hand of {worker_id}?", yes=yes)
            if not await _cancel_in_hand(engine, worker_id, job_id):
                click.echo(f"the worker no longer has job {job_id} in hand: nothing cancelled")
                return FAILED
            click.echo(f"cancelled job {job_id}")
            return OK
        finally:
            await engine.dispose()

    return asyncio.run(main())


@click.command(name="tail", epilog=epilog())
@click.option("--once", is_flag=True,
              help="Print every job there is now, then exit (instead of following).")
@with_settings(DATABASE)
def tail_command(settings: ServiceSettings, once: bool) -> int:
    """Follow the jobs as they change, until Ctrl-C.

    One line per change: time, id, queue, type, status, a progress bar and the job's message.
    """

    async def main() -> None:
        engine = engine_for(settings)
        seen: dict[int, tuple[int, int, str]] = {}
        since = datetime.now(UTC) if not once else datetime.min.replace(tzinfo=UTC)
        if not once:
            click.echo(f"following the jobs changed since {since:%H:%M:%S} UTC (Ctrl-C stops)",
                       err=True)
        try:
            while True:
                async with engine.connect() as conn:
                    rows = await queries.jobs_changed_since(conn, since)
                for r in rows:
                    key = (r.status, r.progress, r.message)
                    if seen.get(r.id) != key:
                        seen[r.id] = key
                        bar = "#" * (r.progress // 5)
                        click.echo(f"{r.date_modified:%H:%M:%S} job {r.id:<6} {r.queue:<7} "
                                   f"{r.job_type:<22} {STATUS_NAMES.get(r.status, '?'):<9} "
                                   f"[{bar:<20}] {r.progress:>3}% {r.message}")
                if once:
                    return
                await asyncio.sleep(0.5)
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return OK


OPS_COMMANDS: list[click.Command] = [stats_command, clear_command, cleanup_command, tail_command]
