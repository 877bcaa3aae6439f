"""Settings as orgs sees them: the catalogue's default unless a newer value was recorded.

`setting_value` holds the latest values orgs has seen; until the settings service publishes its
contract on `misp.settings.setting.v1`, nothing but operators (and tests) write it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.settings_catalogue import definition
from misp_platform.versions import is_newer
from orgs.adapters.tables import setting_value


async def get_setting(conn: AsyncConnection, name: str) -> Any:
    row = (await conn.execute(select(setting_value.c.value)
                              .where(setting_value.c.name == name))).first()
    return definition(name).default if row is None else row.value


async def record_setting(conn: AsyncConnection, name: str, value: Any,
                         version: int | None = None) -> None:
    """Remember a value, unless a newer version of the setting is recorded already."""
    stmt = pg_insert(setting_value).values(name=name, value=value, version=version)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[setting_value.c.name],
        set_={"value": stmt.excluded.value, "version": stmt.excluded.version},
        where=is_newer(stmt, setting_value)))
