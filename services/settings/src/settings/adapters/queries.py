"""The settings service's reads: setting overrides, list entries, the import rules a candidate
value is held against, the first-run marks and the schema's revision (the writes are store.py's)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import DateTime, String, cast, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.numbers import whole_number
from misp_platform.auth.principals import principal_org, principal_role
from settings.adapters.tables import (
    LIST_TABLES,
    allowedlist,
    event_blocklist,
    first_run,
    org_blocklist,
    regexp,
    setting_override,
)
from settings.domain.rules import RegexpRule, normalise_uuid
from settings.domain.settings import Current

# ---- settings -----------------------------------------------------------------------------------


def _current(row: Any) -> Current:
    return Current(value=row.value, is_set=row.is_set, version=row.version)


async def current_setting(conn: AsyncConnection, name: str, *, lock: bool = False) -> Current:
    stmt = select(setting_override).where(setting_override.c.name == name)
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).first()
    return Current() if row is None else _current(row)


async def all_settings(conn: AsyncConnection) -> dict[str, Current]:
    return {row.name: _current(row) for row in await conn.execute(select(setting_override))}


async def local_organisations(conn: AsyncConnection) -> dict[int, str]:
    """`{id: name}` of the local organisations (the principals projection): what MISP offers,
    and accepts, for the settings that name a local organisation (MISP.host_org_id...)."""
    rows = await conn.execute(
        select(principal_org.c.org_id, principal_org.c.name)
        .where(principal_org.c.local.is_(True), principal_org.c.deleted.is_(False)))
    return {int(row.org_id): str(row.name) for row in rows}


# ---- list entries (blocklists, regexps, allowlist) ----------------------------------------------


async def find_entry(conn: AsyncConnection, table_name: str, key: str | int, *,
                     uuid_column: str | None = None,
                     lock: bool = False) -> Mapping[str, Any] | None:
    """The entry an URL names in the list table `table_name`: its integer id, or (blocklists)
    its uuid."""
    table = LIST_TABLES[table_name]
    text_key = str(key).strip()
    if (number := whole_number(text_key)) is not None:
        condition = table.c.id == number
    elif uuid_column is not None and normalise_uuid(text_key) is not None:
        condition = table.c[uuid_column] == normalise_uuid(text_key)
    else:
        return None
    stmt = select(table).where(condition)
    if lock:
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).mappings().first()
    return None if row is None else dict(row)


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _as_text(column: Any) -> Any:
    """A column as the API shows it (a datetime as MISP's UTC text), for a substring match."""
    if isinstance(column.type, DateTime):
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24:MI:SS")
    return cast(column, String)


async def list_entries(conn: AsyncConnection, table_name: str, *,
                       contains: Mapping[str, str] | None = None, search: str | None = None,
                       offset: int = 0, limit: int | None = None) -> list[Mapping[str, Any]]:
    """The entries of the list table `table_name` in id order, from `offset`, at most `limit`.
    `contains`: columns holding a text (case-insensitive); `search`: any shown column does."""
    table = LIST_TABLES[table_name]
    stmt = select(table)
    for name, term in (contains or {}).items():
        stmt = stmt.where(_as_text(table.c[name]).ilike(_like(term)))
    if search:
        stmt = stmt.where(or_(*(_as_text(c).ilike(_like(search))
                                for c in table.c if c.name != "version")))
    result = await conn.execute(stmt.order_by(table.c.id).offset(offset).limit(limit))
    return [dict(r) for r in result.mappings().all()]


# ---- import rules -------------------------------------------------------------------------------


async def regexp_rules(conn: AsyncConnection) -> list[RegexpRule]:
    return [RegexpRule(r.id, r.regexp, r.replacement, r.type)
            for r in await conn.execute(select(regexp))]


async def allowlist_patterns(conn: AsyncConnection) -> list[str]:
    return [r.name for r in await conn.execute(
        select(allowedlist.c.name).order_by(allowedlist.c.id))]


async def event_blocked(conn: AsyncConnection, event_uuid: str) -> bool:
    return (await conn.execute(
        select(event_blocklist.c.id).where(event_blocklist.c.event_uuid == event_uuid)
    )).first() is not None


async def org_blocked(conn: AsyncConnection, org_uuid: str) -> bool:
    return (await conn.execute(
        select(org_blocklist.c.id).where(org_blocklist.c.org_uuid == org_uuid)
    )).first() is not None


# ---- first run and schema -----------------------------------------------------------------------


async def first_run_done(conn: AsyncConnection, step: str) -> bool:
    return (await conn.execute(select(first_run.c.step)
                               .where(first_run.c.step == step))).first() is not None


async def alembic_revision(conn: AsyncConnection) -> Any:
    """The revision alembic recorded (None if it recorded none)."""
    return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


# ---- roles (the principals projection) ----------------------------------------------------------


async def roles(conn: AsyncConnection, role_id: int | None = None) -> list[tuple[int, str,
                                                                                dict[str, Any]]]:
    """`(id, name, every perm_* flag)` of the live roles, by id; one role if `role_id`."""
    query = select(principal_role.c.role_id, principal_role.c.name, principal_role.c.state).where(
        principal_role.c.deleted.is_(False)).order_by(principal_role.c.role_id)
    if role_id is not None:
        query = query.where(principal_role.c.role_id == role_id)
    return [(row.role_id, row.name, dict(row.state)) for row in await conn.execute(query)]
