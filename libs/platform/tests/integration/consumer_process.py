"""A consumer as its own OS process, for crash tests.

`python consumer_process.py DB_URL BOOTSTRAP TOPIC GROUP EXPECTED`: applies counter events to
`effect_log` (deliberately not idempotent by itself) and exits once EXPECTED effects exist.
"""

from __future__ import annotations

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Envelope
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import create_engine


async def apply(conn: AsyncConnection, envelope: Envelope) -> None:
    await conn.execute(text("INSERT INTO effect_log (event_id, n) VALUES (:id, :n)"),
                       {"id": envelope.id, "n": envelope.data["n"]})


async def main(database_url: str, bootstrap: str, topic: str, group: str, expected: int) -> None:
    engine = create_engine(database_url)
    runner = ConsumerRunner(service="test", group=group, engine=engine,
                            bootstrap_servers=bootstrap, topics=[topic], batch_max=20,
                            handlers={"misp.test.counter.incremented.v1": apply})
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while not task.done():
        async with engine.connect() as conn:
            done = (await conn.execute(text("SELECT count(*) FROM effect_log"))).scalar_one()
        if done >= expected:  # the test reads the effects, not the offsets: stop at once
            break
        await asyncio.sleep(0.2)
    stop.set()
    await task
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
