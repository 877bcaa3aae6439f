"""One audit consumer process for bench/audit.py's scale-out part: an AuditConsumer as its
ingestion part builds one, in a consumer group that other such processes share.

    BENCH_AUDIT_DATABASE_URL=... python bench/audit_consumer.py --pattern '^p\\.' \\
        --group g --siem-topic p-siem [--batch-max 1000]

Prints "ready" on stdout once its consumer has joined and holds partitions; stops on SIGTERM
or SIGINT, or when its stdin closes (the benchmark that started it is gone).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

# This file is in bench/, next to bench/audit.py: that folder must not shadow the `audit` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from audit.consumer import AuditConsumer  # noqa: E402
from audit.projections.log import Options  # noqa: E402
from misp_platform.db import create_engine  # noqa: E402
from misp_platform.logging import configure_logging  # noqa: E402

# The database URL comes through the environment, not argv: `ps` shows argv to everyone.
DATABASE_URL_VAR = "BENCH_AUDIT_DATABASE_URL"


def _stop_when_stdin_closes(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """A parent that dies without a SIGTERM (SIGKILL, a crash) closes our stdin: stop then too,
    so no consumer outlives its benchmark. Watched by the event loop (no thread: a daemon
    thread blocked on stdin made the interpreter's shutdown abort)."""
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not os.read(fd, 4096):  # end of file: the parent is gone
            loop.remove_reader(fd)
            stop.set()

    loop.add_reader(fd, readable)


async def main(args: argparse.Namespace) -> None:
    configure_logging("audit-bench-consumer", level="warning")  # logs on stderr; stdout is ours
    bootstrap = os.environ.get("MISP_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    engine = create_engine(os.environ[DATABASE_URL_VAR])
    stop, ready = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _stop_when_stdin_closes(loop, stop)
    runner = AuditConsumer(service="audit", group=args.group, engine=engine,
                           bootstrap_servers=bootstrap, handlers={}, pattern=args.pattern,
                           options=Options(siem_topic=args.siem_topic),
                           batch_max=args.batch_max)
    try:
        task = asyncio.create_task(runner.run(stop, ready=ready))
        waiting = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print("ready", flush=True)
        else:
            waiting.cancel()
        await task  # runs until stopped; its exception, if any, ends the process non-zero
    finally:
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pattern", required=True, help="the topic pattern to subscribe to")
    parser.add_argument("--group", required=True, help="the consumer group")
    parser.add_argument("--siem-topic", required=True, help="where SIEM records are queued")
    parser.add_argument("--batch-max", type=int, default=1000)
    asyncio.run(main(parser.parse_args()))
