"""Wait until a Kafka broker answers metadata requests (an open port is not enough).

usage: kafka_ready.py [--bootstrap HOST:PORT] [--timeout SECONDS] [--pid PID]
Exit 0 when an aiokafka admin client can list topics, 1 on timeout or when --pid dies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _probe(bootstrap: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    from misp_platform.kafka import client_options  # as the broker's admin (MISP_KAFKA_*)

    admin = AIOKafkaAdminClient(**client_options(bootstrap), request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--pid", type=int, default=None)
    a = p.parse_args()
    end = time.monotonic() + a.timeout
    last: BaseException | None = None
    while time.monotonic() < end:
        if not _alive(a.pid):
            print(f"kafka: process {a.pid} exited", file=sys.stderr)
            return 1
        try:
            await asyncio.wait_for(_probe(a.bootstrap), timeout=10)
            return 0
        except Exception as exc:  # not ready yet
            last = exc
        await asyncio.sleep(0.5)
    print(f"kafka: not ready after {a.timeout:.0f}s: {last!r}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    import logging

    logging.disable(logging.CRITICAL)  # aiokafka logs every refused connection
    sys.exit(asyncio.run(main()))
