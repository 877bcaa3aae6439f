"""Helpers for the platform's integration tests: a test event model, reading a topic back."""

from __future__ import annotations

import time
from typing import ClassVar

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from misp_contracts.envelope import Envelope, from_kafka
from misp_contracts.events.base import DomainEvent
from misp_platform.kafka import client_options


def counter_event(topic_name: str) -> type[DomainEvent]:
    """An event model publishing to a test's own topic (not registered: tests only)."""

    class CounterIncremented(DomainEvent):
        type: ClassVar[str] = "misp.test.counter.incremented.v1"
        topic: ClassVar[str] = topic_name
        n: int

    return CounterIncremented


async def read_topic(bootstrap: str, topic: str, expected: int, *,
                     timeout_s: float = 30.0) -> list[ConsumerRecord]:  # type: ignore[type-arg]
    """Read a topic from the beginning until `expected` records arrived (or the deadline)."""
    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap), auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord] = []  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for rs in batches.values():
                records.extend(rs)
        # Linger briefly: anything beyond `expected` would be a duplicate worth seeing.
        batches = await consumer.getmany(timeout_ms=300)
        for rs in batches.values():
            records.extend(rs)
    finally:
        await consumer.stop()
    return records


def envelopes(records: list[ConsumerRecord]) -> list[Envelope]:  # type: ignore[type-arg]
    return [from_kafka(r.headers, r.value) for r in records]


