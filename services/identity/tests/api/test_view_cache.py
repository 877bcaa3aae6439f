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


async def test_view_me_from_the_caches_is_the_routes_answer_without_its_handler(
        identity, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from identity.api import users
    from misp_platform.metrics import REGISTRY

    calls: list[int] = []
    handler = users.handlers.view_self_or_any

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await handler(*args, **kwargs)

    monkeypatch.setattr(users.handlers, "view_self_or_any", counted)
    cache = identity.app.state.view_cache
    await until(lambda: _true(cache.listening and identity.app.state.principal_cache.listening))
    user = await identity.add_user(role_id=3)
    first = await identity.call("GET", "/users/view/me", user["authkey"])  # the route fills both
    assert first.status_code == 200 and len(calls) == 1
    served = {"method": "GET", "route": "/users/view/{user_id}", "status": "200"}
    counted_before = REGISTRY.get_sample_value("http_requests_total", served) or 0
    lean = await identity.call("GET", "/users/view/me.json", user["authkey"])
    assert lean.status_code == 200 and len(calls) == 1  # answered from the caches alone
    assert REGISTRY.get_sample_value("http_requests_total", served) == counted_before + 1
    assert lean.content == first.content
    assert lean.headers["content-type"] == first.headers["content-type"]
    assert lean.headers["x-request-id"] and lean.headers["x-request-id"] != first.headers[
        "x-request-id"]
    by_id = await identity.call("GET", f"/users/view/{user['id']}", user["authkey"])
    assert by_id.content == first.content and len(calls) == 2  # the route, as before
    head = await identity.call("HEAD", "/users/view/me", user["authkey"])
    assert head.status_code == 200 and head.content == b"" and len(calls) == 2


async def test_view_me_with_an_unknown_or_absent_key_is_refused_by_the_route(identity) -> None:  # type: ignore[no-untyped-def]
    await until(lambda: _true(identity.app.state.principal_cache.listening))
    unknown = await identity.call("GET", "/users/view/me", "x" * 40)
    assert unknown.status_code == 403
    assert unknown.json()["name"].startswith("Authentication failed")
    assert (await identity.call("GET", "/users/view/me")).status_code == 403


async def test_a_deleted_key_is_refused_at_once_after_views_from_the_caches(identity) -> None:  # type: ignore[no-untyped-def]
    await until(lambda: _true(identity.app.state.principal_cache.listening))
    user = await identity.add_user(role_id=3)
    added = await identity.call("POST", "/auth_keys/add/me", user["authkey"], json={})
    key = added.json()["AuthKey"]
    for _ in range(3):
        assert (await identity.call("GET", "/users/view/me", key["authkey_raw"])).status_code == 200
    deleted = await identity.call("POST", f"/auth_keys/delete/{key['id']}", user["authkey"])
    assert deleted.status_code == 200, deleted.text
    assert (await identity.call("GET", "/users/view/me", key["authkey_raw"])).status_code == 403


async def test_views_of_me_that_miss_the_cache_at_once_share_one_read(
        identity, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from identity.api import users

    calls: list[int] = []
    handler = users.handlers.view_self_or_any

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await handler(*args, **kwargs)

    cache = identity.app.state.view_cache
    await until(lambda: _true(cache.listening and identity.app.state.principal_cache.listening))
    user = await identity.add_user(role_id=3)
    first = await view(identity, user["authkey"])  # the key is in the principal cache now
    monkeypatch.setattr(users.handlers, "view_self_or_any", counted)
    cache.clear()
    views = await asyncio.gather(*(view(identity, user["authkey"]) for _ in range(20)))
    assert views == [first] * 20
    assert len(calls) == 1


async def test_a_blocked_address_gets_the_429_even_with_a_key_in_the_caches(identity) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from misp_contracts.events.abuse import AbuseBlocked

    await until(lambda: _true(identity.app.state.principal_cache.listening))
    user = await identity.add_user(role_id=3)
    await view(identity, user["authkey"])
    await view(identity, user["authkey"])  # served from the caches now
    identity.app.state.abuse_guard.blocks.apply(AbuseBlocked(
        subject="address", value="203.0.113.7", failures=20, window_s=60,
        blocked_until=datetime.now(UTC) + timedelta(minutes=5)))
    refused = await identity.call("GET", "/users/view/me", user["authkey"])
    assert refused.status_code == 429 and refused.headers["retry-after"]


async def test_a_key_that_expires_says_when_on_views_from_the_caches(identity) -> None:  # type: ignore[no-untyped-def]
    await until(lambda: _true(identity.app.state.principal_cache.listening))
    user = await identity.add_user(role_id=3)
    expires = int(time.time()) + 86_400
    added = await identity.call("POST", "/auth_keys/add/me", user["authkey"],
                                json={"expiration": expires})
    assert added.status_code == 200, added.text
    raw = added.json()["AuthKey"]["authkey_raw"]
    answers = [await identity.call("GET", "/users/view/me", raw) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert {a.headers["X-Auth-Key-Expiration"] for a in answers} == {
        time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(expires))}
