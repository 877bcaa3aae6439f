"""A relay that never stalls, against the real PostgreSQL and Kafka: a message Kafka refuses for
good is parked with its error while the ones after it are published; an operator retries or drops
it; and a write whose event would pass the cap is refused before anything is stored."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor
from misp_contracts.topics import Topic
from misp_platform import metrics
from misp_platform.db import event, outbox, parked_message
from misp_platform.eventstore import EventStore
from misp_platform.kafka import create_producer, ensure_topics
from misp_platform.outbox import (
    DEFAULT_MAX_MESSAGE_BYTES,
    MessageTooLargeError,
    OutgoingMessage,
    enqueue_messages,
    limit_message_bytes,
)
from misp_platform.outbox_commands import outbox_group
from misp_platform.parked import drop_parked, list_parked, retry_parked
from misp_platform.relay import OutboxRelay

from .support import counter_event, envelopes, read_topic

store = EventStore("test")
actor = Actor.system()
TOO_LARGE = 2 * 1024 * 1024  # over the broker's and the producer's 1 MiB


async def append(engine: AsyncEngine, model, n: int) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="counter",
                           expected_version=0, events=[model(n=n)], actor=actor)


async def force_into_outbox(engine: AsyncEngine, topic: str, size: int) -> None:
    """A row past the cap, as an older version of the code (or a bug) could have left one."""
    limit_message_bytes(size + 1024)
    try:
        async with engine.begin() as conn:
            await enqueue_messages(conn, [OutgoingMessage(topic=topic, key="big", headers=[],
                                                          value=b"x" * size)])
    finally:
        limit_message_bytes(DEFAULT_MAX_MESSAGE_BYTES)


async def count(engine: AsyncEngine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_message_kafka_refuses_is_parked_and_the_ones_after_it_are_published(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    await append(engine, Counter, 1)
    await force_into_outbox(engine, topic, TOO_LARGE)
    await append(engine, Counter, 2)
    parked_before = metrics.outbox_parked_total._value.get()
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        assert await OutboxRelay(engine, platform_db, producer).publish_pending() == 2
    finally:
        await producer.stop()

    published = envelopes(await read_topic(kafka_bootstrap, topic, 2))
    assert sorted(e.data["n"] for e in published) == [1, 2]  # two streams: two partitions
    assert await count(engine, outbox) == 0
    async with engine.connect() as conn:
        parked = await list_parked(conn)
    assert len(parked) == 1 and parked[0].topic == topic and parked[0].size == TOO_LARGE
    assert parked[0].error.startswith("MessageSizeTooLargeError")
    assert metrics.outbox_parked_total._value.get() == parked_before + 1


async def test_a_record_batch_the_broker_refuses_is_sent_again_one_by_one_parking_only_the_culprit(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str) -> None:
    topic = f"test.small.{uuid.uuid4().hex[:12]}"
    await ensure_topics(kafka_bootstrap, [Topic(topic, owner="test", partitions=1,
                                                extra_config={"max.message.bytes": "4096"})])
    Counter = counter_event(topic)
    stream = str(uuid.uuid4())
    async with engine.begin() as conn:
        await store.append(conn, stream_id=stream, stream_type="counter", expected_version=0,
                           events=[Counter(n=1)], actor=actor)
        # Under the cap and the producer's limit, over the topic's: the broker refuses the
        # record batch holding it, with the two events around it.
        await enqueue_messages(conn, [OutgoingMessage(topic=topic, key=stream, headers=[],
                                                      value=b"x" * 6000)])
        await store.append(conn, stream_id=stream, stream_type="counter", expected_version=1,
                           events=[Counter(n=2)], actor=actor)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        assert await OutboxRelay(engine, platform_db, producer).publish_pending() == 2
    finally:
        await producer.stop()
    assert [e.data["n"] for e in envelopes(await read_topic(kafka_bootstrap, topic, 2))] == [1, 2]
    assert await count(engine, outbox) == 0
    async with engine.connect() as conn:
        parked = await list_parked(conn)
    assert len(parked) == 1 and parked[0].size == 6000 and "TooLarge" in parked[0].error


async def test_a_retried_message_the_broker_refuses_is_parked_again_and_a_drop_removes_it(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()
    Counter = counter_event(topic)
    await force_into_outbox(engine, topic, TOO_LARGE)
    # A producer that lets it through: this time the broker refuses it.
    producer = create_producer(kafka_bootstrap, max_request_size=4 * TOO_LARGE)
    await producer.start()
    try:
        relay = OutboxRelay(engine, platform_db, producer)
        assert await relay.publish_pending() == 0
        async with engine.begin() as conn:
            first = (await list_parked(conn))[0].position
            assert await retry_parked(conn, [first]) == [first]
        assert await count(engine, parked_message) == 0 and await count(engine, outbox) == 1
        await append(engine, Counter, 3)
        assert await relay.publish_pending() == 1
    finally:
        await producer.stop()
    async with engine.connect() as conn:
        parked = await list_parked(conn)
    assert len(parked) == 1 and parked[0].position != first
    assert "TooLarge" in parked[0].error
    assert [e.data["n"] for e in envelopes(await read_topic(kafka_bootstrap, topic, 1))] == [3]
    async with engine.begin() as conn:
        assert await drop_parked(conn, None) == [parked[0].position]
    assert await count(engine, parked_message) == 0


async def test_an_event_over_the_cap_is_refused_before_anything_is_stored(
        engine: AsyncEngine, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic = await new_topic()

    class Note(counter_event(topic)):  # type: ignore[misc,valid-type]
        text: str = ""

    limit_message_bytes(64 * 1024)
    try:
        with pytest.raises(MessageTooLargeError) as refused:
            async with engine.begin() as conn:
                await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="counter",
                                   expected_version=0, events=[Note(n=1, text="\x01" * 20000)],
                                   actor=actor)
        # Each control character takes six bytes in JSON: the cap counts the encoded event.
        assert refused.value.size > 6 * 20000 and refused.value.limit == 64 * 1024
        async with engine.begin() as conn:
            await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="counter",
                               expected_version=0, events=[Note(n=2, text="ok" * 1000)],
                               actor=actor)
    finally:
        limit_message_bytes(DEFAULT_MAX_MESSAGE_BYTES)
    assert await count(engine, event) == 1 and await count(engine, outbox) == 1


async def test_the_operator_lists_retries_and_drops_parked_messages_from_the_command_line(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    from misp_platform.cli_support import CliContext
    from misp_platform.config import ServiceSettings

    topic = await new_topic()
    for _ in range(2):
        await force_into_outbox(engine, topic, TOO_LARGE)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        assert await OutboxRelay(engine, platform_db, producer).publish_pending() == 0
    finally:
        await producer.stop()
    async with engine.connect() as conn:
        first, second = [m.position for m in await list_parked(conn)]
    settings = ServiceSettings(database_url=platform_db, kafka_bootstrap_servers=kafka_bootstrap)
    obj = CliContext.of(settings)

    async def run(*args: str) -> tuple[int, str]:
        # In a thread: the command runs its own event loop, as from a shell.
        result = await asyncio.to_thread(CliRunner().invoke, outbox_group, list(args), obj=obj)
        assert result.exit_code in (0, 1), result.output
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output

    code, out = await run("list")
    assert code == 1 and "2 parked message(s)" in out and f'"position": {first}' in out
    assert (await run("drop", "--all"))[0] == 1  # no terminal, no --yes: refused
    assert await count(engine, parked_message) == 2
    code, out = await run("drop", "--dry-run", str(first))
    assert code == 0 and "would drop 1" in out and await count(engine, parked_message) == 2
    code, out = await run("retry", str(first), "999999")
    assert code == 1 and '"outcome": "not-found"' in out and '"queued-again"' in out
    assert await count(engine, outbox) == 1 and await count(engine, parked_message) == 1
    code, out = await run("drop", "--yes", str(second))
    assert code == 0 and '"dropped"' in out
    assert await count(engine, parked_message) == 0
    assert await run("list") == (0, "0 parked message(s)\n")


async def test_a_parked_message_is_critical_in_diagnostics_and_counted_in_metrics(
        engine: AsyncEngine, platform_db: str, kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    import httpx

    from misp_platform.app import create_app
    from misp_platform.config import settings_class

    settings = settings_class("parkedtest")(database_url=platform_db,
                                            kafka_bootstrap_servers=kafka_bootstrap)
    app = create_app(settings, engine=engine, configure_logs=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        before = (await client.get("/diagnostics")).json()["checks"]["outbox"]
        assert before["ok"] is True and before["parked_messages"] == 0
        await force_into_outbox(engine, await new_topic(), TOO_LARGE)
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            await OutboxRelay(engine, platform_db, producer).publish_pending()
        finally:
            await producer.stop()
        after = (await client.get("/diagnostics")).json()["checks"]["outbox"]
        scraped = (await client.get("/metrics")).text
    assert after["ok"] is False
    assert "critical: 1 message(s) parked" in after["error"]
    assert "python -m parkedtest outbox list" in after["error"]
    assert "\nparked_messages 1.0\n" in scraped
