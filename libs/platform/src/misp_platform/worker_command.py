"""`python -m <service> worker <queue>`: the extra command that runs a service's job handlers
in a `WorkerRunner` for one of the queues its job types are registered on."""

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
        if len(args) != 1 or args[0] not in queues:
            print(f"usage: python -m {service} worker <{'|'.join(queues)}>", file=sys.stderr)
            return 2

        async def main() -> None:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().add_signal_handler(sig, stop.set)
            engine = create_engine(settings.database_url)
            try:
                runner = WorkerRunner(
                    service=service, queue=args[0], engine=engine,
                    bootstrap_servers=settings.kafka_bootstrap_servers,
                    handlers=handlers(settings),
                    group=getattr(settings, "worker_group", "") or None,
                    heartbeat_s=getattr(settings, "worker_heartbeat_s", 2.0),
                    prefetch=getattr(settings, "worker_prefetch", 1))
                await runner.run(stop)
            finally:
                await engine.dispose()

        asyncio.run(main())
        return 0

    return command
