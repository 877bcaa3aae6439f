"""Failpoints for crash tests: `MISP_FAILPOINTS="relay.after_send=2"` SIGKILLs the process
the 2nd time the named point is reached (`=1` or no count: the first time)."""

from __future__ import annotations

import os
import signal
from collections import Counter

_hits: Counter[str] = Counter()


def _armed() -> dict[str, int]:
    spec = os.environ.get("MISP_FAILPOINTS", "")
    points: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = item.partition("=")
        points[name] = int(count or 1)
    return points


def hit(name: str) -> None:
    """Kill this process without any cleanup if the failpoint is armed and its count reached."""
    armed = _armed()
    if name not in armed:
        return
    _hits[name] += 1
    if _hits[name] >= armed[name]:
        os.kill(os.getpid(), signal.SIGKILL)
