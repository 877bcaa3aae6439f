"""Helpers for the audit service's tests: test topics, publishing events as their owners
would, an in-process consumer and relay, deadline-based waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.consumer import AuditConsumer
from audit.projections.log import Options
from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.topics import Topic
from misp_platform.kafka import create_producer, ensure_topics
from misp_platform.relay import OutboxRelay


@dataclass
class Namespace:
    """Test topics `audittest.<hex>.<context>.<aggregate>.v1`, matched by `pattern` only."""

    bootstrap: str
    prefix: str = field(default_factory=lambda: f"audittest.{uuid.uuid4().hex[:10]}")
    topics: set[str] = field(default_factory=set)

    @property
    def pattern(self) -> str:
        return "^" + self.prefix.replace(".", r"\.") + r"\."

    def topic_of(self, event_topic: str) -> str:
        return f"{self.prefix}.{event_topic.removeprefix('misp.')}"

    async def ensure(self, *names: str, partitions: int = 2) -> None:
        missing = [n for n in names if n not in self.topics]
        if missing:
            await ensure_topics(self.bootstrap, [Topic(n, owner="test", partitions=partitions)
                                                 for n in missing])
            self.topics.update(missing)

    async def publish(self, items: Sequence[tuple[str, Envelope]]) -> None:
        """`(original topic, envelope)` pairs, sent to this namespace's copy of the topic."""
        await self.ensure(*(self.topic_of(t) for t, _ in items))
        producer = create_producer(self.bootstrap)
        await producer.start()
        try:
            for topic, envelope in items:
                headers, value = to_kafka(envelope)
                await producer.send_and_wait(
                    self.topic_of(topic), value=value, headers=headers,
                    key=(envelope.subject or envelope.id).encode())
        finally:
            await producer.stop()


def envelope_of(event: DomainEvent, *, actor: Actor | None = None,
                subject: str | None = None, **kwargs: Any) -> Envelope:
    return Envelope(source="/" + event.type.split(".")[1], type=event.type,
                    subject=subject or str(uuid.uuid4()), actor=actor or Actor.system(),
                    data=event.model_dump(mode="json"), **kwargs)


@asynccontextmanager
async def running_consumer(engine: AsyncEngine, ns: Namespace, *,
                           options: Options | None = None,
                           group: str | None = None) -> AsyncIterator[AuditConsumer]:
    runner = AuditConsumer(service="audit", group=group or f"audit-test-{uuid.uuid4().hex}",
                           engine=engine, bootstrap_servers=ns.bootstrap, handlers={},
                           pattern=ns.pattern, options=options)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@asynccontextmanager
async def running_relay(engine: AsyncEngine, url: str, bootstrap: str) -> AsyncIterator[None]:
    producer = create_producer(bootstrap)
    await producer.start()
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxRelay(engine, url, producer, poll_interval_s=0.2).run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await producer.stop()


async def wait_until(check: Callable[[], Awaitable[Any]], timeout_s: float = 30,
                     what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last: {result!r})")
        await asyncio.sleep(0.1)


async def count_entries(engine: AsyncEngine, where: str = "true",
                        params: dict[str, Any] | None = None) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT count(*) FROM log_entry WHERE {where}"),
                                       params or {})).scalar_one())
