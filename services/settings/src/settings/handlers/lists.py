"""Import blocklists (events, organisations), import regexps and the signature allowlist.

Each entry is a stream of its own (`added`, `updated`, `removed`); each command writes its
events, their outbox rows and the read model in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor
from misp_contracts.events import settings as ev
from misp_contracts.events.base import DomainEvent, changes_between
from misp_platform.misp.responses import render_datetime
from misp_platform.transaction import in_transaction
from settings.adapters import queries, store
from settings.domain.errors import EntryNotFoundError


@dataclass(frozen=True)
class ListKind:
    """One list: its table's name (adapters.tables.LIST_TABLES), its events, the payload field
    holding an entry's state, and MISP's 404 text for an entry it does not hold."""

    kind: str
    table: str
    state: type[BaseModel]
    added: type[DomainEvent]
    updated: type[DomainEvent]
    removed: type[DomainEvent]
    field: str
    uuid_column: str | None = None  # entries also found by this uuid
    unique_column: str | None = None  # a duplicate is refused (a "fail"), not an error
    not_found: str = "Invalid entry."


EVENT_BLOCKLIST = ListKind("event-blocklist", "event_blocklist", ev.EventBlocklistState,
                           ev.EventBlocklistAdded, ev.EventBlocklistUpdated,
                           ev.EventBlocklistRemoved, "entry", "event_uuid", "event_uuid",
                           not_found="Invalid blocklist entry")
ORG_BLOCKLIST = ListKind("org-blocklist", "org_blocklist", ev.OrgBlocklistState,
                         ev.OrgBlocklistAdded, ev.OrgBlocklistUpdated, ev.OrgBlocklistRemoved,
                         "entry", "org_uuid", "org_uuid", not_found="Invalid blocklist entry")
REGEXP = ListKind("regexp", "regexp", ev.RegexpState, ev.RegexpAdded, ev.RegexpUpdated,
                  ev.RegexpRemoved, "regexp", not_found="Invalid Regexp")
ALLOWEDLIST = ListKind("allowedlist", "allowedlist", ev.AllowedlistState, ev.AllowedlistAdded,
                       ev.AllowedlistUpdated, ev.AllowedlistRemoved, "allowedlist",
                       unique_column="name", not_found="Invalid allowedlist entry")


def state_of(kind: ListKind, row: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as its events carry it (and as the API shows it, before MISP's rendering)."""
    data = {k: v for k, v in row.items() if k != "version"}
    if "created" in data and not isinstance(data["created"], str):
        data["created"] = render_datetime(data["created"])
    return kind.state.model_validate(data).model_dump()


async def find(conn: AsyncConnection, kind: ListKind, key: str | int, *,
               lock: bool = False) -> Mapping[str, Any] | None:
    """The entry an URL names: its integer id, or (blocklists) its uuid."""
    return await queries.find_entry(conn, kind.table, key, uuid_column=kind.uuid_column,
                                    lock=lock)


async def add_entry_in(conn: AsyncConnection, kind: ListKind, fields: Mapping[str, Any],
                       actor: Actor, *, entry_id: int | None = None) -> dict[str, Any] | None:
    """Insert one entry and its `added` event; None when its unique key is already listed."""
    new_id = entry_id if entry_id is not None else await store.next_id(conn, kind.table)
    values = await store.insert_entry(conn, kind.table, {**fields, "id": new_id, "version": 1},
                                      kind.unique_column)
    if values is None:
        return None
    state = state_of(kind, values)
    event = kind.added.model_validate({kind.field: state})
    await store.append_entry(conn, kind.kind, new_id, 0, [event], actor)
    return state


async def add_entries(engine: AsyncEngine, kind: ListKind, rows: Sequence[Mapping[str, Any]],
                      actor: Actor) -> tuple[list[dict[str, Any]], list[Mapping[str, Any]]]:
    """Add several entries in one transaction: `(added states, refused rows)`."""

    async def work(conn: AsyncConnection) -> tuple[list[dict[str, Any]],
                                                   list[Mapping[str, Any]]]:
        added, refused = [], []
        for row in rows:
            state = await add_entry_in(conn, kind, row, actor)
            if state is None:
                refused.append(row)
            else:
                added.append(state)
        return added, refused

    return await in_transaction(engine, work)


async def edit_entry(engine: AsyncEngine, kind: ListKind, key: str | int,
                     fields: Mapping[str, Any], actor: Actor) -> dict[str, Any]:
    """Change some fields of an entry; EntryNotFoundError if there is none."""

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = await find(conn, kind, key, lock=True)
        if row is None:
            raise EntryNotFoundError(kind.not_found)
        old = state_of(kind, row)
        new = state_of(kind, {**row, **fields})
        changes = changes_between(old, new)
        if not changes:
            return old
        version = int(row["version"])
        await store.update_row(conn, kind.table, int(row["id"]), version + 1, dict(fields))
        event = kind.updated.model_validate({kind.field: new, "changes": changes})
        await store.append_entry(conn, kind.kind, int(row["id"]), version, [event], actor)
        return new

    return await in_transaction(engine, work)


async def remove_entry(engine: AsyncEngine, kind: ListKind, key: str | int,
                       actor: Actor) -> dict[str, Any]:
    async def work(conn: AsyncConnection) -> dict[str, Any]:
        row = await find(conn, kind, key, lock=True)
        if row is None:
            raise EntryNotFoundError(kind.not_found)
        state = state_of(kind, row)
        await store.delete_row(conn, kind.table, int(row["id"]))
        event = kind.removed.model_validate({kind.field: state})
        await store.append_entry(conn, kind.kind, int(row["id"]), int(row["version"]),
                                 [event], actor)
        return state

    return await in_transaction(engine, work)
