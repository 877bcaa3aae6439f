"""Checkpoints, verification and retention: the tamper-evidence side of the audit log."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit.adapters.store import (
    chain_entries,
    chain_states,
    count_entries_upto,
    delete_entries_upto,
    entry_count,
    latest_checkpoint,
    lock_checkpoints,
    newest_checkpoint_before,
    public_key_b64,
    save_checkpoint,
    set_pruned_marks,
    source_offset_of,
    stored_checkpoints,
    stream_entries,
)
from audit.adapters.tables import LIVE, LogTables
from audit.domain.chain import START, Break, ChainReport, Entry, Mark, verify_chain
from audit.domain.checkpoint import (
    PERIODIC,
    PRUNED,
    ChainState,
    Checkpoint,
    make_checkpoint,
    parse_checkpoint,
    public_raw,
    verify_checkpoints,
)
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC, AuditCheckpointSigned
from misp_platform.db import set_statement_timeout
from misp_platform.kafka import client_options
from misp_platform.progress import Bar

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
VERIFY_PROGRESS_EVERY = 1000  # entries walked per step of a verification's progress bar


def utcnow() -> datetime:
    return datetime.now(UTC)


async def write_checkpoint(engine: AsyncEngine, key: Ed25519PrivateKey, *,
                           kind: str = PERIODIC, clock: Clock = utcnow, force: bool = False,
                           topic: str = AUDIT_CHECKPOINT_TOPIC,
                           chains: dict[str, ChainState] | None = None,
                           epoch: int | None = None) -> Checkpoint | None:
    """Sign every chain's head now; None when nothing changed since the last checkpoint."""
    async with engine.begin() as conn:
        await lock_checkpoints(conn)
        last = await latest_checkpoint(conn)
        states = chains if chains is not None else await chain_states(conn)
        if not force and last is not None and _same(last, states):
            return None
        if not force and last is None and not states:
            return None
        cp = make_checkpoint(key, number=(last.number + 1) if last else 1,
                             epoch=epoch if epoch is not None else (last.epoch if last else 1),
                             kind=kind, created_at=clock(), prev=last.hash if last else None,
                             chains=states)
        await save_checkpoint(conn, cp, public_key_b64(key), topic=topic)
    log.info("audit.checkpoint", number=cp.number, kind=kind, chains=len(states))
    return cp


def _same(last: Checkpoint, states: dict[str, ChainState]) -> bool:
    heads = {c: s.head for c, s in states.items()}
    pruned = {c: s.pruned for c, s in states.items() if s.pruned.seq > 0}
    return heads == last.heads and pruned == {c: m for c, (m, _o) in last.pruned.items()
                                              if m.seq > 0}


# ---- verification -------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    ok: bool = True
    entries: int = 0
    chains: int = 0
    checkpoints: int = 0
    epoch: int = 0
    first_broken: Break | None = None
    checkpoint_problem: str | None = None
    broken_chains: list[Break] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "chains": self.chains,
                "checkpoints": self.checkpoints, "epoch": self.epoch,
                "checkpoint_problem": self.checkpoint_problem,
                "first_broken": self.first_broken.as_dict() if self.first_broken else None,
                "broken_chains": [b.as_dict() for b in self.broken_chains]}


async def verify(engine: AsyncEngine, public: bytes, *, published: Sequence[Checkpoint] = (),
                 tables: LogTables = LIVE, bar: Bar | None = None) -> VerifyReport:
    """Check the checkpoints, then walk every chain against its signed marks and heads (`bar`
    follows the entries walked)."""
    async with engine.connect() as conn:
        return await verify_in(conn, public, published=published, tables=tables, bar=bar)


async def verify_in(conn: AsyncConnection, public: bytes, *,
                    published: Sequence[Checkpoint] = (),
                    tables: LogTables = LIVE, bar: Bar | None = None) -> VerifyReport:
    """`verify` on the caller's connection (a job worker's transaction)."""
    report = VerifyReport()
    if bar is not None:
        bar.set_total(await entry_count(conn, tables))
    stored = await stored_checkpoints(conn)
    cps = verify_checkpoints(stored, public, published)
    report.checkpoints, report.epoch = cps.count, cps.epoch
    if cps.problem:
        report.ok, report.checkpoint_problem = False, cps.problem
    signed = cps.signed_heads()
    starts = cps.pruned_marks()
    current: list[Entry] = []
    chains_seen: set[str] = set()

    async def finish(chain: str, entries: list[Entry]) -> None:
        # Hashing a chain is CPU work: in a thread, so that the process's event loop goes on
        # (the API's other requests; in the small profile, its consumers' heartbeats too).
        result: ChainReport = await asyncio.to_thread(
            verify_chain, chain, entries, start=starts.get(chain, START),
            signed=signed.get(chain))
        report.entries += result.entries
        chains_seen.add(chain)
        if result.broken:
            report.broken_chains.append(result.broken)

    walked = 0
    async for entry in stream_entries(conn, tables):
        walked += 1
        if bar is not None and walked % VERIFY_PROGRESS_EVERY == 0:
            bar.advance(VERIFY_PROGRESS_EVERY)
        if current and current[0].chain != entry.chain:
            await finish(current[0].chain, current)
            current = []
        current.append(entry)
    if current:
        await finish(current[0].chain, current)
    if bar is not None:
        bar.advance(walked % VERIFY_PROGRESS_EVERY)
    for chain in set(signed) - chains_seen:
        await finish(chain, [])  # every entry of a signed chain is gone
    report.chains = len(chains_seen)
    if report.broken_chains:
        report.ok = False
        report.broken_chains.sort(key=lambda b: (b.entry_id is None, b.entry_id or 0, b.chain))
        report.first_broken = report.broken_chains[0]
    return report


async def published_checkpoints(bootstrap: str, topic: str = AUDIT_CHECKPOINT_TOPIC, *,
                                timeout_s: float = 10.0) -> list[Checkpoint]:
    """Every checkpoint on the Kafka topic (read to its end, no consumer group)."""
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    out: list[Checkpoint] = []
    try:
        cluster = await consumer._client.fetch_all_metadata()  # a fresh view of the topics
        partitions = cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in partitions]
        if not tps:
            return out
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"could not read {topic} to its end in {timeout_s}s")
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    with contextlib.suppress(Exception):  # not a checkpoint: ignored
                        out.append(_decode_published(r.value))
    finally:
        await consumer.stop()
    return out


def _decode_published(value: bytes | None) -> Checkpoint:
    import json

    event = AuditCheckpointSigned.model_validate(json.loads(value or b"{}"))
    return parse_checkpoint(event.body, event.signature)


def public_of(key: Ed25519PrivateKey) -> bytes:
    return public_raw(key)


def public_from_b64(value: str) -> bytes:
    return base64.b64decode(value)


# ---- retention ----------------------------------------------------------------------------------


@dataclass
class PruneReport:
    pruned_entries: int = 0  # with dry_run: the entries that would go
    checkpoint: Checkpoint | None = None
    upto: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


class PruneRefusedError(RuntimeError):
    """The range a prune would delete does not verify (a checkpoint's signature or links, or a
    link of a chain up to the signed head): nothing was deleted."""

    def __init__(self, message: str, *, checkpoint: int, broken: Break | None = None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint  # the checkpoint bounding the range
        self.broken = broken

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "refused": str(self), "checkpoint": self.checkpoint,
                "first_broken": self.broken.as_dict() if self.broken else None}


async def prune(engine: AsyncEngine, key: Ed25519PrivateKey, *, retention_days: int,
                clock: Clock = utcnow, topic: str = AUDIT_CHECKPOINT_TOPIC,
                dry_run: bool = False, bar: Bar | None = None,
                statement_timeout_s: float | None = None) -> PruneReport:
    """Remove whole checkpoint ranges older than the retention, then sign the new marks
    (`dry_run`: count what would go, change nothing; `bar` follows the chains;
    `statement_timeout_s`: the transaction's own, instead of the engine's).

    The newest checkpoint created before the cutoff bounds what goes: each chain loses its
    entries up to that checkpoint's head, which are all older than the checkpoint itself.
    Raises `PruneRefusedError`, deleting nothing, when that range does not verify.
    """
    async with (engine.connect() if dry_run else engine.begin()) as conn:
        if statement_timeout_s is not None:
            await set_statement_timeout(conn, statement_timeout_s)
        return await prune_in(conn, key, retention_days=retention_days, clock=clock,
                              topic=topic, dry_run=dry_run, bar=bar)


async def prune_in(conn: AsyncConnection, key: Ed25519PrivateKey, *, retention_days: int,
                   clock: Clock = utcnow, topic: str = AUDIT_CHECKPOINT_TOPIC,
                   dry_run: bool = False, bar: Bar | None = None) -> PruneReport:
    """`prune` in the caller's transaction (a job worker's)."""
    report = PruneReport(dry_run=dry_run)
    if retention_days <= 0:
        return report
    cutoff = clock() - timedelta(days=retention_days)
    if not dry_run:
        await lock_checkpoints(conn)
    bound = await newest_checkpoint_before(conn, cutoff)
    if bound is None:
        return report
    states = await chain_states(conn)
    starts = await _verify_range(conn, public_raw(key), bound, states, bar)
    marks: dict[str, tuple[Mark, int | None]] = {}
    for chain, head in bound.heads.items():
        if head.seq <= starts.get(chain, START).seq:
            continue
        if dry_run:
            report.pruned_entries += await count_entries_upto(conn, chain, head.seq)
            report.upto[chain] = head.seq
            continue
        offset = await source_offset_of(conn, chain, head.seq)
        report.pruned_entries += await delete_entries_upto(conn, chain, head.seq)
        marks[chain] = (head, offset)
        report.upto[chain] = head.seq
    if dry_run or not marks:
        return report
    await set_pruned_marks(conn, marks)
    states = await chain_states(conn)
    last = await latest_checkpoint(conn)
    assert last is not None
    cp = make_checkpoint(key, number=last.number + 1, epoch=last.epoch, kind=PRUNED,
                         created_at=clock(), prev=last.hash, chains=states)
    await save_checkpoint(conn, cp, public_key_b64(key), topic=topic)
    report.checkpoint = cp
    log.info("audit.pruned", entries=report.pruned_entries, chains=len(report.upto))
    return report


async def _verify_range(conn: AsyncConnection, public: bytes, bound: Checkpoint,
                        states: dict[str, ChainState], bar: Bar | None) -> dict[str, Mark]:
    """Check what a prune up to `bound` would delete before anything goes: every stored
    checkpoint (signature, numbering, links), then each chain from its signed pruned mark to
    the head `bound` signed. Returns those pruned marks (where each chain's range starts)."""
    cps = verify_checkpoints(await stored_checkpoints(conn), public)
    if cps.problem:
        raise PruneRefusedError(f"refusing to prune up to checkpoint {bound.number}: "
                                f"{cps.problem}", checkpoint=bound.number)
    starts, signed = cps.pruned_marks(), cps.signed_heads()
    if bar is not None:
        bar.set_total(len(bound.heads))
    for chain, head in bound.heads.items():
        if bar is not None:
            bar.advance()
        start = starts.get(chain, START)
        if head.seq <= start.seq:
            continue
        if chain not in states:
            raise PruneRefusedError(
                f"refusing to prune up to checkpoint {bound.number}: chain {chain} is signed "
                "but has no head in log_chain", checkpoint=bound.number)
        marks = {s: h for s, h in signed.get(chain, {}).items() if start.seq < s <= head.seq}
        marks[head.seq] = head.hash
        entries = [e async for e in chain_entries(conn, chain, after=start.seq, upto=head.seq)]
        broken = verify_chain(chain, entries, start=start, signed=marks).broken
        if broken is not None:
            raise PruneRefusedError(
                f"refusing to prune up to checkpoint {bound.number}: chain {broken.chain} "
                f"seq {broken.seq} id {broken.entry_id}: {broken.reason}",
                checkpoint=bound.number, broken=broken)
    return starts
