"""Fixtures of the orgs service's tests: a fresh, migrated orgs database per test, the app
in-process, principals as identity's events would make them, and the consumer as a task."""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.consumer import ConsumerRunner
from misp_platform.kafka import create_producer
from misp_platform.relay import OutboxRelay
from misp_platform.testing import (
    drop_test_database,
    migrated_test_database,
    seed_principal,
    start_group_at_end,
    with_principal_handlers,
)
from orgs.bootstrap import create_app
from orgs.consumer import handlers, topics
from orgs.settings import OrgsSettings

PEPPER = secrets.token_hex(16)
MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "orgs" / "migrations"


@pytest.fixture
async def orgs_db(pg_url: str) -> AsyncIterator[str]:
    """A fresh orgs database at the newest migration. Its id sequence starts far away from ids
    that other tests publish on the shared topics, which a consumer here also reads."""
    url = await migrated_test_database(pg_url, MIGRATIONS, prefix="test_orgs")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        start = random.randint(10**12, 9 * 10**12)
        await conn.execute(text(f"ALTER SEQUENCE organisation_id_seq RESTART WITH {start}"))
    await engine.dispose()
    yield url
    await drop_test_database(url)


@pytest.fixture
async def orgs_engine(orgs_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(orgs_db, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def orgs_settings(orgs_db: str, kafka_bootstrap: str) -> OrgsSettings:
    return OrgsSettings(database_url=orgs_db, pepper=PEPPER,
                        kafka_bootstrap_servers=kafka_bootstrap)


Keys = dict[str, str]


@pytest.fixture
async def keys(orgs_engine: AsyncEngine) -> Keys:
    """Authkeys: a site admin, an org admin, a plain user and one with perm_sharing_group."""
    base = random.randint(10**6, 10**9)
    return {
        "site_admin": await seed_principal(orgs_engine, PEPPER, user_id=base,
                                           role={"perm_site_admin": True, "perm_admin": True}),
        "org_admin": await seed_principal(orgs_engine, PEPPER, user_id=base + 1,
                                          role={"perm_admin": True}),
        "user": await seed_principal(orgs_engine, PEPPER, user_id=base + 2),
        "sharing": await seed_principal(orgs_engine, PEPPER, user_id=base + 3,
                                        role={"perm_sharing_group": True}),
    }


@pytest.fixture
async def client(orgs_settings: OrgsSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(orgs_settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://orgs") as http:
        yield http


@pytest.fixture
async def running_consumer(orgs_settings: OrgsSettings, orgs_engine: AsyncEngine,
                           kafka_bootstrap: str) -> AsyncIterator[ConsumerRunner]:
    """The orgs consumer and relay as tasks, in a consumer group of their own that starts at
    the topics' ends (what earlier tests and runs published is not this test's)."""
    group, subscribed = f"test-orgs-{uuid.uuid4().hex}", sorted(
        {*PRINCIPAL_TOPICS, *topics(orgs_settings)})
    await start_group_at_end(kafka_bootstrap, group, subscribed)
    runner = ConsumerRunner(service="orgs", group=group,
                            engine=orgs_engine, bootstrap_servers=kafka_bootstrap,
                            handlers=with_principal_handlers(handlers(orgs_settings)),
                            topics=subscribed, backoff_s=0.05)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(orgs_engine, orgs_settings.database_url, producer, poll_interval_s=0.1)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(runner.run(stop)), asyncio.create_task(relay.run(stop))]
    yield runner
    stop.set()
    await asyncio.gather(*tasks)
    await producer.stop()


@pytest.fixture
def publish(kafka_bootstrap: str) -> Callable[..., Awaitable[list[Envelope]]]:
    """Publish contract events on their topics as their owner would (subject = stream key)."""

    async def send(events: list[tuple[str, DomainEvent]], **envelope: Any) -> list[Envelope]:
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        sent = []
        try:
            for subject, event in events:
                env = Envelope(source="/" + event.type.split(".")[1], type=event.type,
                               subject=subject, actor=Actor.system(),
                               data=event.model_dump(mode="json"), **envelope)
                headers, value = to_kafka(env)
                await producer.send_and_wait(event.topic, value=value, key=subject.encode(),
                                             headers=headers)
                sent.append(env)
        finally:
            await producer.stop()
        return sent

    return send


