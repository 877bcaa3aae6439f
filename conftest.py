"""Fixtures shared by every test: the real Kafka broker and PostgreSQL server.

`make test` starts both and exports `MISP_KAFKA_BOOTSTRAP_SERVERS` and `MISP_PG_URL`. Without
them, testcontainers is used when a Docker engine answers; otherwise the run fails (never skips).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from misp_contracts.topics import Topic
from misp_platform.kafka import ensure_topics
from misp_platform.testing import throwaway_database

# In-process apps run without read-your-writes (their consumers, if any, run in groups of the
# test's own); the tests of the guarantee turn it on, and the stack's processes always have it.
os.environ.setdefault("MISP_READ_YOUR_WRITES", "0")
# Nor do they follow the abuse detector's blocks, nor keep a failure budget per address (many
# call from one address with bad keys on purpose); libs/platform's test_auth.py and the e2e tests
# on the stack show both.
os.environ.setdefault("MISP_FOLLOW_ABUSE_BLOCKS", "0")
os.environ.setdefault("MISP_AUTH_FAIL_BUDGET", "0")


def _docker_ok() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _missing(name: str) -> None:
    pytest.fail(f"{name} is not set and no Docker engine answers: run the tests with `make test`")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    servers = os.environ.get("MISP_KAFKA_BOOTSTRAP_SERVERS")
    if servers:
        yield servers
        return
    if not _docker_ok():
        _missing("MISP_KAFKA_BOOTSTRAP_SERVERS")
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.1") as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """The server's URL without a database name (`postgresql+psycopg://user@host:port`)."""
    url = os.environ.get("MISP_PG_URL")
    if url:
        yield url
        return
    if not _docker_ok():
        _missing("MISP_PG_URL")
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver="psycopg") as pg:
        yield pg.get_connection_url().rsplit("/", 1)[0]


@pytest.fixture
async def platform_db(pg_url: str) -> AsyncIterator[str]:
    """A throwaway database with the platform's tables; yields its URL."""
    async with throwaway_database(pg_url) as url:
        yield url


@pytest.fixture
async def engine(platform_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(platform_db, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def new_topic(kafka_bootstrap: str) -> Callable[..., Awaitable[str]]:
    """Creates a uniquely named topic (auto-creation is off on the broker) and returns its name."""

    async def make(prefix: str = "test", partitions: int = 3) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        await ensure_topics(kafka_bootstrap, [Topic(name, owner="test", partitions=partitions)])
        return name

    return make
