"""Failpoints for crash and lag tests: `MISP_FAILPOINTS="relay.after_send=2"` SIGKILLs the
process the 2nd time the named point is reached (`=1` or no count: the first time);
`consumer.before_batch=delay:300` makes every pass through an async point (`pause`) wait 300 ms,
as a slow or lagging consumer would. A service's main consumer hits `consumer.*`, its principals
consumer `principals.*`, the relay `relay.after_send`, a job worker `worker.after_start` (also a
pause: between its claims' acknowledgement and its offsets' commit) and `worker.before_commit`,
the jobs scheduler `scheduler.after_claim` and `scheduler.before_commit`, the mailer's delivery
`mailer.after_send` (between a send and the record of its batch)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


DELAY_PREFIX = "delay:"


def _spec() -> dict[str, str]:
    spec = os.environ.get("MISP_FAILPOINTS", "")
    points: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, value = item.partition("=")
        points[name] = value
    return points


def _armed() -> dict[str, int]:
    return {name: int(value or 1) for name, value in _spec().items()
            if not value.startswith(DELAY_PREFIX)}


async def pause(name: str) -> None:
    """Wait the delay armed for this point (`name=delay:MS`), if any."""
    value = _spec().get(name, "")
    if value.startswith(DELAY_PREFIX):
        await asyncio.sleep(int(value[len(DELAY_PREFIX):]) / 1000)


def hit(name: str) -> None:
    """Kill this process without any cleanup if the failpoint is armed and its count reached."""
    armed = _armed()
    if name not in armed:
        return
    _hits[name] += 1
    if _hits[name] >= armed[name]:
        os.kill(os.getpid(), signal.SIGKILL)
