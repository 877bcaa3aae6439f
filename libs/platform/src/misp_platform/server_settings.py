"""Server settings as a service that decides by them sees them: the catalogue's defaults, then
the values the settings service published on `misp.settings.setting.v1` (ARCHITECTURE §6).

One read model for every reader (identity, orgs, the audit, the mailer): the `setting_value`
table in the service's own database, filled by `when_setting_changed_record` (the consumer)
with the setting stream's version, so that a replayed older change never brings an old value
back (versions.py). Secrets (redacted settings) never travel in clear: they are not recorded,
and a service that needs one takes it from its environment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Envelope
from misp_contracts.settings_catalogue import SETTINGS, definition
from misp_platform.versions import is_newer

metadata = MetaData()

setting_value = Table(
    "setting_value", metadata,
    Column("name", Text, primary_key=True),
    Column("value", JSONB, nullable=True),
    # The setting stream's version this row reflects.
    Column("version", Integer, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

def named(name: str) -> Table:
    """A table of the same shape under another name (the audit's rebuild keeps its own)."""
    return setting_value.to_metadata(MetaData(), name=name)


async def record_setting(conn: AsyncConnection, name: str, value: Any,
                         version: int | None = None, *, table: Table = setting_value) -> None:
    """Remember a published value, unless a newer version of the setting is recorded already."""
    stmt = pg_insert(table).values(name=name, value=value, version=version)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"value": stmt.excluded.value, "version": stmt.excluded.version,
              "updated_at": func.now()},
        where=is_newer(stmt, table)))


async def read_settings(conn: AsyncConnection, names: Iterable[str], *,
                        table: Table = setting_value) -> dict[str, Any]:
    """`{name: value}`: the published value when there is one, else the catalogue's default
    (KeyError for a name outside the catalogue)."""
    values = {name: definition(name).default for name in names}
    rows = await conn.execute(select(table.c.name, table.c.value)
                              .where(table.c.name.in_(list(values))))
    for row in rows:
        if row.value is not None:
            values[row.name] = row.value
    return values


async def setting(conn: AsyncConnection, name: str) -> Any:
    return (await read_settings(conn, [name]))[name]


async def all_settings(conn: AsyncConnection) -> dict[str, Any]:
    """Every setting of the catalogue, as `read_settings` gives them."""
    return await read_settings(conn, [s.name for s in SETTINGS])


async def when_setting_changed_record(conn: AsyncConnection, envelope: Envelope) -> None:
    """The consumer's handler of `misp.settings.setting.changed.v1` (read by its two fields, so
    that a reader does not depend on the settings service's model beyond the contract)."""
    name, value = envelope.data.get("name"), envelope.data.get("value")
    if not isinstance(name, str):
        raise ValueError("a setting change without a name")
    try:
        redacted = definition(name).redacted
    except KeyError:
        return  # a setting this release does not know: nothing decides by it
    if not redacted:
        await record_setting(conn, name, value, envelope.streamversion)
