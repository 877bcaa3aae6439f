"""`python -m <service> worker [queue ...]`: the extra command that runs a service's job
handlers, one `WorkerRunner` per queue (each its own worker, with its own heartbeats) in one
process; without queues, every queue the service's job types are registered on.

A stop request that reaches any of the process's workers stops the process (after the jobs in
hand): the supervisor starts it again, with all its queues."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Mapping

from misp_contracts.events.jobs import JOB_TYPES
from misp_platform.config import ServiceSettings
from misp_platform.db import create_engine
from misp_platform.worker import JobHandler, WorkerRunner

WorkerCommand = Callable[[ServiceSettings, list[str]], int]


def owned_queues(service: str) -> list[str]:
    """The queues of the job types `service` owns, in registration order."""
    queues: list[str] = []
    for job_type in JOB_TYPES.values():
        if job_type.owner == service:
            queues += [q for q in job_type.queues if q not in queues]
    return queues


def worker_command(service: str,
                   handlers: Callable[[ServiceSettings], Mapping[str, JobHandler]]
                   ) -> WorkerCommand:
    """The command; `handlers(settings)` gives the handler of each job type the service owns."""

    def command(settings: ServiceSettings, args: list[str]) -> int:
        queues = owned_queues(service)
        chosen = list(dict.fromkeys(args)) or queues
        if not set(chosen) <= set(queues):
            print(f"usage: python -m {service} worker [{' '.join(queues)}] (one or more; "
                  "none: all)", file=sys.stderr)
            return 2

        async def main() -> None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            engine = create_engine(settings.database_url)
            jobs = handlers(settings)

            group = getattr(settings, "worker_group", "") or None

            async def serve(queue: str) -> None:
                try:
                    await WorkerRunner(
                        service=service, queue=queue, engine=engine,
                        bootstrap_servers=settings.kafka_bootstrap_servers, handlers=jobs,
                        group=f"{group}-{queue}" if group and len(chosen) > 1 else group,
                        heartbeat_s=getattr(settings, "worker_heartbeat_s", 2.0),
                        prefetch=getattr(settings, "worker_prefetch", 1)).run(stop)
                finally:
                    stop.set()  # one worker leaving takes the process down: all restart

            try:
                await asyncio.gather(*(serve(q) for q in chosen))
            finally:
                await engine.dispose()

        asyncio.run(main())
        return 0

    return command
