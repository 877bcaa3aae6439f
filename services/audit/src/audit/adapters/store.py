"""Reading and writing the chain heads, the entries (written by the projection, streamed,
pruned) and the signed checkpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
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


async def stored_checkpoints(conn: AsyncConnection) -> list[Checkpoint]:
    rows = await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint ORDER BY number"))
    return [parse_checkpoint(r.body, r.signature) for r in rows]


async def latest_checkpoint(conn: AsyncConnection) -> Checkpoint | None:
    row = (await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint ORDER BY number DESC LIMIT 1"))).first()
    return parse_checkpoint(row.body, row.signature) if row else None


async def newest_checkpoint_before(conn: AsyncConnection, cutoff: datetime) -> Checkpoint | None:
    """The newest checkpoint of the current epoch created before `cutoff`."""
    row = (await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint WHERE created_at < :cutoff "
        "AND epoch = (SELECT max(epoch) FROM log_checkpoint) "
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


def _entry(row: Any) -> Entry:
    created = row.created if row.created.tzinfo else row.created.replace(tzinfo=UTC)
    return Entry(id=row.id, source_event_id=row.source_event_id, source_type=row.source_type,
                 chain=row.chain, seq=row.seq, prev_hash=row.prev_hash, hash=row.hash,
                 created=created, model=row.model, model_id=row.model_id, action=row.action,
                 user_id=row.user_id, title=row.title, change=row.change, email=row.email,
                 org=row.org, description=row.description, ip=row.ip, org_id=row.org_id,
                 authkey_id=row.authkey_id, request_id=row.request_id,
                 request_type=row.request_type, change_json=row.change_json)


async def stream_entries(conn: AsyncConnection, tables: LogTables = LIVE,
                         batch: int = 5000) -> AsyncIterator[Entry]:
    """Every entry in (chain, seq) order, through a server-side cursor."""
    columns = ", ".join(c for c in ENTRY_COLUMNS if c != "source_offset")
    result = await conn.stream(
        text(f"SELECT {columns} FROM {tables.entry} ORDER BY chain, seq"),
        execution_options={"yield_per": batch})
    async for row in result:
        yield _entry(row)


async def chain_entries(conn: AsyncConnection, chain: str, *, after: int, upto: int,
                        tables: LogTables = LIVE, batch: int = 5000) -> AsyncIterator[Entry]:
    """The entries of one chain with `after < seq <= upto`, in seq order (a server-side
    cursor)."""
    columns = ", ".join(c for c in ENTRY_COLUMNS if c != "source_offset")
    result = await conn.stream(
        text(f"SELECT {columns} FROM {tables.entry} WHERE chain = :c AND seq > :a "
             "AND seq <= :u ORDER BY seq"), {"c": chain, "a": after, "u": upto},
        execution_options={"yield_per": batch})
    async for row in result:
        yield _entry(row)


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
