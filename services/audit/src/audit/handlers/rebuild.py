"""Rebuild: replay the topics into fresh tables, then swap them in (a new epoch of checkpoints).

Entries are matched by source event id: the rebuilt log holds the same events, with ids and
chains recomputed. Entries at or below a chain's retention watermark (the source offset of the
last pruned entry) stay pruned. The swap happens under an exclusive lock on the live tables, after
a catch-up to the topics' current ends, so nothing the live consumer logged is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit.adapters.generations import (
    create_generation,
    create_settings_copy,
    drop_generation,
    drop_settings_copy,
    lock_generation,
    rename_generation,
    seed_pruned_offsets,
)
from audit.adapters.store import (
    chain_states,
    latest_checkpoint,
    lock_checkpoints,
    public_key_b64,
    save_checkpoint,
)
from audit.adapters.tables import LIVE, REBUILD, RETIRED, SETTINGS_REBUILD
from audit.domain.checkpoint import REBUILD as REBUILD_KIND
from audit.domain.checkpoint import Checkpoint, make_checkpoint
from audit.handlers.integrity import Clock, utcnow
from audit.projections.log import Options, Source, project
from misp_contracts.envelope import Envelope, from_kafka
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC
from misp_platform.kafka import client_options

log = structlog.get_logger(__name__)

Progress = Callable[[int, int], None]  # (advance by, new total)


@dataclass
class RebuildReport:
    entries: int = 0
    replayed: int = 0
    skipped_pruned: int = 0
    checkpoint: Checkpoint | None = None


class _Replayer:
    """Reads every matching topic from the beginning, without a consumer group."""

    def __init__(self, bootstrap: str, pattern: str) -> None:
        self.consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None,
                                         enable_auto_commit=False, max_poll_records=1000)
        self.pattern = re.compile(pattern)
        self.tps: list[TopicPartition] = []

    async def start(self) -> None:
        await self.consumer.start()
        try:
            await self.refresh()
        except BaseException:
            await self.consumer.stop()
            raise

    async def refresh(self) -> None:
        # A fresh view of the cluster (the consumer's own only knows what it subscribed to).
        cluster = await self.consumer._client.fetch_all_metadata()
        topics = sorted(t for t in cluster.topics() if self.pattern.match(t))
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(cluster.partitions_for_topic(t) or ())]
        new = [tp for tp in tps if tp not in self.tps]
        if new:
            self.tps = tps
            self.consumer.assign(self.tps)
            await self.consumer.seek_to_beginning(*new)

    async def remaining(self) -> tuple[dict[TopicPartition, int], int]:
        ends = await self.consumer.end_offsets(self.tps) if self.tps else {}
        left = 0
        for tp in self.tps:
            left += max(0, ends[tp] - await self.consumer.position(tp))
        return ends, left

    async def stop(self) -> None:
        await self.consumer.stop()


async def _replay_until(replayer: _Replayer, engine: AsyncEngine, ends: dict[TopicPartition, int],
                        watermarks: dict[str, int], report: RebuildReport,
                        progress: Progress | None, conn: AsyncConnection | None = None) -> None:
    options = Options(tables=REBUILD, publish=False, principals=False,
                      settings_table=SETTINGS_REBUILD)
    while True:
        pending = [tp for tp in replayer.tps
                   if await replayer.consumer.position(tp) < ends.get(tp, 0)]
        if not pending:
            return
        batches = await replayer.consumer.getmany(*pending, timeout_ms=1000, max_records=1000)
        items: list[tuple[Envelope, Source | None]] = []
        read = 0
        for tp, records in batches.items():
            for r in records:
                if r.offset >= ends.get(tp, 0):
                    continue
                read += 1
                source = Source(r.topic, r.partition, r.offset)
                if r.offset <= watermarks.get(source.chain, -1):
                    report.skipped_pruned += 1
                    continue
                try:
                    envelope = from_kafka(r.headers, r.value)
                except Exception:
                    continue  # poison: the live consumer sent it to the DLQ, it was never logged
                if envelope.type.startswith("misp."):
                    items.append((envelope, source))
        report.replayed += read
        if items:
            if conn is not None:
                report.entries += len(await project(conn, items, options))
            else:
                async with engine.begin() as own:
                    report.entries += len(await project(own, items, options))
        if progress is not None:
            progress(read, 0)


async def rebuild(engine: AsyncEngine, key: Ed25519PrivateKey, *, bootstrap: str, pattern: str,
                  progress: Progress | None = None, clock: Clock = utcnow,
                  checkpoint_topic: str = AUDIT_CHECKPOINT_TOPIC) -> RebuildReport:
    report = RebuildReport()
    async with engine.begin() as conn:
        await drop_generation(conn, REBUILD)
        await create_settings_copy(conn, SETTINGS_REBUILD)
        await create_generation(conn, REBUILD)
        watermarks = {c: s.pruned_offset for c, s in (await chain_states(conn)).items()
                      if s.pruned_offset is not None}
        if watermarks:
            await seed_pruned_offsets(conn, REBUILD, watermarks)
    replayer = _Replayer(bootstrap, pattern)
    await replayer.start()
    try:
        ends, left = await replayer.remaining()
        if progress is not None:
            progress(0, left)
        await _replay_until(replayer, engine, ends, watermarks, report, progress)
        async with engine.begin() as conn:
            # The live consumer waits from here: whatever it logged is on Kafka below `ends`.
            await lock_generation(conn, LIVE)
            await replayer.refresh()
            ends, left = await replayer.remaining()
            if progress is not None:
                progress(0, left)
            await _replay_until(replayer, engine, ends, watermarks, report, progress, conn)
            await lock_checkpoints(conn)
            states = await chain_states(conn, REBUILD)
            last = await latest_checkpoint(conn)
            cp = make_checkpoint(key, number=(last.number + 1) if last else 1,
                                 epoch=(last.epoch + 1) if last else 1, kind=REBUILD_KIND,
                                 created_at=clock(), prev=last.hash if last else None,
                                 chains=states)
            await drop_generation(conn, RETIRED)
            await rename_generation(conn, LIVE, RETIRED)
            await rename_generation(conn, REBUILD, LIVE)
            await save_checkpoint(conn, cp, public_key_b64(key), topic=checkpoint_topic)
            await drop_settings_copy(conn, SETTINGS_REBUILD)
            report.checkpoint = cp
    finally:
        await replayer.stop()
    log.info("audit.rebuilt", entries=report.entries, replayed=report.replayed,
             skipped_pruned=report.skipped_pruned)
    return report
