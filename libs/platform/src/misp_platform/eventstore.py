"""An append-only event store on PostgreSQL with optimistic concurrency per stream.

`append` writes the events and their outbox rows in the caller's transaction: one transaction
holds the change and what will be published about it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_platform import outbox, tracing
from misp_platform.db import event, snapshot
from misp_platform.outbox import OutboxRow

# All events of a call in one JSON parameter: one statement, one round trip.
INSERT_EVENTS_SQL = """
    INSERT INTO event (stream_id, version, event_id, stream_type, type, data, metadata)
    SELECT r.stream_id, r.version, r.event_id, r.stream_type, r.type, r.data, r.metadata
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS r(stream_id uuid, version int, event_id uuid, stream_type text, type text,
              data jsonb, metadata jsonb)
"""
INSERT_EVENTS = text(INSERT_EVENTS_SQL)
# The events and their outbox rows in one statement (one round trip, one parse): PostgreSQL
# runs a data-modifying WITH to completion whether or not the outer insert reads it.
INSERT_EVENTS_AND_MESSAGES = text(
    f"WITH appended AS ({INSERT_EVENTS_SQL}) {outbox.INSERT_ROWS_SQL}")


def _json(rows: list[dict[str, Any]]) -> str:
    """The rows as JSON: by orjson, or by json for what orjson refuses (an integer past 64
    bits, which PostgreSQL's jsonb takes)."""
    try:
        return orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(rows)


class ConcurrencyError(Exception):
    """Another writer appended to the stream since it was loaded (retry once, then 409)."""


@dataclass(frozen=True)
class StoredEvent:
    stream_id: str
    version: int
    event_id: str
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class Append:
    """New events for one stream, expected to follow `expected_version`."""

    stream_id: str
    stream_type: str
    expected_version: int
    events: tuple[DomainEvent, ...]
    actor: Actor
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True)
class Snapshot:
    stream_id: str
    version: int
    state: dict[str, Any]


class EventStore:
    """The event store of one service (its name becomes the CloudEvents `source`)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.source = f"/{service}"

    async def append(
        self,
        conn: AsyncConnection,
        *,
        stream_id: str,
        stream_type: str,
        expected_version: int,
        events: Sequence[DomainEvent],
        actor: Actor,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        publish: bool = True,
    ) -> list[Envelope]:
        """Append after `expected_version` (0 for a new stream); raise ConcurrencyError on a race.

        After a ConcurrencyError the transaction is aborted: roll it back, reload, decide again.
        """
        return await self.append_many(conn, [Append(
            stream_id=stream_id, stream_type=stream_type, expected_version=expected_version,
            events=tuple(events), actor=actor, correlation_id=correlation_id,
            causation_id=causation_id)], publish=publish)

    async def append_many(self, conn: AsyncConnection, appends: Sequence[Append], *,
                          publish: bool = True) -> list[Envelope]:
        """Append to several streams in one statement (the events, then their outbox rows)."""
        envelopes: list[Envelope] = []
        messages: list[OutboxRow] = []
        rows: list[dict[str, Any]] = []
        for a in appends:
            for i, e in enumerate(a.events, start=1):
                # The trace context goes into the stored metadata too: the event says which
                # request (or reaction) wrote it.
                env = tracing.stamped(Envelope(
                    source=self.source, type=e.type, subject=a.stream_id,
                    streamversion=a.expected_version + i, correlationid=a.correlation_id,
                    causationid=a.causation_id, actor=a.actor, data=e.model_dump(mode="json"),
                ))
                envelopes.append(env)
                rows.append({
                    "stream_id": a.stream_id, "version": env.streamversion, "event_id": env.id,
                    "stream_type": a.stream_type, "type": env.type, "data": env.data,
                    "metadata": env.model_dump(mode="json", exclude={"data"}),
                })
                if publish:
                    messages.append(OutboxRow.of_envelope(env, topic=e.topic, key=a.stream_id))
        if not rows:
            return envelopes
        try:
            if messages:
                result = await conn.execute(INSERT_EVENTS_AND_MESSAGES, {
                    "rows": _json(rows), "messages": outbox.rows_json(messages)})
                outbox.note_written(row[0] for row in result)
            else:
                await conn.execute(INSERT_EVENTS, {"rows": _json(rows)})
        except IntegrityError as exc:
            if "event_pkey" in str(exc.orig):
                raise ConcurrencyError(
                    "a stream moved past its expected version: "
                    + ", ".join(f"{a.stream_id}@{a.expected_version}" for a in appends)) from exc
            raise
        return envelopes

    async def load(self, conn: AsyncConnection, stream_id: str,
                   after_version: int = 0) -> list[StoredEvent]:
        """The stream's events in version order (after a snapshot's version, if given)."""
        result = await conn.execute(
            select(event).where(event.c.stream_id == stream_id, event.c.version > after_version)
            .order_by(event.c.version)
        )
        return [
            StoredEvent(stream_id=str(r.stream_id), version=r.version, event_id=str(r.event_id),
                        type=r.type, data=r.data, metadata=r.metadata,
                        recorded_at=r.recorded_at)
            for r in result
        ]

    async def load_snapshot(self, conn: AsyncConnection, stream_id: str) -> Snapshot | None:
        row = (await conn.execute(
            select(snapshot).where(snapshot.c.stream_id == stream_id))).first()
        return None if row is None else Snapshot(str(row.stream_id), row.version, row.state)

    async def save_snapshot(self, conn: AsyncConnection, snap: Snapshot) -> None:
        """Keep the newest snapshot of a stream (a hook for streams that grow long)."""
        stmt = pg_insert(snapshot).values(stream_id=snap.stream_id, version=snap.version,
                                          state=snap.state)
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=[snapshot.c.stream_id],
            set_={"version": stmt.excluded.version, "state": stmt.excluded.state},
            where=snapshot.c.version < stmt.excluded.version,
        ))
