"""The tables every service has (event store, outbox, processed marks), the engine factory and
`copy_rows` (COPY on the caller's transaction).

Each service's first migration spells these out (tests use `create_platform_tables`); the
service's own tables live beside them in its own metadata.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

if TYPE_CHECKING:
    from misp_platform.config import ServiceSettings

metadata = MetaData()

# The append-only event store: one row per event; unique (stream, version) is the concurrency check.
event = Table(
    "event",
    metadata,
    Column("stream_id", UUID(as_uuid=False), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_id", UUID(as_uuid=False), nullable=False, unique=True),
    Column("stream_type", String(64), nullable=False),
    Column("type", String(200), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("metadata", JSONB, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("stream_id", "version", name="event_pkey"),
)

snapshot = Table(
    "snapshot",
    metadata,
    Column("stream_id", UUID(as_uuid=False), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("state", JSONB, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Messages waiting for the relay; a row is deleted once Kafka acknowledged it.
outbox = Table(
    "outbox",
    metadata,
    Column("position", BigInteger, Identity(always=True), primary_key=True),
    Column("topic", String(249), nullable=False),
    Column("message_key", Text, nullable=True),
    Column("headers", JSONB, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Outbox messages Kafka refused for good (too large, not authorised): moved here with the error
# so the relay goes on; an operator lists, retries or drops them (`python -m <svc> outbox`).
parked_message = Table(
    "parked_message",
    metadata,
    Column("position", BigInteger, primary_key=True),  # its position in the outbox
    Column("topic", String(249), nullable=False),
    Column("message_key", Text, nullable=True),
    Column("headers", JSONB, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# What each consumer has applied: written in the same transaction as the effect.
processed_message = Table(
    "processed_message",
    metadata,
    Column("consumer", String(120), nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("outcome", String(20), nullable=False),  # applied | skipped | dead_lettered
    Column("topic", String(249), nullable=True),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "message_id", name="processed_message_pkey"),
)

# How far each consumer group has applied each partition: written in the same transaction as
# the effects of a batch (and, for partitions with nothing new, once their position is known), so
# a reader can wait until its projection holds everything Kafka held when it asked
# (consistency.py). `next_offset` only moves forward.
consumer_position = Table(
    "consumer_position",
    metadata,
    Column("consumer", String(120), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "topic", "partition", name="consumer_position_pkey"),
)

# A stream (topic + key) one of whose messages a consumer dead-lettered: its later events may be
# applied without it, so the stream is shown in diagnostics until the letter is replayed.
flagged_stream = Table(
    "flagged_stream",
    metadata,
    Column("consumer", String(120), nullable=False),
    Column("topic", String(249), nullable=False),
    Column("stream_key", Text, nullable=False),
    Column("message_id", String(200), nullable=False),
    Column("error", Text, nullable=False),
    Column("flagged_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "message_id", name="flagged_stream_pkey"),
)

OUTBOX_CHANNEL = "outbox"
# The relay notifies this channel in the transaction that deletes what Kafka acknowledged.
PUBLISHED_CHANNEL = "outbox_published"
# Consumers notify this channel (payload: the group) in the transaction that moves a position.
PROGRESS_CHANNEL = "consumer_progress"

# Wakes the relay as soon as a transaction that wrote outbox rows commits (each service's first
# migration spells the same statements).
OUTBOX_NOTIFY_DDL = (
    """CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger AS $$
    BEGIN PERFORM pg_notify('outbox', ''); RETURN NULL; END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()""",
)


# The defaults of the settings `db_*_s` (config.py), for an engine made without settings.
CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0
POOL_TIMEOUT_S = 10.0


def connect_args(connect_timeout_s: float, statement_timeout_s: float) -> dict[str, Any]:
    """psycopg's connection arguments for these timeouts (0: none). libpq counts the connect
    timeout in whole seconds; the statement timeout is a session setting sent at connect time,
    so it holds for every statement of every connection of the engine."""
    args: dict[str, Any] = {}
    if connect_timeout_s > 0:
        args["connect_timeout"] = max(1, math.ceil(connect_timeout_s))
    if statement_timeout_s > 0:
        args["options"] = f"-c statement_timeout={max(1, round(statement_timeout_s * 1000))}"
    return args


def create_engine(database_url: str, *, pool_size: int = 5,
                  connect_timeout_s: float = CONNECT_TIMEOUT_S,
                  statement_timeout_s: float = STATEMENT_TIMEOUT_S,
                  pool_timeout_s: float = POOL_TIMEOUT_S) -> AsyncEngine:
    """An async engine on psycopg 3; nothing connects until first use. A connection that cannot
    be opened within `connect_timeout_s`, a statement running past `statement_timeout_s` and a
    wait for a pooled connection past `pool_timeout_s` fail (errors.py answers them with 503)."""
    return create_async_engine(database_url, pool_size=pool_size, max_overflow=10,
                               pool_pre_ping=True, pool_timeout=pool_timeout_s,
                               connect_args=connect_args(connect_timeout_s, statement_timeout_s))


def engine_for(settings: ServiceSettings, *, long_statements: bool = False,
               pool_size: int = 5) -> AsyncEngine:
    """The engine of one of the service's processes, with the timeouts of its settings.
    `long_statements`: the operator commands and job workers whose statements may rightly run
    long (audit verify, prune, rebuild) get `db_long_statement_timeout_s` instead."""
    return create_engine(
        settings.database_url, pool_size=pool_size,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_s=(settings.db_long_statement_timeout_s if long_statements
                             else settings.db_statement_timeout_s),
        pool_timeout_s=settings.db_pool_timeout_s)


async def set_statement_timeout(conn: AsyncConnection, seconds: float) -> None:
    """This transaction's statement timeout (0: none), whatever the engine's: for a long
    operation run on a process's ordinary engine (the audit consumer's retention prune)."""
    await conn.execute(text("SELECT set_config('statement_timeout', :ms, true)"),
                       {"ms": str(max(0, round(seconds * 1000)))})


def libpq_url(database_url: str) -> str:
    """The plain libpq form of a SQLAlchemy URL (for psycopg's LISTEN connection)."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


async def copy_rows(conn: AsyncConnection, statement: str, rows: Iterable[Sequence[Any]]) -> None:
    """`COPY ... FROM STDIN` these rows on the connection's own psycopg connection: in the
    caller's transaction, one stream whatever the count, no statement to parse per row."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    async with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)
