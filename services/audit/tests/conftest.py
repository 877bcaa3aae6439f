"""Fixtures of the audit service's tests: a migrated database and a test topic namespace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from audit.testing import Namespace
from misp_platform.testing import drop_test_database, migrated_test_database

MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "audit" / "migrations"


@pytest.fixture
async def audit_db(pg_url: str) -> AsyncIterator[str]:
    """A fresh database brought up by the audit's own migrations."""
    url = await migrated_test_database(pg_url, MIGRATIONS, prefix="audit")
    try:
        yield url
    finally:
        await drop_test_database(url)


@pytest.fixture
async def audit_engine(audit_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(audit_db, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def namespace(kafka_bootstrap: str) -> Namespace:
    return Namespace(kafka_bootstrap)


