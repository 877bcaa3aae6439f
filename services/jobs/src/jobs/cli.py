"""The jobs service's extra commands: `worker [QUEUE]...` (the no-op type), `scheduler`, and
the ops tools of `jobs.ops_commands` (`stats`, `clear`, `cleanup`, `tail`: the book's CakeResque
commands)."""

from __future__ import annotations

import asyncio
import functools

import click

from jobs.handlers.noop import run_noop
from jobs.ops_commands import OPS_COMMANDS
from jobs.scheduler import Scheduler
from jobs.settings import JobsSettings
from misp_contracts.topics import owned_by
from misp_platform import ops_port
from misp_platform.cli_support import OK, PartCommand, epilog, with_settings
from misp_platform.config import DATABASE, KAFKA, ServiceSettings
from misp_platform.db import engine_for
from misp_platform.kafka import ensure_topics
from misp_platform.roles import stop_on_signals
from misp_platform.worker import JobHandler
from misp_platform.worker_command import worker_command


def _noop_handlers(_settings: ServiceSettings) -> dict[str, JobHandler]:
    return {"noop": run_noop}


async def run_scheduler(settings: JobsSettings, stop: asyncio.Event) -> None:
    """The scheduler until `stop` is set (its own process's, or `all`'s, part)."""
    engine = engine_for(settings)
    try:
        await Scheduler(engine, poll_s=settings.scheduler_poll_s,
                        missed_beats=settings.missed_heartbeats,
                        beat_s=settings.scheduler_beat_s).run(stop)
    finally:
        await engine.dispose()


@click.command(name="scheduler", cls=PartCommand, epilog=epilog(),
               part=lambda settings: functools.partial(run_scheduler, settings))
@with_settings(DATABASE, KAFKA)
def scheduler_command(settings: JobsSettings) -> int:
    """Run the scheduler until SIGTERM or SIGINT.

    It ticks the due scheduled tasks, dispatches the due retries and fails over the jobs of dead
    workers; run two or more (each tick runs once, whoever claims it).
    """

    async def main() -> None:
        async with ops_port.serving(settings) as ops:
            await ensure_topics(settings.kafka_bootstrap_servers, owned_by("jobs"))
            async with ops.alive():
                await run_scheduler(settings, stop_on_signals())

    asyncio.run(main())
    return OK


COMMANDS: list[click.Command] = [worker_command("jobs", _noop_handlers),
                                 scheduler_command, *OPS_COMMANDS]
