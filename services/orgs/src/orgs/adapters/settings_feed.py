"""Settings published on `misp.settings.setting.v1`, read up to the end once before the first
run, so that org 1 gets MISP.org's latest value (as they come, the consumer records them:
misp_platform.server_settings)."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import from_kafka
from misp_contracts.events.settings import SETTING_TOPIC, SettingChanged
from misp_platform.kafka import client_options
from misp_platform.server_settings import record_setting

log = structlog.get_logger(__name__)


async def catch_up(engine: AsyncEngine, bootstrap_servers: str, *,
                   timeout_s: float = 10.0) -> int:
    """Record every setting change published so far; 0 when the topic cannot be read in time
    (then the catalogue's defaults stand until the consumer sees the changes)."""
    consumer = AIOKafkaConsumer(SETTING_TOPIC, **client_options(bootstrap_servers),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    seen: dict[str, tuple[SettingChanged, int | None]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        await asyncio.wait_for(consumer.start(), timeout_s)
        while not consumer.assignment():
            if loop.time() > deadline:
                raise TimeoutError("no partition of the settings topic")
            await consumer.getmany(timeout_ms=200)
        tps = list(consumer.assignment())
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            if loop.time() > deadline:
                raise TimeoutError("the settings topic was not read to its end in time")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        envelope = from_kafka(record.headers, record.value)
                    except Exception:  # not ours to judge: the consumer dead-letters it
                        continue
                    if envelope.type == SettingChanged.type:
                        event = SettingChanged.model_validate(envelope.data)
                        seen[event.name] = (event, envelope.streamversion)
    except Exception as exc:
        log.warning("orgs.settings_catch_up_failed", error=f"{type(exc).__name__}: {exc}")
        return 0
    finally:
        await consumer.stop()
    async with engine.begin() as conn:
        for name, (event, version) in seen.items():
            await record_setting(conn, name, event.value, version)
    return len(seen)
