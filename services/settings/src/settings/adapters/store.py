"""The settings service's writes: its streams in the event store and their read models, the
first-run marks and the diagnostics reports (the reads are queries.py's).

A setting's stream is named after the setting; a list entry's stream after its list and id.
Every append writes the events, the outbox rows and the read model in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.settings import SettingChanged
from misp_contracts.settings_catalogue import definition
from misp_platform.eventstore import EventStore
from settings.adapters.tables import (
    LIST_TABLES,
    diagnostics_report,
    first_run,
    regexp,
    setting_override,
)
from settings.domain.settings import Current

store = EventStore("settings")
_NAMESPACE = uuid.UUID("6f1d3c9e-4a57-4f0e-9d0b-2b7a8c5e1f30")
SETTING_STREAM = "setting"


def stream_id(kind: str, key: str | int) -> str:
    """A stable stream id: `setting:MISP.baseurl`, `regexp:12`, ..."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{key}"))


def now() -> datetime:
    return datetime.now(UTC)


# ---- settings -----------------------------------------------------------------------------------


async def append_setting(conn: AsyncConnection, current: Current, event: SettingChanged,
                         actor: Actor, *, correlation_id: str | None = None) -> Envelope:
    """The change event (its outbox row) and the override, in the caller's transaction."""
    [envelope] = await store.append(
        conn, stream_id=stream_id(SETTING_STREAM, event.name), stream_type=SETTING_STREAM,
        expected_version=current.version, events=[event], actor=actor,
        correlation_id=correlation_id)
    redacted = definition(event.name).redacted
    values = {"value": None if redacted else event.value, "is_set": True,
              "version": current.version + 1, "updated_at": now()}
    stmt = pg_insert(setting_override).values(name=event.name, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[setting_override.c.name],
                                                  set_=values))
    return envelope


# ---- list entries (blocklists, regexps, allowlist), their tables named as in LIST_TABLES -------


async def append_entry(conn: AsyncConnection, kind: str, entry_id: int, expected_version: int,
                       events: Sequence[DomainEvent], actor: Actor) -> None:
    await store.append(conn, stream_id=stream_id(kind, entry_id), stream_type=kind,
                       expected_version=expected_version, events=events, actor=actor)


async def update_row(conn: AsyncConnection, table_name: str, entry_id: int, version: int,
                     values: dict[str, Any]) -> None:
    table = LIST_TABLES[table_name]
    await conn.execute(update(table).where(table.c.id == entry_id)
                       .values(**values, version=version))


async def delete_row(conn: AsyncConnection, table_name: str, entry_id: int) -> None:
    table = LIST_TABLES[table_name]
    await conn.execute(delete(table).where(table.c.id == entry_id))


async def next_id(conn: AsyncConnection, table_name: str) -> int:
    seq = f"{LIST_TABLES[table_name].name}_id_seq"
    return int((await conn.execute(select(func.nextval(seq)))).scalar_one())


async def insert_entry(conn: AsyncConnection, table_name: str, values: dict[str, Any],
                       unique_column: str | None = None) -> dict[str, Any] | None:
    """Insert one entry's row (`created` now when its table has one and `values` do not); the
    values inserted, or None when `unique_column` already holds its value."""
    table = LIST_TABLES[table_name]
    if "created" in table.c and "created" not in values:
        values = {**values, "created": now()}
    stmt = pg_insert(table).values(**values)
    if unique_column is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[unique_column]])
    inserted = (await conn.execute(stmt.returning(table.c.id))).first()
    return None if inserted is None else values


# ---- first run ----------------------------------------------------------------------------------


async def lock_first_run(conn: AsyncConnection, key: int) -> None:
    """Hold the first run's advisory lock until the transaction ends."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


async def reset_regexp_sequence(conn: AsyncConnection) -> None:
    """The regexp ids continue after the highest seeded one."""
    top = (await conn.execute(select(func.max(regexp.c.id)))).scalar() or 0
    await conn.execute(text("SELECT setval('regexp_id_seq', GREATEST(:top, 1))"),
                       {"top": top})


async def mark_first_run(conn: AsyncConnection, step: str) -> None:
    await conn.execute(pg_insert(first_run).values(step=step).on_conflict_do_nothing())


# ---- diagnostics --------------------------------------------------------------------------------


async def insert_diagnostics_report(conn: AsyncConnection, *, job_id: Any, ok: bool,
                                    summary: str, report: dict[str, Any]) -> None:
    await conn.execute(insert(diagnostics_report).values(
        job_id=job_id, ok=ok, summary=summary, report=report))
