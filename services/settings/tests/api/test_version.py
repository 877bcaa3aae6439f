"""`servers/getVersion` and `servers/getPyMISPVersion` as PyMISP's constructor reads them."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from misp_platform.testing import seed_principal
from settings.bootstrap import create_app
from settings.settings import SettingsSettings

PEPPER = secrets.token_hex(16)


@pytest.fixture
async def client_and_key(platform_db: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    engine = create_async_engine(platform_db)
    key = await seed_principal(engine, PEPPER, user_id=7,
                               role={"perm_sync": True, "perm_sighting": False})
    await engine.dispose()
    app = create_app(SettingsSettings(database_url=platform_db, pepper=PEPPER))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://settings") as client:
        yield client, key


async def test_get_version_answers_an_all_integer_version_and_the_callers_permissions(
        client_and_key: tuple[httpx.AsyncClient, str]) -> None:
    client, key = client_and_key
    response = await client.get("/servers/getVersion.json", headers={"Authorization": key})
    assert response.status_code == 200
    body = response.json()
    assert all(part.isdigit() for part in body["version"].split("."))
    assert body["pymisp_recommended_version"] == body["version"]
    assert body["perm_sync"] is True and body["perm_sighting"] is False


async def test_get_pymisp_version_and_a_missing_key_gets_misp_s_403(
        client_and_key: tuple[httpx.AsyncClient, str]) -> None:
    client, key = client_and_key
    ok = await client.get("/servers/getPyMISPVersion.json", headers={"Authorization": key})
    assert ok.json() == {"version": "2.5.1"}
    refused = await client.get("/servers/getVersion")
    assert refused.status_code == 403
    assert refused.json()["url"] == "/servers/getVersion"
    assert refused.json()["message"].startswith("Authentication failed.")
