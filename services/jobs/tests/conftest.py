"""Fixtures of the jobs service's tests: a fresh, migrated jobs database per test (ids far from
the running stack's), the app in-process, and the consumer, relay, worker and scheduler as tasks
in consumer groups of their own that start at the end of their topics."""

from __future__ import annotations

import asyncio
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs.bootstrap import create_app
from jobs.consumer import handlers, topics
from jobs.handlers.noop import run_noop
from jobs.settings import JobsSettings
from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import WORKER_CONTROL_TOPIC, run_topic
from misp_contracts.topics import owned_by
from misp_platform.consumer import ConsumerRunner
from misp_platform.kafka import create_producer, ensure_topics
from misp_platform.migrations import upgrade
from misp_platform.relay import OutboxRelay
from misp_platform.testing import create_test_database, drop_test_database, seed_principal
from misp_platform.worker import WorkerRunner

from .support import start_group_at_end

PEPPER = secrets.token_hex(16)
MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "jobs" / "migrations"


@pytest.fixture
async def jobs_db(pg_url: str, kafka_bootstrap: str) -> AsyncIterator[str]:
    await ensure_topics(kafka_bootstrap, owned_by("jobs"))
    url = await create_test_database(pg_url, prefix="test_jobs")
    await asyncio.to_thread(upgrade, MIGRATIONS, url)
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        start = random.randint(10**12, 9 * 10**12)
        await conn.execute(text(f"ALTER SEQUENCE job_id_seq RESTART WITH {start}"))
        await conn.execute(text(f"ALTER SEQUENCE task_id_seq RESTART WITH {start}"))
    await engine.dispose()
    yield url
    await drop_test_database(url)


@pytest.fixture
async def jobs_engine(jobs_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(jobs_db, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def jobs_settings(jobs_db: str, kafka_bootstrap: str) -> JobsSettings:
    return JobsSettings(database_url=jobs_db, pepper=PEPPER,
                        kafka_bootstrap_servers=kafka_bootstrap)


@pytest.fixture
async def admin_key(jobs_engine: AsyncEngine) -> str:
    return await seed_principal(jobs_engine, PEPPER, user_id=random.randint(10**6, 10**9),
                                role={"perm_site_admin": True, "perm_admin": True})


@pytest.fixture
async def user_key(jobs_engine: AsyncEngine) -> str:
    return await seed_principal(jobs_engine, PEPPER, user_id=random.randint(10**6, 10**9))


@pytest.fixture
async def client(jobs_settings: JobsSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(jobs_settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://jobs") as http:
        yield http


@pytest.fixture
async def pipeline(jobs_settings: JobsSettings, jobs_engine: AsyncEngine,
                   kafka_bootstrap: str) -> AsyncIterator[None]:
    """The jobs consumer and relay as tasks."""
    group = f"test-jobs-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, topics(jobs_settings))
    runner = ConsumerRunner(service="jobs", group=group, engine=jobs_engine,
                            bootstrap_servers=kafka_bootstrap,
                            handlers=handlers(jobs_settings), topics=topics(jobs_settings),
                            backoff_s=0.05)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    relay = OutboxRelay(jobs_engine, jobs_settings.database_url, producer, poll_interval_s=0.05)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(runner.run(stop)), asyncio.create_task(relay.run(stop))]
    yield
    stop.set()
    await asyncio.gather(*tasks)
    await producer.stop()


WorkerFactory = Callable[..., Awaitable[WorkerRunner]]


@pytest.fixture
async def start_worker(jobs_engine: AsyncEngine,
                       kafka_bootstrap: str) -> AsyncIterator[WorkerFactory]:
    """Start in-process no-op workers (jobs' own) for a queue, in a group of the test."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    group = f"test-jobs-worker-{uuid.uuid4().hex}"
    await asyncio.sleep(0)

    async def start(queue: str = "default", **kw: object) -> WorkerRunner:
        await start_group_at_end(kafka_bootstrap, f"{group}-{queue}", [run_topic("jobs", queue)])
        runner = WorkerRunner(service="jobs", queue=queue, engine=jobs_engine,
                              bootstrap_servers=kafka_bootstrap, handlers={"noop": run_noop},
                              group=f"{group}-{queue}", heartbeat_s=0.5, **kw)  # type: ignore[arg-type]
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(runner.run(stop, ready=ready)))
        await asyncio.wait_for(ready.wait(), 30)
        return runner

    yield start
    stop.set()
    await asyncio.gather(*tasks)


@pytest.fixture
def publish(kafka_bootstrap: str) -> Callable[..., Awaitable[Envelope]]:
    async def send(event: DomainEvent, key: str, *, topic: str | None = None) -> Envelope:
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            env = Envelope(source="/test", type=event.type, subject=key,
                           actor=Actor(email="tester@example.test", org_id=1),
                           data=event.model_dump(mode="json"))
            headers, value = to_kafka(env)
            await producer.send_and_wait(topic or event.topic, value=value, key=key.encode(),
                                         headers=headers)
            return env
        finally:
            await producer.stop()

    return send


def now() -> datetime:
    return datetime.now(UTC)


__all__ = ["WORKER_CONTROL_TOPIC", "now"]
