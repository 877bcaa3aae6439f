"""Reading and writing the chain heads, the entries (streamed) and the signed checkpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from audit.adapters.tables import ENTRY_COLUMNS, LIVE, LogTables
from audit.domain.chain import Entry, Mark
from audit.domain.checkpoint import ChainState, Checkpoint, parse_checkpoint, public_raw
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC, AuditCheckpointSigned
from misp_platform.outbox import enqueue

CHECKPOINT_LOCK = 0x6D69737061756469  # one checkpoint writer at a time


async def chain_states(conn: AsyncConnection, tables: LogTables = LIVE) -> dict[str, ChainState]:
    rows = await conn.execute(text(
        f"SELECT chain, seq, hash, pruned_seq, pruned_hash, pruned_offset FROM {tables.chain}"))
    return {r.chain: ChainState(Mark(r.seq, r.hash), Mark(r.pruned_seq, r.pruned_hash),
                                r.pruned_offset) for r in rows}


async def stored_checkpoints(conn: AsyncConnection) -> list[Checkpoint]:
    rows = await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint ORDER BY number"))
    return [parse_checkpoint(r.body, r.signature) for r in rows]


async def latest_checkpoint(conn: AsyncConnection) -> Checkpoint | None:
    row = (await conn.execute(text(
        "SELECT body, signature FROM log_checkpoint ORDER BY number DESC LIMIT 1"))).first()
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
