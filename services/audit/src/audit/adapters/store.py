"""Reading and writing the chain heads, the entries (written by the projection, streamed,
pruned) and the signed checkpoints."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_loads
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.adapters.tables import ENTRY_COLUMNS, LIVE, LogTables
from audit.domain.chain import Entry, Mark
from audit.domain.checkpoint import ChainState, Checkpoint, parse_checkpoint, public_raw
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC, AuditCheckpointSigned
from misp_platform.db import copy_rows
from misp_platform.outbox import enqueue

CHECKPOINT_LOCK = 0x6D69737061756469  # one checkpoint writer at a time


async def chain_states(conn: AsyncConnection, tables: LogTables = LIVE) -> dict[str, ChainState]:
    rows = await conn.execute(text(
        f"SELECT chain, seq, hash, pruned_seq, pruned_hash, pruned_offset FROM {tables.chain}"))
    return {r.chain: ChainState(Mark(r.seq, r.hash), Mark(r.pruned_seq, r.pruned_hash),
                                r.pruned_offset) for r in rows}


async def lock_chain_heads(conn: AsyncConnection, tables: LogTables,
                           chains: Sequence[str]) -> dict[str, tuple[int, str]]:
    """The heads `(seq, hash)` of these chains, locked for this transaction (created when new)."""
    await conn.execute(text(
        f"INSERT INTO {tables.chain} (chain) SELECT unnest(CAST(:c AS text[])) "
        "ON CONFLICT (chain) DO NOTHING"), {"c": list(chains)})
    rows = await conn.execute(text(
        f"SELECT chain, seq, hash FROM {tables.chain} WHERE chain = ANY(:c) "
        "ORDER BY chain FOR UPDATE"), {"c": list(chains)})
    return {r.chain: (r.seq, r.hash) for r in rows}


async def update_chain_heads(conn: AsyncConnection, tables: LogTables,
                             heads: dict[str, tuple[int, str]]) -> None:
    """Set each chain's head `(seq, hash)`, in one statement."""
    await conn.execute(text(
        f"UPDATE {tables.chain} AS c SET seq = h.seq, hash = h.hash, updated_at = now() "
        "FROM unnest(CAST(:c AS text[]), CAST(:s AS bigint[]), CAST(:h AS text[])) "
        "AS h(chain, seq, hash) WHERE c.chain = h.chain"),
        {"c": list(heads), "s": [v[0] for v in heads.values()],
         "h": [v[1] for v in heads.values()]})


async def set_pruned_marks(conn: AsyncConnection,
                           marks: dict[str, tuple[Mark, int | None]]) -> None:
    """Record where each chain now starts: its last pruned entry's mark and source offset."""
    for chain, (mark, offset) in marks.items():
        await conn.execute(text(
            "UPDATE log_chain SET pruned_seq = :s, pruned_hash = :h, pruned_offset = :o "
            "WHERE chain = :c"), {"s": mark.seq, "h": mark.hash, "o": offset, "c": chain})


async def stored_checkpoints(conn: AsyncConnection, *,
                             since: int | None = None) -> list[Checkpoint]:
    """Every checkpoint in number order (`since`: from that number on)."""
    rows = await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint WHERE number >= :n ORDER BY number"),
        {"n": since if since is not None else -(2**63)})
    return [parse_checkpoint(r.body, r.signature) for r in rows]


async def checkpoint_numbered(conn: AsyncConnection, number: int) -> Checkpoint | None:
    row = (await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint WHERE number = :n"), {"n": number})).first()
    return parse_checkpoint(row.body, row.signature) if row else None


async def newest_checkpoints(conn: AsyncConnection, *, limit: int) -> list[Checkpoint]:
    """The newest `limit` checkpoints of the current epoch, newest first."""
    rows = await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint "
        "WHERE epoch = (SELECT max(epoch) FROM log_checkpoint) "
        "ORDER BY number DESC LIMIT :l"), {"l": limit})
    return [parse_checkpoint(r.body, r.signature) for r in rows]


async def newest_epoch(conn: AsyncConnection) -> int | None:
    return (await conn.execute(text("SELECT max(epoch) FROM log_checkpoint"))).scalar()


async def save_verification(conn: AsyncConnection, *, started_at: datetime, ran_by: str,
                            ok: bool, report: dict[str, Any]) -> None:
    """Keep a full verification's result (log_verification, in place of the last one
    `ran_by` the same kind of run), in the caller's transaction."""
    await conn.execute(text(
        "INSERT INTO log_verification (ran_by, started_at, finished_at, ok, report) "
        "VALUES (:b, :s, clock_timestamp(), :ok, CAST(:r AS jsonb)) ON CONFLICT (ran_by) DO UPDATE "
        "SET started_at = excluded.started_at, finished_at = excluded.finished_at, "
        "ok = excluded.ok, report = excluded.report"),
        {"s": started_at, "b": ran_by, "ok": ok, "r": orjson.dumps(report).decode("utf-8")})


async def last_verification(conn: AsyncConnection) -> dict[str, Any] | None:
    """The newest full verification kept: its report, with when it ran and what ran it."""
    row = (await conn.execute(text(
        "SELECT started_at, finished_at, ran_by, report FROM log_verification "
        "ORDER BY finished_at DESC LIMIT 1"))).first()
    if row is None:
        return None
    return {**row.report, "started_at": row.started_at.isoformat(),
            "finished_at": row.finished_at.isoformat(), "ran_by": row.ran_by}


async def latest_checkpoint(conn: AsyncConnection) -> Checkpoint | None:
    row = (await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint ORDER BY number DESC LIMIT 1"))).first()
    return parse_checkpoint(row.body, row.signature) if row else None


async def newest_checkpoint_before(conn: AsyncConnection, cutoff: datetime, *,
                                   inclusive: bool = False) -> Checkpoint | None:
    """The newest checkpoint of the current epoch created before `cutoff` (or at it, with
    `inclusive`)."""
    row = (await conn.execute(text(
        f"SELECT body, signature FROM log_checkpoint WHERE created_at {'<=' if inclusive else '<'}"
        " :cutoff AND epoch = (SELECT max(epoch) FROM log_checkpoint) "
        "ORDER BY number DESC LIMIT 1"), {"cutoff": cutoff})).first()
    return parse_checkpoint(row.body, row.signature) if row else None


async def lock_checkpoints(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHECKPOINT_LOCK})


async def save_checkpoint(conn: AsyncConnection, cp: Checkpoint, public_key_b64: str, *,
                          topic: str = AUDIT_CHECKPOINT_TOPIC) -> None:
    """Store it and queue it for Kafka, in the caller's transaction."""
    await conn.execute(text(
        "INSERT INTO log_checkpoint (number, epoch, kind, key_id, body, signature) "
        "VALUES (:n, :e, :k, :kid, :b, :s)"),
        {"n": cp.number, "e": cp.epoch, "k": cp.kind, "kid": cp.key_id, "b": cp.body,
         "s": cp.signature})
    record = cp.as_record()
    event = AuditCheckpointSigned.model_validate({**record, "public_key": public_key_b64})
    await enqueue(conn, Envelope(source="/audit", type=AuditCheckpointSigned.type,
                                 subject=str(cp.number), actor=Actor.system(),
                                 data=event.model_dump(mode="json")),
                  topic=topic, key="checkpoint")


def public_key_b64(key: Any) -> str:
    import base64

    return base64.b64encode(public_raw(key)).decode("ascii")


ENTRY_READ_COLUMNS = ", ".join(c for c in ENTRY_COLUMNS if c != "source_offset")  # Entry's
READ_BATCH = 5000  # entries a server-side cursor fetches at a time


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """jsonb as the hash chain reads it: orjson, or the standard library for what orjson
    refuses (an integer beyond 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def _entry_maker(_cursor: Any) -> Callable[[Sequence[Any]], Entry]:
    return Entry.of_row  # the columns are read in Entry's field order


async def entry_batches(conn: AsyncConnection, chain: str, *, after: int | None = None,
                        upto: int | None = None, tables: LogTables = LIVE,
                        batch: int = READ_BATCH) -> AsyncGenerator[list[Entry], None]:
    """The entries of one chain with `after < seq <= upto` (either bound optional), in seq
    order, in lists of `batch`: a server-side cursor on the connection's own psycopg
    connection, in its transaction, rows made straight into entries (no ORM row per entry),
    the next batch fetched while the caller works on this one."""
    where, params = ["chain = %(c)s"], {"c": chain, "a": after, "u": upto}
    if after is not None:
        where.append("seq > %(a)s")
    if upto is not None:
        where.append("seq <= %(u)s")
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    async with driver.cursor(name="audit_entries", row_factory=_entry_maker) as cursor:
        set_json_loads(_json_loads, cursor)
        await cursor.execute(f"SELECT {ENTRY_READ_COLUMNS} FROM {tables.entry} "
                             f"WHERE {' AND '.join(where)} ORDER BY seq", params)
        ahead: asyncio.Future[list[Entry]] | None = None
        try:
            rows = await cursor.fetchmany(batch)
            while rows:
                ahead = asyncio.ensure_future(cursor.fetchmany(batch))
                yield rows
                rows = await ahead
        finally:
            if ahead is not None and not ahead.done():  # the caller stopped early
                with contextlib.suppress(Exception):
                    await ahead


async def chain_names(conn: AsyncConnection, tables: LogTables = LIVE) -> list[str]:
    """Every chain that has entries, sorted: one probe of the (chain, seq) index per chain,
    whatever the entries (the heads table may not know a chain written behind its back)."""
    rows = await conn.execute(text(
        f"WITH RECURSIVE c(chain) AS (SELECT min(chain) FROM {tables.entry} "
        f"UNION ALL SELECT (SELECT min(e.chain) FROM {tables.entry} e WHERE e.chain > c.chain) "
        "FROM c WHERE c.chain IS NOT NULL) SELECT chain FROM c WHERE chain IS NOT NULL"))
    return [r.chain for r in rows]


async def stream_entries(conn: AsyncConnection, tables: LogTables = LIVE,
                         batch: int = READ_BATCH) -> AsyncIterator[Entry]:
    """Every entry in (chain, seq) order, chain by chain."""
    for chain in await chain_names(conn, tables):
        async with contextlib.aclosing(entry_batches(conn, chain, tables=tables,
                                                     batch=batch)) as batches:
            async for entries in batches:
                for entry in entries:
                    yield entry


async def chain_entries(conn: AsyncConnection, chain: str, *, after: int, upto: int,
                        tables: LogTables = LIVE, batch: int = READ_BATCH,
                        ) -> AsyncIterator[Entry]:
    """The entries of one chain with `after < seq <= upto`, in seq order."""
    async with contextlib.aclosing(entry_batches(conn, chain, after=after, upto=upto,
                                                 tables=tables, batch=batch)) as batches:
        async for entries in batches:
            for entry in entries:
                yield entry


# ---- entries: the projection's writes and the retention's deletes --------------------------------


async def entry_count(conn: AsyncConnection, tables: LogTables = LIVE) -> int:
    return int((await conn.execute(text(f"SELECT count(*) FROM {tables.entry}"))).scalar_one())


async def logged_event_ids(conn: AsyncConnection, tables: LogTables,
                           event_ids: Sequence[str]) -> set[str]:
    """Those of these source event ids that already have an entry."""
    rows = await conn.execute(text(
        f"SELECT source_event_id FROM {tables.entry} WHERE source_event_id = ANY(:ids)"),
        {"ids": list(event_ids)})
    return {r[0] for r in rows}


async def next_entry_ids(conn: AsyncConnection, tables: LogTables, n: int) -> list[int]:
    """`n` ids drawn from the entry table's sequence, in one statement."""
    rows = await conn.execute(text(
        "SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
        {"t": tables.entry, "n": n})
    return [r[0] for r in rows]


def _entry_row(e: Entry, source_offset: int | None) -> tuple[Any, ...]:
    """An entry's values in `ENTRY_COLUMNS` order, as COPY takes them."""
    return (e.id, e.source_event_id, e.source_type, e.chain, e.seq, source_offset, e.prev_hash,
            e.hash, e.created, e.model, e.model_id, e.action, e.user_id, e.title, e.change,
            e.email, e.org, e.description, e.ip, e.org_id, e.authkey_id, e.request_id,
            e.request_type, orjson.dumps(e.change_json).decode("utf-8"))


async def insert_entries(conn: AsyncConnection, tables: LogTables,
                         entries: Sequence[tuple[Entry, int | None]]) -> None:
    """Insert these entries, each with its source offset, in one COPY."""
    await copy_rows(conn, f"COPY {tables.entry} ({', '.join(ENTRY_COLUMNS)}) FROM STDIN",
                    (_entry_row(entry, offset) for entry, offset in entries))


async def count_entries_upto(conn: AsyncConnection, chain: str, seq: int) -> int:
    """The live entries of `chain` with a seq up to `seq` (what a prune there would delete)."""
    return int((await conn.execute(text(
        "SELECT count(*) FROM log_entry WHERE chain = :c AND seq <= :s"),
        {"c": chain, "s": seq})).scalar_one())


async def source_offset_of(conn: AsyncConnection, chain: str, seq: int) -> int | None:
    """The source offset of the live entry at `seq` in `chain` (None if it has none)."""
    return (await conn.execute(text(
        "SELECT source_offset FROM log_entry WHERE chain = :c AND seq = :s"),
        {"c": chain, "s": seq})).scalar()


async def delete_entries_upto(conn: AsyncConnection, chain: str, seq: int) -> int:
    """Delete the live entries of `chain` up to `seq`; how many went."""
    deleted = await conn.execute(text(
        "DELETE FROM log_entry WHERE chain = :c AND seq <= :s"), {"c": chain, "s": seq})
    return deleted.rowcount or 0
