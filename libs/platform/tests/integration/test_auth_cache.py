"""The principals cache of an API process, on the real PostgreSQL: hits cost no query, a change
of the projection empties it at commit, and without its listener nothing is cached."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import ClassVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import AuthKeyDeleted
from misp_platform.app import create_app
from misp_platform.auth import PRINCIPAL_HANDLERS, authkey_hmac
from misp_platform.auth.cache import PrincipalCache, _local_caches
from misp_platform.config import ServiceSettings
from misp_platform.testing import seed_principal

PEPPER = secrets.token_hex(16)


class CacheTestSettings(ServiceSettings):
    service: ClassVar[str] = "cachetest"


async def until(predicate, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
async def api(platform_db: str) -> AsyncIterator[tuple[httpx.AsyncClient, PrincipalCache, str]]:
    engine = create_async_engine(platform_db)
    key = await seed_principal(engine, PEPPER, user_id=41, role={"perm_audit": True})
    await engine.dispose()
    app = create_app(CacheTestSettings(database_url=platform_db, pepper=PEPPER))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        cache: PrincipalCache = app.state.principal_cache

        async def listening() -> bool:
            return cache.listening

        await until(listening)
        yield client, cache, key


async def whoami(client: httpx.AsyncClient, key: str) -> int:
    response = await client.get("/api/v1/cachetest/whoami", headers={"Authorization": key})
    return response.status_code


async def test_a_known_key_is_served_from_the_cache_after_its_first_use(api) -> None:  # type: ignore[no-untyped-def]
    client, cache, key = api
    assert await whoami(client, key) == 200
    hits = cache.hits
    assert await whoami(client, key) == 200
    assert await whoami(client, key) == 200
    assert cache.hits == hits + 2


async def test_a_revoked_key_is_refused_as_soon_as_the_projection_commits(
        api, platform_db: str) -> None:  # type: ignore[no-untyped-def]
    client, cache, key = api
    cache.ttl_s = 3600  # no expiry within the test: only the notification can empty it
    # As the cache of another process: a write here does not empty it directly.
    _local_caches.discard(cache)
    assert await whoami(client, key) == 200
    hits = cache.hits
    assert await whoami(client, key) == 200
    assert cache.hits == hits + 1  # the key is cached
    generation = cache.generation
    engine = create_async_engine(platform_db)
    revoke = AuthKeyDeleted(authkey_id=41, user_id=41, key_hmac=authkey_hmac(PEPPER, key))
    async with engine.begin() as conn:
        await PRINCIPAL_HANDLERS[revoke.type](conn, Envelope(
            source="/test", type=revoke.type, actor=Actor.system(),
            data=revoke.model_dump(mode="json")))
    await engine.dispose()

    async def refused() -> bool:
        return await whoami(client, key) == 403

    await until(refused, timeout_s=30)
    assert cache.generation > generation  # emptied by the notification, not by expiry


async def test_without_its_listener_the_cache_holds_nothing_and_auth_still_works(
        api, platform_db: str) -> None:  # type: ignore[no-untyped-def]
    client, cache, key = api
    name = platform_db.rsplit("/", 1)[1]
    admin = create_async_engine(platform_db.rsplit("/", 1)[0] + "/postgres",
                                isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = :db AND query LIKE 'LISTEN%'"), {"db": name})
    await admin.dispose()

    async def stopped() -> bool:
        return not cache.listening

    await until(stopped)
    hits = cache.hits
    assert await whoami(client, key) == 200
    assert await whoami(client, key) == 200
    assert cache.hits == hits  # every request went to the database

    async def back() -> bool:
        return cache.listening

    await until(back)  # the listener reconnects by itself


async def test_requests_that_miss_one_key_at_once_share_one_lookup(api) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    client, cache, key = api
    lookups: list[str] = []

    def count(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "principal_authkey" in statement:
            lookups.append(statement)

    event.listen(Engine, "before_cursor_execute", count)  # every engine: the app's own
    try:
        cache.clear()
        assert await asyncio.gather(*(whoami(client, key) for _ in range(10))) == [200] * 10
        assert len(lookups) == 1
        assert await whoami(client, key) == 200 and len(lookups) == 1  # cached since
    finally:
        event.remove(Engine, "before_cursor_execute", count)
