"""The view cache of `users/view/{id|me}`: a repeated view costs no query; a change made by
this process shows on the very next request; a change made elsewhere (another process, the
consumer) shows once its notification arrives, which the read models' triggers send."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def view(identity: Any, key: str) -> dict[str, Any]:
    response = await identity.call("GET", "/users/view/me", key)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def until(check: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.02)


async def test_a_repeated_view_is_served_from_the_cache(identity) -> None:  # type: ignore[no-untyped-def]
    cache = identity.app.state.view_cache
    await until(lambda: _true(cache.listening))
    user = await identity.add_user(role_id=3)
    first = await view(identity, user["authkey"])
    hits = cache.hits
    again = await view(identity, user["authkey"])
    assert again == first and cache.hits == hits + 1


async def test_a_change_made_here_shows_on_the_next_request(identity) -> None:  # type: ignore[no-untyped-def]
    cache = identity.app.state.view_cache
    await until(lambda: _true(cache.listening))
    user = await identity.add_user(role_id=3)
    await view(identity, user["authkey"])
    done = await identity.call("POST", "/userSettings/setSetting", user["authkey"],
                               json={"setting": "homepage", "value": {"path": "/x"}})
    assert done.status_code == 200, done.text
    assert (await view(identity, user["authkey"]))["UserSetting"] == {"homepage": {"path": "/x"}}


async def test_a_change_made_by_another_process_shows_once_notified(identity) -> None:  # type: ignore[no-untyped-def]
    cache = identity.app.state.view_cache
    cache.ttl_s = 3600  # no expiry within the test: only the notification can empty it
    await until(lambda: _true(cache.listening))
    user = await identity.add_user(role_id=3)
    assert (await view(identity, user["authkey"]))["Organisation"]["name"] == "ORGNAME"
    await view(identity, user["authkey"])  # cached now
    other = create_async_engine(identity.settings.database_url)  # as the consumer would
    try:
        async with other.begin() as conn:
            await conn.execute(text(
                "UPDATE org SET state = jsonb_set(state, '{name}', '\"Renamed\"') "
                "WHERE org_id = 1"))
    finally:
        await other.dispose()

    async def renamed() -> bool:
        return (await view(identity, user["authkey"]))["Organisation"]["name"] == "Renamed"

    await until(renamed)


async def _true(value: bool) -> bool:
    return value
