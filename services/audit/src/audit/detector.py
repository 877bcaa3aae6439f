"""The abuse detector: `python -m audit detect`, a faust-streaming worker over every service's
auth topic.

Two agents:
1. `strike` reads the failed authentications of all services (`misp.<service>.auth.v1`) and
   re-keys each by what it strikes (audit.domain.abuse: its address, its key's prefix) onto the
   internal topic `<app>-strikes`, so that one subject's strikes meet in one partition whichever
   service saw them.
2. `judge` counts the strikes of each subject in a hopping-window table (abuse_window_s wide,
   moving by abuse_window_step_s: a sliding window at that step); a subject reaching its
   threshold, and not blocked already, is blocked: `AbuseBlocked` on `misp.audit.abuse.v1` for
   abuse_block_s, which every service's API applies (misp_platform.auth.abuse) and the audit
   logs as an `auth_alert` row, published to the SIEM topic like every row.

Both tables are kept in memory and restored from their changelog topics when a worker starts,
so a restart forgets neither the counts nor the blocks. Delivery is at least once: a crash
between a block's publication and the offset commit may publish the same block again, which
every reader applies idempotently (the latest end wins).

The faust app id, its consumer group and the prefix of its internal topics are
`misp-audit-abuse-detector` (not `misp.`: the audit's own consumer reads every `misp.*` topic).

Like the other roles that serve no HTTP, it has an ops port when one is set
(misp_platform.ops_port: `/healthz` 200 while the faust worker runs and its event loop turns,
`/metrics` with the blocks it published, `abuse_blocks_total`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click
import structlog
from prometheus_client import Counter

from audit.domain.abuse import Thresholds, strikes
from audit.settings import AuditSettings
from misp_contracts.envelope import Actor, Envelope, from_kafka, to_kafka
from misp_contracts.events.abuse import ABUSE_TOPIC, AbuseBlocked
from misp_contracts.events.auth import auth_topic
from misp_contracts.topics import SERVICES, owned_by
from misp_platform.cli_support import epilog, settings_for
from misp_platform.kafka import durability, ensure_topics, security_options
from misp_platform.metrics import REGISTRY
from misp_platform.ops_port import OpsPort

if TYPE_CHECKING:  # faust is imported by the detector's process only (it is slow to import)
    import faust
    from faust.types import EventT, StreamT

log = structlog.get_logger(__name__)

APP_ID = "misp-audit-abuse-detector"
STRIKES_TOPIC = f"{APP_ID}-strikes"
PARTITIONS = 3


def _credentials() -> faust.SASLCredentials | None:
    """The process's Kafka principal (misp_platform.kafka.security_options) in faust's terms."""
    import faust

    options = security_options()
    if not str(options.get("security_protocol", "")).startswith("SASL_"):
        return None
    return faust.SASLCredentials(username=options["sasl_plain_username"],
                                 password=options["sasl_plain_password"],
                                 mechanism=options["sasl_mechanism"],
                                 ssl_context=options.get("ssl_context"))


abuse_blocks_total = Counter(
    "abuse_blocks_total", "Blocks the abuse detector published, by what they block",
    ["subject"], registry=REGISTRY)


def build(settings: AuditSettings, ops: OpsPort | None = None) -> faust.App:
    """The detector's faust app, its topics, tables and agents; healthy on `ops` while it runs."""
    import faust

    factor, _config = durability()
    app = faust.App(
        APP_ID,
        broker=[f"kafka://{host.strip()}"
                for host in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=_credentials(),
        store="memory://",
        web_enabled=False,
        topic_replication_factor=factor,
        topic_partitions=PARTITIONS,
        # "earliest": also where a table's recovery starts once its changelog's oldest segment
        # was deleted ("latest" there would wait forever for the missing offsets); a new group
        # skips the failures older than a window instead (stale)
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # a worker that died without leaving the group hands its partitions over within seconds
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
    )
    thresholds = Thresholds(address=settings.abuse_address_threshold,
                            key_prefix=settings.abuse_key_prefix_threshold)
    exempt = settings.abuse_exempt
    window_s, block_s = settings.abuse_window_s, settings.abuse_block_s

    failures = app.topic(*(auth_topic(s) for s in SERVICES), key_serializer="raw",
                         value_serializer="raw")
    strikes_topic = app.topic(STRIKES_TOPIC, internal=True, partitions=PARTITIONS,
                              key_serializer="raw", value_serializer="raw")
    blocks_topic = app.topic(ABUSE_TOPIC, key_serializer="raw", value_serializer="raw")
    table = app.Table("strikes", default=int, partitions=PARTITIONS)
    counts = table.hopping(window_s, settings.abuse_window_step_s,
                           expires=timedelta(seconds=2 * window_s))
    blocked_until = app.Table("blocked-until", default=float, partitions=PARTITIONS)

    async def fresh(stream: StreamT[Any]) -> AsyncIterator[EventT[Any]]:
        """The stream's events of the last window; an older one (a new group reading history, a
        long outage) counts nothing."""
        async for event in stream.events():
            if time.time() - event.message.timestamp <= window_s:
                yield event

    @app.agent(failures)
    async def strike(stream: StreamT[Any]) -> None:
        async for event in fresh(stream):
            try:
                headers = event.message.headers or ()
                pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
                envelope = from_kafka(pairs, event.value)
            except Exception as exc:  # not ours to judge: skipped, never fatal
                log.warning("abuse.unreadable", topic=event.message.topic, error=str(exc))
                continue
            for subject in strikes(envelope.type, envelope.data, exempt):
                await strikes_topic.send(key=subject.encode(), value=b"1")

    @app.agent(strikes_topic)
    async def judge(stream: StreamT[Any]) -> None:
        async for event in fresh(stream):
            key = event.key
            subject = key.decode() if isinstance(key, bytes) else str(key)
            counts[subject] += 1
            # The window that ends with this strike: the earliest of those holding it
            assert table.window is not None
            failures_now = int(counts[subject][table.window.earliest(event.message.timestamp)])
            now = time.time()
            if failures_now < thresholds.of(subject) or blocked_until[subject] > now:
                continue
            until = now + block_s
            blocked_until[subject] = until
            kind, _, value = subject.partition(":")
            block = AbuseBlocked(subject=kind, value=value,
                                 failures=failures_now, window_s=window_s,
                                 blocked_until=datetime.fromtimestamp(until, UTC))
            headers, body = to_kafka(Envelope(
                source="/audit/abuse-detector", type=AbuseBlocked.type,
                actor=Actor.system(),
                data=block.model_dump(mode="json")))
            await blocks_topic.send(key=subject.encode(), value=body, headers=headers)
            abuse_blocks_total.labels(kind).inc()
            log.warning("abuse.blocked", subject=kind, value=value, failures=failures_now,
                        until=block.blocked_until.isoformat())

    if ops is not None:
        @app.task
        async def alive() -> None:
            """Healthy from the worker's start until it stops (the task is cancelled then)."""
            async with ops.alive():
                await asyncio.Event().wait()

    return app


@click.command("detect", epilog=epilog())
@click.pass_context
def detect_command(ctx: click.Context) -> None:
    """Run the abuse detector (a faust-streaming worker) until stopped."""
    import faust

    settings = settings_for(ctx)
    assert isinstance(settings, AuditSettings)
    # The audit's topics, the blocks' among them, exist before the first block is published.
    asyncio.run(ensure_topics(settings.kafka_bootstrap_servers, owned_by("audit")))
    ops = OpsPort.from_settings(settings)
    app = build(settings, ops)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    ops.start()
    try:
        worker.execute_from_commandline()
    finally:
        ops.stop()
