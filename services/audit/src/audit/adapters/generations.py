"""The DDL of a rebuild: creating, locking, swapping and dropping generations of the log tables
(`LogTables`) and the rebuild's copy of the settings table."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.adapters.tables import SETTINGS_REBUILD, SETTINGS_TABLE, LogTables, generation_ddl


async def create_generation(conn: AsyncConnection, tables: LogTables) -> None:
    """The entry and chain tables of `tables`, with the entry indexes."""
    for ddl in generation_ddl(tables):
        await conn.execute(text(ddl))


async def drop_generation(conn: AsyncConnection, tables: LogTables) -> None:
    await conn.execute(text(f"DROP TABLE IF EXISTS {tables.entry}, {tables.chain}"))


async def rename_generation(conn: AsyncConnection, src: LogTables, dst: LogTables) -> None:
    """Rename the tables of `src` and their `ix_<entry>_*` indexes to those of `dst`."""
    indexes = await conn.execute(text(
        "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
        "AND tablename = :t AND indexname LIKE :p"), {"t": src.entry, "p": f"ix_{src.entry}_%"})
    for (name,) in indexes.all():
        suffix = name[len(f"ix_{src.entry}_"):]
        await conn.execute(text(f'ALTER INDEX "{name}" RENAME TO "ix_{dst.entry}_{suffix}"'))
    await conn.execute(text(f"ALTER TABLE {src.entry} RENAME TO {dst.entry}"))
    await conn.execute(text(f"ALTER TABLE {src.chain} RENAME TO {dst.chain}"))


async def lock_generation(conn: AsyncConnection, tables: LogTables) -> None:
    """Hold both tables exclusively until the transaction ends (their writers wait)."""
    await conn.execute(text(f"LOCK TABLE {tables.entry}, {tables.chain} "
                            "IN ACCESS EXCLUSIVE MODE"))


async def seed_pruned_offsets(conn: AsyncConnection, tables: LogTables,
                              offsets: dict[str, int]) -> None:
    """New chain heads carrying each chain's retention watermark (its pruned source offset)."""
    await conn.execute(text(
        f"INSERT INTO {tables.chain} (chain, pruned_offset) "
        "SELECT unnest(CAST(:c AS text[])), unnest(CAST(:o AS bigint[]))"),
        {"c": list(offsets), "o": list(offsets.values())})


async def create_settings_copy(conn: AsyncConnection, name: str = SETTINGS_REBUILD) -> None:
    """An empty copy of the settings table (any older one dropped first)."""
    await conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    await conn.execute(text(f"CREATE TABLE {name} (LIKE {SETTINGS_TABLE} INCLUDING ALL)"))


async def drop_settings_copy(conn: AsyncConnection, name: str = SETTINGS_REBUILD) -> None:
    await conn.execute(text(f"DROP TABLE {name}"))
