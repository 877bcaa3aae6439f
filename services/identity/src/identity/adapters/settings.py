"""Server settings as identity sees them: the catalogue's defaults, then the overrides it has
recorded in `setting_value` (ARCHITECTURE §6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.projections.tables import setting_value
from misp_contracts.settings_catalogue import definition
from misp_platform.versions import is_newer


async def read_settings(conn: AsyncConnection, names: Sequence[str]) -> dict[str, Any]:
    """`{name: value}`: the override when there is one, else the catalogue's default."""
    values = {name: definition(name).default for name in names}
    rows = await conn.execute(select(setting_value.c.name, setting_value.c.value)
                              .where(setting_value.c.name.in_(list(names))))
    for row in rows:
        if row.value is not None:
            values[row.name] = row.value
    return values


async def setting(conn: AsyncConnection, name: str) -> Any:
    return (await read_settings(conn, [name]))[name]


async def record_setting(conn: AsyncConnection, name: str, value: Any,
                         version: int | None = None) -> None:
    """Remember an override (from the settings topic, or a test standing in for it), unless a
    newer version of the setting is recorded already."""
    definition(name)  # KeyError for a name outside the catalogue
    stmt = pg_insert(setting_value).values(name=name, value=value, version=version)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[setting_value.c.name],
        set_={"value": stmt.excluded.value, "version": stmt.excluded.version,
              "updated_at": stmt.excluded.updated_at},
        where=is_newer(stmt, setting_value)))
