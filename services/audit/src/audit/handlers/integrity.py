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
    chain_names,
    chain_states,
    checkpoint_numbered,
    count_entries_upto,
    delete_entries_upto,
    entry_batches,
    entry_count,
    latest_checkpoint,
    lock_checkpoints,
    newest_checkpoint_before,
    newest_checkpoints,
    newest_epoch,
    public_key_b64,
    save_checkpoint,
    save_verification,
    set_pruned_marks,
    source_offset_of,
    stored_checkpoints,
)
from audit.adapters.tables import LIVE, LogTables
from audit.domain.chain import START, Break, ChainWalk, Mark, verify_chain
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
from audit.domain.verification import (
    VerifyRangeError,
    default_since,
    entries_after,
    starts_after,
)
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC, AuditCheckpointSigned
from misp_platform.db import set_statement_timeout
from misp_platform.kafka import client_options
from misp_platform.progress import Bar

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


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
    # What was covered: the whole log, or the entries after checkpoint `since` (its signed heads
    # trusted: the `not_covered` entries up to them were not rehashed).
    full: bool = True
    since: Checkpoint | None = None
    not_covered: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "chains": self.chains,
                "checkpoints": self.checkpoints, "epoch": self.epoch,
                "checkpoint_problem": self.checkpoint_problem,
                "first_broken": self.first_broken.as_dict() if self.first_broken else None,
                "broken_chains": [b.as_dict() for b in self.broken_chains],
                "full": self.full,
                "since_checkpoint": self.since.number if self.since else None,
                "since_checkpoint_created_at": self.since.created_at if self.since else None,
                "not_covered_entries": self.not_covered}


async def verify(engine: AsyncEngine, public: bytes, *, published: Sequence[Checkpoint] = (),
                 tables: LogTables = LIVE, bar: Bar | None = None,
                 since: Checkpoint | None = None) -> VerifyReport:
    """Check the checkpoints, then walk every chain against its signed marks and heads (`bar`
    follows the entries walked); `since`: only the entries after that checkpoint's heads."""
    async with engine.connect() as conn:
        return await verify_in(conn, public, published=published, tables=tables, bar=bar,
                               since=since)


async def verify_in(conn: AsyncConnection, public: bytes, *,
                    published: Sequence[Checkpoint] = (),
                    tables: LogTables = LIVE, bar: Bar | None = None,
                    since: Checkpoint | None = None) -> VerifyReport:
    """`verify` on the caller's connection (a job worker's transaction).

    The whole log (`since` None): every checkpoint, and every entry of every chain from its
    signed pruned mark. From checkpoint `since`: the checkpoints from it on (signatures,
    numbering, links, their Kafka copies), and each chain's entries after the head `since`
    signed, the first of them linked to that signed hash: what lies before is trusted from the
    signature, not rehashed (`not_covered`).
    """
    report = VerifyReport(full=since is None, since=since)
    first = since.number if since is not None else None
    stored = await stored_checkpoints(conn, since=first)
    if first is not None:
        published = [cp for cp in published if cp.number >= first]
    cps = verify_checkpoints(stored, public, published)
    report.checkpoints, report.epoch = cps.count, cps.epoch
    if cps.problem:
        report.ok, report.checkpoint_problem = False, cps.problem
    elif since is not None and since.epoch != cps.epoch:
        report.ok = False
        report.checkpoint_problem = (f"checkpoint {since.number} is of epoch {since.epoch}, "
                                     f"the log's is {cps.epoch}")
    signed = cps.signed_heads()
    pruned = cps.pruned_marks()
    starts = starts_after(since, pruned)
    states = await chain_states(conn, tables)
    if since is not None:
        report.not_covered = entries_after(None, states) - entries_after(since, states)
    if bar is not None:
        bar.set_total(await entry_count(conn, tables) if since is None
                      else entries_after(since, states))
    in_log = await chain_names(conn, tables)
    for chain in sorted(set(in_log) | set(signed)):
        start = starts.get(chain, START)
        walk = ChainWalk(chain, start=start, signed=signed.get(chain))
        # The whole log reads every entry of a chain (one before its pruned mark is a break).
        after = start.seq if since is not None else None
        async with contextlib.aclosing(entry_batches(conn, chain, after=after,
                                                     tables=tables)) as batches:
            async for batch in batches:
                # Hashing is CPU work: in a thread, so that the process's event loop goes on
                # (the API's other requests; in the small profile, its consumers' heartbeats
                # too), while the next batch is fetched.
                intact = await asyncio.to_thread(walk.feed, batch)
                if bar is not None:
                    bar.advance(len(batch))
                if not intact:
                    break
        result = walk.finish()
        report.entries += result.entries
        if result.broken:
            report.broken_chains.append(result.broken)
    report.chains = len(in_log)
    if report.broken_chains:
        report.ok = False
        report.broken_chains.sort(key=lambda b: (b.entry_id is None, b.entry_id or 0, b.chain))
        report.first_broken = report.broken_chains[0]
    return report


@dataclass(frozen=True)
class VerifyLimits:
    """How much of the log a request verifies, so that it answers within a client's timeout:
    by default the whole log up to `default` entries, else the entries after the oldest
    checkpoint with at most `default` after it; a named range (or `full`) up to `most` entries,
    past which it is the `audit_verify` job's work (bench/audit.py's verify part: what they
    cost at the walk's rate)."""

    default: int = 20_000
    most: int = 100_000
    lookback: int = 1000  # checkpoints read back to choose the default range


async def choose_range(conn: AsyncConnection, limits: VerifyLimits, *, full: bool = False,
                       since_checkpoint: int | None = None,
                       since_time: datetime | None = None) -> Checkpoint | None:
    """The checkpoint a request's verification starts after (None: the whole log). Raises
    `VerifyRangeError` for a checkpoint that does not exist or is of an older epoch, and for a
    named range of more than `limits.most` entries."""
    states = await chain_states(conn)
    since: Checkpoint | None
    if since_checkpoint is not None:
        since = await checkpoint_numbered(conn, since_checkpoint)
        if since is None:
            raise VerifyRangeError(f"Invalid since_checkpoint: there is no checkpoint "
                                   f"{since_checkpoint}.")
        epoch = await newest_epoch(conn)
        if since.epoch != epoch:
            raise VerifyRangeError(
                f"Invalid since_checkpoint: checkpoint {since.number} is of epoch "
                f"{since.epoch}, before the log was rebuilt (epoch {epoch}).")
    elif since_time is not None:
        since = await newest_checkpoint_before(conn, since_time, inclusive=True)
    elif full:
        since = None
    else:
        return default_since(await newest_checkpoints(conn, limit=limits.lookback), states,
                             budget=limits.default)
    size = entries_after(since, states)
    if size > limits.most:
        what = "The log holds" if since is None else (
            f"The range after checkpoint {since.number} holds")
        raise VerifyRangeError(
            f"{what} {size} entries, more than a request verifies ({limits.most}): run the "
            "audit_verify job to verify the whole log (its result is reported here as "
            "last_full), or choose a later checkpoint.")
    return since


async def record_verification(conn: AsyncConnection, report: VerifyReport, *,
                              started_at: datetime, ran_by: str,
                              compared_with_kafka: bool) -> None:
    """Keep a full verification's result for the API's `last_full` (a range's is not kept)."""
    if report.full:
        await save_verification(conn, started_at=started_at, ran_by=ran_by, ok=report.ok,
                                report={**report.as_dict(),
                                        "compared_with_kafka": compared_with_kafka})


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
