"""Helpers of the jobs service's tests: auth headers, finding a message on a topic (polling and
groups that start at the end of their topics are in misp_platform.testing)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from misp_platform.kafka import client_options


def auth(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


async def find_on_topic(bootstrap: str, group: str, topic: str, key: str,
                        timeout_s: float = 30.0) -> Any:
    """The first envelope keyed `key` on `topic` after the group's committed offsets."""
    from misp_contracts.envelope import from_kafka

    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap), group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for r in records:
                    if r.key == key.encode():
                        return from_kafka(r.headers, r.value)
    finally:
        await consumer.stop()
    raise AssertionError(f"nothing keyed {key} on {topic} within {timeout_s}s")
