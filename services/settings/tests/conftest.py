"""Fixtures of the settings service's tests: a fresh, migrated settings database per test, the
app in-process, and authkeys as identity's events would make them."""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from misp_platform.testing import drop_test_database, migrated_test_database, seed_principal
from settings.bootstrap import create_app
from settings.handlers.first_run import seed
from settings.settings import SettingsSettings

PEPPER = secrets.token_hex(16)
MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "settings" / "migrations"


@pytest.fixture
async def settings_db(pg_url: str) -> AsyncIterator[str]:
    url = await migrated_test_database(pg_url, MIGRATIONS, prefix="test_settings")
    yield url
    await drop_test_database(url)


@pytest.fixture
async def settings_engine(settings_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(settings_db, pool_size=10)
    await seed(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def service_settings(settings_db: str, kafka_bootstrap: str) -> SettingsSettings:
    return SettingsSettings(database_url=settings_db, pepper=PEPPER,
                            kafka_bootstrap_servers=kafka_bootstrap,
                            diagnostics_urls={}, diagnostics_timeout_s=2.0)


Keys = dict[str, str]


@pytest.fixture
async def keys(settings_engine: AsyncEngine) -> Keys:
    base = random.randint(10**6, 10**9)
    return {
        "site_admin": await seed_principal(settings_engine, PEPPER, user_id=base,
                                           role={"perm_site_admin": True, "perm_admin": True,
                                                 "perm_regexp_access": True, "perm_add": True}),
        "regexp": await seed_principal(settings_engine, PEPPER, user_id=base + 1,
                                       role={"perm_regexp_access": True}),
        "user": await seed_principal(settings_engine, PEPPER, user_id=base + 2,
                                     role={"perm_add": True}, org_id=5, org_name="other"),
        "sync": await seed_principal(settings_engine, PEPPER, user_id=base + 3,
                                     role={"perm_sync": True, "perm_add": True}),
    }


@pytest.fixture
async def client(service_settings: SettingsSettings,
                 settings_engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(service_settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://settings") as http:
        yield http
