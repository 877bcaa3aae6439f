"""A relay as its own OS process, for crash tests: `python relay_process.py DB_URL BOOTSTRAP`.

Stops by itself once the outbox stays empty for a second; a failpoint may kill it first.
"""

from __future__ import annotations

import asyncio
import sys

from misp_platform.db import create_engine
from misp_platform.kafka import create_producer
from misp_platform.relay import OutboxRelay


async def main(database_url: str, bootstrap: str) -> None:
    engine = create_engine(database_url)
    producer = create_producer(bootstrap)
    await producer.start()
    relay = OutboxRelay(engine, database_url, producer, batch_size=10)
    idle = 0
    while idle < 10:
        idle = 0 if await relay.publish_pending() else idle + 1
        await asyncio.sleep(0.1)
    await producer.stop()
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
