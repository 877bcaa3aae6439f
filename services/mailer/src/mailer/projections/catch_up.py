"""Backfill of the users projection: the mailer's consumer group read identity's user topic
before the mailer projected users, so on start (while the projection is empty) the topic is read
once from its beginning to its current end and every user event applied in order."""

from __future__ import annotations

import asyncio

import structlog
from aiokafka import AIOKafkaConsumer
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters import store
from mailer.projections.users import when_user_deleted_project, when_user_saved_project
from misp_contracts.envelope import Envelope, from_kafka
from misp_contracts.events.identity import USER_TOPIC, UserCreated, UserDeleted, UserUpdated
from misp_platform.kafka import client_options

log = structlog.get_logger(__name__)

HANDLERS = {UserCreated.type: when_user_saved_project, UserUpdated.type: when_user_saved_project,
            UserDeleted.type: when_user_deleted_project}


async def read_to_end(bootstrap_servers: str, topic: str, *,
                      timeout_s: float = 20.0) -> list[Envelope]:
    """Every decodable envelope of `topic`, from its beginning to its end as of now."""
    consumer = AIOKafkaConsumer(topic, **client_options(bootstrap_servers),
                                enable_auto_commit=False, auto_offset_reset="earliest")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    out: list[Envelope] = []
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        while not consumer.assignment():
            if loop.time() > deadline:
                raise TimeoutError(f"no partition of {topic}")
            await consumer.getmany(timeout_ms=200)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            if loop.time() > deadline:
                raise TimeoutError(f"{topic} was not read to its end in time")
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        out.append(from_kafka(record.headers, record.value))
                    except Exception:  # poison is the live consumer's to dead-letter
                        continue
    finally:
        await consumer.stop()
    return out


async def backfill_users(engine: AsyncEngine, bootstrap_servers: str) -> int:
    async with engine.connect() as conn:
        if await store.user_count(conn):
            return 0
    try:
        envelopes = await read_to_end(bootstrap_servers, USER_TOPIC)
    except Exception as exc:
        log.warning("mailer.users_backfill_failed", error=f"{type(exc).__name__}: {exc}")
        return 0
    applied = 0
    async with engine.begin() as conn:
        for envelope in envelopes:
            handler = HANDLERS.get(envelope.type)
            if handler is not None:
                await handler(conn, envelope)
                applied += 1
    log.info("mailer.users_backfilled", events=applied)
    return applied
