"""The audit consumer: a pattern subscription over every `misp.*` topic, each event written as a
Log row chained on its source partition (and, for identity's and orgs' feeds, applied to the
principals projection in the same transaction)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import structlog
from aiokafka import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from audit.adapters.keys import load_or_create_key
from audit.handlers.integrity import PruneRefusedError, prune, write_checkpoint
from audit.projections.log import Options, PreparedRows, Source, project
from audit.settings import AuditSettings
from misp_contracts.envelope import Envelope
from misp_platform import failpoints, metrics, tracing
from misp_platform.config import ServiceSettings
from misp_platform.consumer import (
    BatchHandler,
    ConsumerRunner,
    Decoded,
    Handler,
    Positions,
)

H = TypeVar("H", BatchHandler, Handler)

log = structlog.get_logger(__name__)

# Allocations between two young-generation collections (the default is 700): a batch's worth.
GC_YOUNG_THRESHOLD = 50_000


class EveryMispType(dict[str, H]):
    """A handler table that answers every `misp.*` type with one handler (known or not)."""

    def __init__(self, handler: H) -> None:
        super().__init__()
        self.handler: H = handler

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.startswith("misp.")

    def __missing__(self, key: str) -> H:
        return self.handler

    def get(self, key: str, default: Any = None) -> Any:
        return self.handler if key in self else default


class AuditConsumer(ConsumerRunner):
    """The platform runner, handling every type, and telling the projection each event's
    source partition (its chain).

    Its fast path logs a whole batch in one call of the projection (whatever the types in it);
    the platform's one-by-one fallback (retries, dead letters)
    is unchanged. Traced, the batch takes the platform's path (one span per run of a trace).
    """

    def __init__(self, *, options: Options | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The principals projection has a consumer of its own (misp_platform.cli).
        self.options = options or Options(principals=False)
        self.batch_handlers = EveryMispType[BatchHandler](self._project)
        self._sources: dict[str, Source] = {}
        self._prepared = PreparedRows()

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        # A batch makes some tens of objects per event, nearly all gone once it commits: the
        # collector's default young-generation threshold (700) ran it dozens of times per batch,
        # each time promoting the batch's live objects, and its full collections walked
        # everything the process holds since start (frozen here: modules, engine, models).
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        await super().run(stop, ready=ready)

    def decode(self, records: Sequence[ConsumerRecord]) -> list[Decoded]:
        """The batch decoded, each event's source partition noted for the projection (which
        the platform's paths call with envelopes alone) until the batch is applied. The next
        batch is decoded while this one is applied: an id seen in both keeps its first source
        (its second delivery is a duplicate, never logged)."""
        decoded = super().decode(records)
        prepared = self._prepared
        for d in decoded:
            if d.envelope is not None:
                self._sources.setdefault(d.message_id, Source(
                    d.record.topic, d.record.partition, d.record.offset))
                # Mapped now, while the batch before is written (its waits on the database):
                # the projection takes the row if the settings are still those.
                prepared.prepare(d.envelope)
        return decoded

    async def apply(self, decoded: Sequence[Decoded], positions: Positions | None = None) -> None:
        try:
            await super().apply(decoded, positions)
        finally:
            for d in decoded:  # not a later delivery's (noted while this batch was applied)
                r = d.record
                if self._sources.get(d.message_id) == Source(r.topic, r.partition, r.offset):
                    del self._sources[d.message_id]
                    self._prepared.forget(d.message_id)

    async def _process_fast(self, batch: Sequence[Decoded], positions: Positions) -> None:
        """The whole batch in one transaction: its marks claimed, its new events logged in one
        call of the projection, the group's positions moved (traced: the platform's runs, one
        span per run of a trace context)."""
        if tracing.enabled():
            await super()._process_fast(batch, positions)
            return
        if any(d.error for d in batch):
            raise ValueError("batch holds an undecodable message")
        wanted = [d for d in batch if d.envelope is not None]
        async with self.transaction() as conn:  # the connection run keeps
            fresh = await self._claim_and_save_positions(conn, wanted, positions)
            envelopes: list[Envelope] = []
            for d in wanted:
                if d.message_id in fresh:  # else applied before (a redelivery)
                    fresh.discard(d.message_id)  # a duplicate inside the batch runs once
                    assert d.envelope is not None
                    envelopes.append(d.envelope)
            if envelopes:
                await self._project(conn, envelopes)
            failpoints.hit(f"{self.failpoint_scope}.before_commit")
        failpoints.hit(f"{self.failpoint_scope}.after_commit")
        self.applied += len(envelopes)
        metrics.messages_consumed_total.labels(outcome="applied").inc(len(envelopes))

    async def _project(self, conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
        await project(conn, [(e, self._sources.get(e.id)) for e in envelopes], self.options,
                      self._prepared)


def handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    return {}  # AuditConsumer handles every type itself


def replay_handlers(_settings: ServiceSettings) -> Mapping[str, Handler]:
    """A dead letter replayed (`python -m audit dlq replay`): logged like any event, on the
    chain of events without a source partition (its place in its partition has passed)."""

    async def log_one(conn: AsyncConnection, envelope: Envelope) -> None:
        await project(conn, [(envelope, None)], Options())

    return EveryMispType[Handler](log_one)


_background: set[asyncio.Task[None]] = set()


async def on_consumer_start(settings: ServiceSettings, engine: AsyncEngine) -> None:
    """Make sure the signing key exists, then checkpoint (and prune) in the background."""
    assert isinstance(settings, AuditSettings)
    key = load_or_create_key(settings.key_path)

    async def checkpoints() -> None:
        while True:
            await asyncio.sleep(settings.checkpoint_interval_s)
            try:
                await write_checkpoint(engine, key)
            except Exception:
                log.exception("audit.checkpoint_failed")

    async def retention() -> None:
        while settings.retention_days > 0:
            try:
                # The consumer's engine stops statements at db_statement_timeout_s; deleting
                # a large range may rightly take longer.
                await prune(engine, key, retention_days=settings.retention_days,
                            statement_timeout_s=settings.db_long_statement_timeout_s)
            except PruneRefusedError as exc:  # nothing deleted; verify tells the whole story
                log.error("audit.prune_refused", **exc.as_dict())
            except Exception:
                log.exception("audit.prune_failed")
            await asyncio.sleep(settings.prune_interval_s)

    for job in (checkpoints(), retention()):
        task = asyncio.get_running_loop().create_task(job)
        _background.add(task)
        task.add_done_callback(_background.discard)
