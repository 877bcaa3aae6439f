"""The organisation streams in the event store, and lookups in the read model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent, decode
from misp_platform.eventstore import EventStore
from orgs.adapters.tables import DELETED, organisation, organisation_id_seq
from orgs.domain.model import UUID_RE, Organisation, replay, stream_id_of

STREAM_TYPE = "organisation"
store = EventStore("orgs")


async def load(conn: AsyncConnection, org_id: int) -> Organisation | None:
    """The organisation as its stream makes it (deleted ones included), or None."""
    stored = await store.load(conn, stream_id_of(org_id))
    events = [e for e in (decode(s.type, s.data) for s in stored) if e is not None]
    org = replay(events)
    if org is not None and stored:
        # Unknown event types still count for the version (optimistic concurrency).
        from dataclasses import replace

        org = replace(org, version=stored[-1].version)
    return org


async def append(conn: AsyncConnection, org_id: int, expected_version: int,
                 events: Sequence[DomainEvent], actor: Actor, *,
                 correlation_id: str | None = None,
                 causation_id: str | None = None) -> list[Envelope]:
    return await store.append(conn, stream_id=stream_id_of(org_id), stream_type=STREAM_TYPE,
                              expected_version=expected_version, events=events, actor=actor,
                              correlation_id=correlation_id, causation_id=causation_id)


async def next_id(conn: AsyncConnection) -> int:
    return int((await conn.execute(select(organisation_id_seq.next_value()))).scalar_one())


async def find_id(conn: AsyncConnection, key: str | int, *, by_name: bool = False,
                  include_deleted: bool = False) -> int | None:
    """The id of the organisation an URL names: an integer id, a uuid, or (view) a name."""
    text = str(key).strip()
    live = organisation.c.status != DELETED
    conditions: list[Any] = []
    if text.isdigit() and len(text) < 19:
        conditions.append(organisation.c.id == int(text))
    elif UUID_RE.fullmatch(text):
        conditions.append(organisation.c.uuid == text.lower())
    if by_name:
        names = {text, text.replace("+", " ")}
        conditions.append(func.lower(organisation.c.name).in_([n.lower() for n in names]))
    for condition in conditions:
        stmt = select(organisation.c.id).where(condition)
        if not include_deleted:
            stmt = stmt.where(live)
        found = (await conn.execute(stmt.limit(1))).scalar()
        if found is not None:
            return int(found)
    return None
