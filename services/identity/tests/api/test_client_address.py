"""The client's address behind the gateway (issue 15, item 3): X-Forwarded-For is believed from a
trusted proxy (loopback, the default of MISP_TRUSTED_PROXIES) and ignored from anyone else, for
the login limit, the audit's ip and authkeys' allowed IPs; five bad logins from one forwarded
address lock that address out, not the user's other callers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import select

from identity.handlers.login import BAD_CREDENTIALS
from misp_contracts.envelope import Envelope, from_kafka
from misp_contracts.events.auth import AuthenticationFailed
from misp_contracts.events.identity import UserLoggedIn, UserLoginFailed
from misp_platform.db import outbox

PASSWORD = "Correct-Horse-9battery"
GATEWAY = "127.0.0.1"  # a trusted proxy by default
OUTSIDER = "203.0.113.7"  # the fixture's own client: not a proxy
BLOCKED = "You have reached the maximum number of login attempts"


@asynccontextmanager
async def peer(identity: Any, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app whose connections come from `address`."""
    transport = httpx.ASGITransport(app=identity.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 timeout=30) as client:
        yield client


async def login(client: httpx.AsyncClient, email: str, password: str,
                forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post("/users/login", headers=headers,
                             json={"User": {"email": email, "password": password}})


async def events(identity: Any, event_type: str) -> list[Envelope]:
    async with identity.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.headers, outbox.c.payload)
                                   .order_by(outbox.c.position))).all()
    found = [from_kafka([(name, value.encode()) for name, value in r.headers], bytes(r.payload))
             for r in rows]
    return [e for e in found if e.type == event_type]


async def test_the_login_limit_and_the_audit_see_the_client_behind_a_trusted_proxy(
        identity) -> None:
    user = await identity.add_user(password=PASSWORD, change_pw=False)
    email = user["email"]
    async with peer(identity, OUTSIDER) as outsider:
        # Not a proxy: a new forged address each time, all five count against the peer.
        tries = await asyncio.gather(*(login(outsider, email, "wrong", f"198.51.100.{i}")
                                       for i in range(5)))
        assert [r.json()["message"] for r in tries] == [BAD_CREDENTIALS] * 5
        locked = await login(outsider, email, PASSWORD, "198.51.100.99")
        assert locked.status_code == 403 and locked.json()["message"].startswith(BLOCKED)
    async with peer(identity, GATEWAY) as gateway:
        # The gateway's callers are not locked out by the outsider; five bad logins from one of
        # them (whatever it put left of the gateway's own entry) lock out that one alone.
        tries = await asyncio.gather(*(
            login(gateway, email, "wrong", f"10.6.6.{i}, 198.51.100.20") for i in range(5)))
        assert [r.json()["message"] for r in tries] == [BAD_CREDENTIALS] * 5
        locked = await login(gateway, email, PASSWORD, "198.51.100.20")
        assert locked.status_code == 403 and locked.json()["message"].startswith(BLOCKED)
        other = await login(gateway, email, PASSWORD, "198.51.100.21")
        assert other.status_code == 200, other.text
    failures = await events(identity, UserLoginFailed.type)
    assert sorted((e.data["ip"], e.actor.client_ip) for e in failures) == (
        [("198.51.100.20", "198.51.100.20")] * 5 + [(OUTSIDER, OUTSIDER)] * 5)
    assert sum(e.data["blocked"] for e in failures) == 2
    assert [e.data["ip"] for e in await events(identity, UserLoggedIn.type)] == ["198.51.100.21"]


async def test_allowed_ips_and_refusals_see_the_forwarded_client(identity) -> None:
    user = await identity.add_user()
    added = await identity.call("POST", "/auth_keys/add/me", user["authkey"],
                                json={"allowed_ips": ["198.51.100.0/24"]})
    assert added.status_code == 200, added.text
    key = added.json()["AuthKey"]["authkey_raw"]
    me = {"Authorization": key, "Accept": "application/json"}
    async with peer(identity, GATEWAY) as gateway, peer(identity, OUTSIDER) as outsider:
        assert (await gateway.get("/users/view/me", headers={
            **me, "X-Forwarded-For": "198.51.100.5"})).status_code == 200
        # A forged entry left of the gateway's, or a header from a peer that is no proxy.
        for client, forwarded in ((gateway, "198.51.100.5, 192.0.2.9"),
                                  (outsider, "198.51.100.5")):
            refused = await client.get("/users/view/me",
                                       headers={**me, "X-Forwarded-For": forwarded})
            assert refused.status_code == 403, forwarded
        bad = {"Authorization": "b" * 40, "Accept": "application/json"}
        await gateway.get("/users/view/me", headers={**bad, "X-Forwarded-For": "192.0.2.77"})
    refusals = await events(identity, AuthenticationFailed.type)
    assert [(e.data["reason"], e.data["ip"]) for e in refusals] == [
        ("ip_refused", "192.0.2.9"), ("unknown", "192.0.2.77")]
