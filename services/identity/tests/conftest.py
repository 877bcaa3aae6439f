"""Identity in-process: a fresh database migrated by the service's own migrations, the ASGI app
on it, organisation 1 fed as orgs publishes it, the first run done; helpers to make principals."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity.bootstrap import create_app, spec
from identity.handlers.first_run import key_path, seed
from identity.settings import IdentitySettings
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform.testing import (
    drop_test_database,
    migrated_test_database,
    required_env,
    with_principal_handlers,
)


async def migrated_database() -> str:
    return await migrated_test_database(required_env("MISP_PG_URL"), spec.migrations_dir,
                                        prefix="test_identity")


async def feed_org(engine: AsyncEngine, org_id: int, name: str | None = None,
                   **fields: Any) -> OrganisationState:
    """Organisation events as orgs publishes them, applied as identity's consumer does."""
    import uuid

    state = OrganisationState(id=org_id, uuid=str(uuid.uuid4()), name=name or f"org-{org_id}",
                              date_created=datetime.now(UTC), **fields)
    event = OrganisationCreated(organisation=state)
    envelope = Envelope(source="/orgs", type=event.type, subject=state.uuid,
                        actor=Actor.system(), data=event.model_dump(mode="json"))
    handlers = with_principal_handlers(spec.handlers(IdentitySettings()))
    async with engine.begin() as conn:
        await handlers[event.type](conn, envelope)
    return state


@dataclass
class Identity:
    """The service under test: its app client, engine, settings, the site admin's key and
    the app itself."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    settings: IdentitySettings
    admin_key: str
    app: Any = None

    async def call(self, method: str, path: str, key: str | None = None,
                   json: Any = None, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": "application/json", **kwargs.pop("headers", {})}
        if key is not None:
            headers["Authorization"] = key
        return await self.client.request(method, path, json=json, headers=headers, **kwargs)

    async def add_user(self, key: str | None = None, **fields: Any) -> dict[str, Any]:
        body = {"email": f"u-{secrets.token_hex(5)}@example.test", **fields}
        response = await self.call("POST", "/admin/users/add", key or self.admin_key, json=body)
        assert response.status_code == 200, response.text
        return response.json()["User"]

    async def set_setting(self, name: str, value: Any) -> None:
        from misp_platform.server_settings import record_setting

        async with self.engine.begin() as conn:
            await record_setting(conn, name, value)


@pytest.fixture
async def identity() -> AsyncIterator[Identity]:
    url = await migrated_database()
    state_dir = tempfile.mkdtemp(prefix="idst")
    settings = IdentitySettings(database_url=url, pepper=secrets.token_hex(16),
                                state_dir=state_dir)
    engine = create_async_engine(url, pool_size=10, max_overflow=60)
    try:
        await feed_org(engine, 1, "ORGNAME", local=True, type="ADMIN")
        assert await seed(engine, pepper=settings.pepper.get_secret_value(),
                          state_dir=state_dir)
        admin_key = key_path(state_dir).read_text().strip()
        app = create_app(settings, engine=engine, configure_logs=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                         timeout=30) as client:
                yield Identity(client, engine, settings, admin_key, app)
    finally:
        await engine.dispose()
        await drop_test_database(url)
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def add_org(identity: Identity):  # type: ignore[no-untyped-def]
    """`await add_org(id, name=...)`: an organisation as orgs publishes it."""

    async def add(org_id: int, name: str | None = None, **fields: Any) -> OrganisationState:
        return await feed_org(identity.engine, org_id, name, **fields)

    return add


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """An empty database migrated by identity's migrations (dropped afterwards)."""
    url = await migrated_database()
    try:
        yield url
    finally:
        await drop_test_database(url)
