"""`python -m <service> worker [QUEUE]... [--queue QUEUE]...`: the extra command that runs a
service's job handlers, one `WorkerRunner` per queue (each its own worker, with its own
heartbeats) in one process; without queues, every queue the service's job types are registered on.

A stop request that reaches any of the process's workers stops the process (after the jobs in
hand): the supervisor starts it again, with all its queues. The process serves /metrics and
/healthz on the ops port when one is set (ops_port.py). `python -m <service> all --with 'worker
[QUEUE]...'` runs the same workers inside its process (`serve_workers`)."""

from __future__ import annotations

import asyncio
import functools
import signal
from collections.abc import Awaitable, Callable, Mapping

import click

from misp_contracts.events.jobs import JOB_TYPES
from misp_platform import ops_port
from misp_platform.cli_support import OK, PartCommand, epilog, with_settings
from misp_platform.config import DATABASE, KAFKA, ServiceSettings
from misp_platform.db import engine_for
from misp_platform.worker import JobHandler, WorkerRunner


def owned_queues(service: str) -> list[str]:
    """The queues of the job types `service` owns, in registration order."""
    queues: list[str] = []
    for job_type in JOB_TYPES.values():
        if job_type.owner == service:
            queues += [q for q in job_type.queues if q not in queues]
    return queues


def worker_command(service: str,
                   handlers: Callable[[ServiceSettings], Mapping[str, JobHandler]]
                   ) -> click.Command:
    """The command; `handlers(settings)` gives the handler of each job type the service owns."""
    served = owned_queues(service)
    choice = click.Choice(served)

    def chosen_queues(positional: tuple[str, ...], options: tuple[str, ...]) -> list[str]:
        return list(dict.fromkeys((*positional, *options))) or served

    def part(settings: ServiceSettings, positional: tuple[str, ...],
             options: tuple[str, ...]) -> Callable[[asyncio.Event], Awaitable[None]]:
        return functools.partial(serve_workers, service, handlers, settings,
                                 chosen_queues(positional, options))

    @click.command(name="worker", cls=PartCommand, part=part, epilog=epilog())
    @click.argument("positional", metavar="[QUEUE]...", nargs=-1, type=choice)
    @click.option("--queue", "-q", "options", multiple=True, type=choice,
                  help="A queue to serve (repeatable; same as a QUEUE argument).")
    @with_settings(DATABASE, KAFKA)
    def command(settings: ServiceSettings, positional: tuple[str, ...],
                options: tuple[str, ...]) -> int:
        run_workers(service, handlers, settings, chosen_queues(positional, options))
        return OK

    command.help = (f"Run the {service} service's job handlers until SIGTERM or SIGINT.\n\n"
                    f"One worker per QUEUE (default: every queue of its job types: "
                    f"{', '.join(served)}), each with its own heartbeats; a stop request to any "
                    "of them stops the process once the jobs in hand are done.")
    return command


def run_workers(service: str, handlers: Callable[[ServiceSettings], Mapping[str, JobHandler]],
                settings: ServiceSettings, chosen: list[str]) -> None:
    """One `WorkerRunner` per queue in `chosen`, until a signal or any of them stops."""

    async def main() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        async with ops_port.serving(settings) as ops, ops.alive():
            await serve_workers(service, handlers, settings, chosen, stop)

    asyncio.run(main())


async def serve_workers(service: str,
                        handlers: Callable[[ServiceSettings], Mapping[str, JobHandler]],
                        settings: ServiceSettings, chosen: list[str],
                        stop: asyncio.Event) -> None:
    """One `WorkerRunner` per queue in `chosen`, until `stop` is set; one of them leaving (a
    stop request) sets `stop`, so the others leave too."""
    engine = engine_for(settings, long_statements=True)
    jobs = handlers(settings)
    group = settings.worker_group or None

    async def serve(queue: str) -> None:
        try:
            await WorkerRunner(
                service=service, queue=queue, engine=engine,
                bootstrap_servers=settings.kafka_bootstrap_servers, handlers=jobs,
                group=f"{group}-{queue}" if group and len(chosen) > 1 else group,
                heartbeat_s=settings.worker_heartbeat_s,
                prefetch=settings.worker_prefetch).run(stop)
        finally:
            stop.set()  # one worker leaving takes the process down: all restart

    try:
        await asyncio.gather(*(serve(q) for q in chosen))
    finally:
        await engine.dispose()
