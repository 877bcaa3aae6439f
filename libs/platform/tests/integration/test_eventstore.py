"""The event store on the real PostgreSQL: append, load, optimistic concurrency, outbox."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor, from_kafka, to_kafka
from misp_platform.db import event, outbox
from misp_platform.eventstore import ConcurrencyError, EventStore

from .support import counter_event

Counter = counter_event("test.eventstore")
store = EventStore("test")
actor = Actor(user_id=1, email="admin@admin.test", org_id=1, client_ip="127.0.0.1")


async def count(engine: AsyncEngine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_appended_events_load_back_in_order_with_their_envelope(engine: AsyncEngine) -> None:
    stream = str(uuid.uuid4())
    async with engine.begin() as conn:
        await store.append(conn, stream_id=stream, stream_type="counter", expected_version=0,
                           events=[Counter(n=1), Counter(n=2)], actor=actor)
    async with engine.begin() as conn:
        await store.append(conn, stream_id=stream, stream_type="counter", expected_version=2,
                           events=[Counter(n=3)], actor=actor, correlation_id="corr-1")
    async with engine.connect() as conn:
        loaded = await store.load(conn, stream)
    assert [e.version for e in loaded] == [1, 2, 3]
    assert [e.data["n"] for e in loaded] == [1, 2, 3]
    assert loaded[2].metadata["correlationid"] == "corr-1"
    assert loaded[0].metadata["actor"]["client_ip"] == "127.0.0.1"
    assert await count(engine, outbox) == 3


async def test_a_stale_expected_version_is_a_concurrency_error_and_writes_nothing(
        engine: AsyncEngine) -> None:
    stream = str(uuid.uuid4())
    async with engine.begin() as conn:
        await store.append(conn, stream_id=stream, stream_type="counter", expected_version=0,
                           events=[Counter(n=1)], actor=actor)
    with pytest.raises(ConcurrencyError):
        async with engine.begin() as conn:
            await store.append(conn, stream_id=stream, stream_type="counter",
                               expected_version=0, events=[Counter(n=99)], actor=actor)
    assert await count(engine, event) == 1
    assert await count(engine, outbox) == 1


async def test_two_writers_racing_on_one_stream_one_wins(engine: AsyncEngine) -> None:
    stream = str(uuid.uuid4())
    async with engine.connect() as first, engine.connect() as second:
        # Both loaded the stream at version 0; the first to commit wins.
        await store.append(first, stream_id=stream, stream_type="counter", expected_version=0,
                           events=[Counter(n=1)], actor=actor)
        await first.commit()
        with pytest.raises(ConcurrencyError):
            await store.append(second, stream_id=stream, stream_type="counter",
                               expected_version=0, events=[Counter(n=2)], actor=actor)
        await second.rollback()
    async with engine.connect() as conn:
        assert [e.data["n"] for e in await store.load(conn, stream)] == [1]


async def test_a_rolled_back_transaction_leaves_neither_events_nor_outbox_rows(
        engine: AsyncEngine) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with engine.begin() as conn:
            await store.append(conn, stream_id=str(uuid.uuid4()), stream_type="counter",
                               expected_version=0, events=[Counter(n=1)], actor=actor)
            raise Boom
    assert await count(engine, event) == 0
    assert await count(engine, outbox) == 0


async def test_the_outbox_row_is_the_kafka_record_of_the_envelope(engine: AsyncEngine) -> None:
    """The store writes each record's headers as text from the start: what the relay sends is
    still exactly `to_kafka` of the envelope returned (non-ASCII attributes included)."""
    stream = str(uuid.uuid4())
    someone = Actor(user_id=7, email="zoë@admin.test", org_name="Örg \u2603",
                    client_ip="::1")
    async with engine.begin() as conn:
        envelopes = await store.append(conn, stream_id=stream, stream_type="counter",
                                       expected_version=0, events=[Counter(n=1), Counter(n=2)],
                                       actor=someone)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.topic, outbox.c.message_key, outbox.c.headers,
                                          outbox.c.payload).order_by(outbox.c.position))).all()
    assert len(rows) == 2
    for row, envelope in zip(rows, envelopes, strict=True):
        headers, value = to_kafka(envelope)
        assert (row.topic, row.message_key) == ("test.eventstore", stream)
        assert [(name, text.encode()) for name, text in row.headers] == headers
        assert bytes(row.payload) == value
        assert from_kafka(headers, bytes(row.payload)) == envelope
