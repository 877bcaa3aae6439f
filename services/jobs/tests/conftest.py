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
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from jobs.bootstrap import create_app
from jobs.consumer import batch_handlers, handlers, topics
from jobs.handlers.noop import run_noop
from jobs.settings import JobsSettings
from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.jobs import (
    QUEUES,
    WORKER_CONTROL_TOPIC,
    JobType,
    register_job_type,
    run_topic,
)
from misp_contracts.topics import Topic, owned_by
from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.consumer import ConsumerRunner
from misp_platform.kafka import create_producer, ensure_topics
from misp_platform.relay import OutboxRelay
from misp_platform.testing import (
    drop_test_database,
    migrated_test_database,
    seed_principal,
    start_group_at_end,
    with_principal_handlers,
)
from misp_platform.worker import WorkerRunner

PEPPER = secrets.token_hex(16)
MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "jobs" / "migrations"

# A no-op job type owned by a service that only these tests run: no worker of the running stack
# reads its run topics, so a test that needs a dispatch to wait unclaimed gets exactly that.
TEST_OWNER = "jobstest"
TEST_NOOP = register_job_type(JobType(
    name="test_noop", owner=TEST_OWNER, queues=QUEUES,
    description="The no-op job, run only by the jobs tests' own workers."))


@pytest.fixture
async def jobs_db(pg_url: str, kafka_bootstrap: str) -> AsyncIterator[str]:
    await ensure_topics(kafka_bootstrap, [*owned_by("jobs"), *(
        Topic(run_topic(TEST_OWNER, q), "jobs", partitions=1) for q in QUEUES)])
    url = await migrated_test_database(pg_url, MIGRATIONS, prefix="test_jobs")
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


class Pipeline:
    """The jobs consumer and relay as tasks; either may start later than the other (a test can
    hold the consumer back while the relay already publishes)."""

    def __init__(self, settings: JobsSettings, engine: AsyncEngine, bootstrap: str) -> None:
        self.settings, self.engine, self.bootstrap = settings, engine, bootstrap
        self.group = f"test-jobs-{uuid.uuid4().hex}"
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []
        self.producer = create_producer(bootstrap)

    async def open(self) -> None:
        await start_group_at_end(self.bootstrap, self.group,
                                 [*PRINCIPAL_TOPICS, *topics(self.settings)])
        await self.producer.start()

    def start_relay(self) -> None:
        relay = OutboxRelay(self.engine, self.settings.database_url, self.producer,
                            poll_interval_s=0.05)
        self.tasks.append(asyncio.create_task(relay.run(self.stop)))

    def start_consumer(self) -> None:
        runner = ConsumerRunner(service="jobs", group=self.group, engine=self.engine,
                                bootstrap_servers=self.bootstrap,
                                handlers=with_principal_handlers(handlers(self.settings)),
                                batch_handlers=batch_handlers(self.settings),
                                topics=[*PRINCIPAL_TOPICS, *topics(self.settings)],
                                backoff_s=0.05)
        self.tasks.append(asyncio.create_task(runner.run(self.stop)))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await self.producer.stop()


@pytest.fixture
async def pipeline_parts(jobs_settings: JobsSettings, jobs_engine: AsyncEngine,
                         kafka_bootstrap: str) -> AsyncIterator[Pipeline]:
    """The consumer and relay, not started: the test starts each when it wants."""
    parts = Pipeline(jobs_settings, jobs_engine, kafka_bootstrap)
    await parts.open()
    yield parts
    await parts.close()


@pytest.fixture
async def pipeline(pipeline_parts: Pipeline) -> AsyncIterator[None]:
    """The jobs consumer and relay as tasks."""
    pipeline_parts.start_relay()
    pipeline_parts.start_consumer()
    yield


class WorkerFactory:
    """Starts in-process no-op workers (jobs' own) for a queue, in a consumer group of the test
    that reads the run topic from the moment the queue was first positioned (or started)."""

    def __init__(self, engine: AsyncEngine, bootstrap: str) -> None:
        self.engine, self.bootstrap = engine, bootstrap
        self.group = f"test-jobs-worker-{uuid.uuid4().hex}"
        self.positioned: set[str] = set()
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def position_now(self, queue: str, service: str = TEST_OWNER) -> None:
        """Workers of `queue` started later read the dispatches sent from now on."""
        await start_group_at_end(self.bootstrap, f"{self.group}-{service}-{queue}",
                                 [run_topic(service, queue)])
        self.positioned.add(f"{service}-{queue}")

    async def __call__(self, queue: str = "default", service: str = TEST_OWNER,
                       **kw: Any) -> WorkerRunner:
        """A worker of `service`: `TEST_OWNER` (the default) runs `test_noop`, which no
        worker of the running stack takes; "jobs" runs `noop`."""
        if f"{service}-{queue}" not in self.positioned:
            await self.position_now(queue, service)
        runner = WorkerRunner(service=service, queue=queue, engine=self.engine,
                              bootstrap_servers=self.bootstrap,
                              handlers={"noop": run_noop, "test_noop": run_noop},
                              group=f"{self.group}-{service}-{queue}", heartbeat_s=0.5, **kw)
        ready = asyncio.Event()
        self.tasks.append(asyncio.create_task(runner.run(self.stop, ready=ready)))
        await asyncio.wait_for(ready.wait(), 30)
        return runner


@pytest.fixture
async def start_worker(jobs_engine: AsyncEngine,
                       kafka_bootstrap: str) -> AsyncIterator[WorkerFactory]:
    """Start in-process no-op workers for a queue, in a group of the test."""
    factory = WorkerFactory(jobs_engine, kafka_bootstrap)
    yield factory
    factory.stop.set()
    await asyncio.gather(*factory.tasks)


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
