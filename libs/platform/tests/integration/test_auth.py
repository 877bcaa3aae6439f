"""The auth dependency against the real PostgreSQL: the principals projection fed with identity's
and orgs' contract events, requests through the ASGI app, failures recorded in the outbox."""

from __future__ import annotations

import itertools
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from misp_contracts.envelope import Envelope
from misp_contracts.events.abuse import AbuseBlocked
from misp_contracts.events.auth import AuthenticationFailed, auth_topic
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyDeleted,
    AuthKeyState,
    RoleCreated,
    RoleState,
    RoleUpdated,
    SessionEnded,
    SessionStarted,
    UserCreated,
    UserDeleted,
    UserState,
    UserUpdated,
)
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform.app import create_app
from misp_platform.auth import (
    PRINCIPAL_HANDLERS,
    CurrentPrincipal,
    Principal,
    SiteAdmin,
    abuse,
    authkey_hmac,
    generate_authkey,
    require_perm,
)
from misp_platform.auth.dependency import (
    AUTH_FAILED,
    IP_REFUSED,
    TITLE_CSRF,
    TITLE_SESSION_UNKNOWN,
    USER_DISABLED,
)
from misp_platform.auth.sessions import (
    CHANGE_PASSWORD_FIRST,
    CSRF_HEADER,
    CSRF_REFUSED,
    SESSION_COOKIE,
    csrf_token,
    session_hmac,
)
from misp_platform.config import ServiceSettings
from misp_platform.db import outbox
from misp_platform.misp.errors import NO_PERMISSION
from misp_platform.testing import required_env, throwaway_database

PEPPER = secrets.token_hex(16)
_ids = itertools.count(1000 + secrets.randbelow(10_000) * 100)


class AuthTestSettings(ServiceSettings):
    service: ClassVar[str] = "authtest"


router = APIRouter()


@router.get("/things/view/{thing_id}")
@router.post("/things/view/{thing_id}")
async def view_thing(thing_id: int, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"thing": thing_id, "user_id": principal.user_id, "org": principal.org_name,
            "read_only": principal.read_only, "site_admin": principal.is_site_admin,
            "request_id": principal.request_id}


@router.get("/admin/things/index")
async def admin_things(principal: SiteAdmin) -> dict[str, Any]:
    return {"user_id": principal.user_id}


@router.get("/audit/things/index")
async def audit_things(principal: Principal = Depends(require_perm("perm_audit"))) -> dict:
    return {"user_id": principal.user_id}


@pytest.fixture(scope="module")
async def database_url():
    async with throwaway_database(required_env("MISP_PG_URL"), prefix="test_auth") as url:
        yield url


@pytest.fixture(scope="module")
async def engine(database_url):
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def client(engine, database_url):
    settings = AuthTestSettings(database_url=database_url, pepper=PEPPER,
                                kafka_bootstrap_servers="127.0.0.1:9092")
    app = create_app(settings, routers=[router], engine=engine, configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def apply(engine: AsyncEngine, event: DomainEvent) -> None:
    """Feed the projection as the consumer would: one handler call in one transaction."""
    envelope = Envelope(source="/identity", type=event.type, data=event.model_dump(mode="json"))
    async with engine.begin() as conn:
        await PRINCIPAL_HANDLERS[envelope.type](conn, envelope)


def role_state(role_id: int, **flags: Any) -> RoleState:
    base = {"perm_auth": True, "perm_audit": True, "perm_add": True, "perm_modify": True}
    return RoleState(id=role_id, name=f"role-{role_id}", **{**base, **flags})


class World:
    """One org, role, user and key, built from contract events; ids and names are fresh."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.org_id = next(_ids)
        self.role_id = next(_ids)
        self.user_id = next(_ids)
        self.email = f"user-{uuid.uuid4().hex[:10]}@example.org"
        self.org_name = f"org-{uuid.uuid4().hex[:8]}"
        self.user = UserState(id=self.user_id, uuid=str(uuid.uuid4()), email=self.email,
                              org_id=self.org_id, role_id=self.role_id)

    async def build(self, role_flags: dict[str, Any] | None = None, **key: Any) -> str:
        await apply(self.engine, OrganisationCreated(organisation=OrganisationState(
            id=self.org_id, uuid=str(uuid.uuid4()), name=self.org_name)))
        await apply(self.engine, RoleCreated(role=role_state(self.role_id, **(role_flags or {}))))
        await apply(self.engine, UserCreated(user=self.user))
        return await self.add_key(**key)

    async def add_key(self, **fields: Any) -> str:
        raw = generate_authkey()
        self.key_id = next(_ids)
        await apply(self.engine, AuthKeyCreated(authkey=AuthKeyState(
            id=self.key_id, uuid=str(uuid.uuid4()), user_id=self.user_id,
            key_hmac=authkey_hmac(PEPPER, raw), authkey_start=raw[:4], authkey_end=raw[-4:],
            **fields)))
        return raw


def auth_failed(url: str) -> dict[str, str]:
    return {"name": AUTH_FAILED, "message": AUTH_FAILED, "url": url}


async def auth_rows(engine: AsyncEngine) -> list[tuple[dict[str, Any], dict[str, str], bytes]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.payload, outbox.c.headers).where(
            outbox.c.topic == auth_topic("authtest")))).all()
    return [(json.loads(r.payload), dict(r.headers), bytes(r.payload)) for r in rows]


async def test_a_valid_key_authenticates_through_either_header(client, engine):
    key = await World(engine).build()
    for headers in ({"Authorization": key}, {"X-MISP-AUTH": key},
                    {"Authorization": "0" * 40, "X-MISP-AUTH": key},
                    {"Authorization": f"{'1' * 40}, {key}"}):
        response = await client.get("/things/view/5", headers=headers)
        assert response.status_code == 200, (headers, response.text)
        assert response.json()["thing"] == 5


async def test_x_misp_auth_wins_over_a_valid_authorization(client, engine):
    key = await World(engine).build()
    response = await client.get("/things/view/1",
                                headers={"Authorization": key, "X-MISP-AUTH": "2" * 40})
    assert response.status_code == 403


async def test_missing_malformed_unknown_and_basic_keys_get_misps_403(client):
    for headers in ({}, {"Authorization": "short"}, {"Authorization": "a" * 41},
                    {"Authorization": generate_authkey()}, {"X-MISP-AUTH": generate_authkey()},
                    {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}):
        response = await client.get("/things/view/1", headers=headers)
        assert response.status_code == 403, headers
        assert response.json() == auth_failed("/things/view/1")


async def test_the_url_in_the_error_is_the_path_the_client_asked_for(client):
    response = await client.get("/things/view/1.json")
    assert response.json() == auth_failed("/things/view/1.json")


async def test_failures_are_recorded_with_the_key_masked_never_raw(client, engine):
    raw = generate_authkey()
    response = await client.get("/things/view/1",
                                headers={"Authorization": raw, "X-Request-ID": "req-auth-1",
                                         "User-Agent": "PyMISP test"})
    assert response.status_code == 403
    assert response.headers["X-Request-ID"] == "req-auth-1"
    masked = f"{raw[:4]}{'*' * 32}{raw[-4:]}"
    found = [(data, headers, payload) for data, headers, payload in await auth_rows(engine)
             if masked in data["title"]]
    assert len(found) == 1
    data, headers, payload = found[0]
    assert data["title"] == f"Failed authentication using API key ({masked})"
    assert data["reason"] == "unknown"
    assert data["ip"] == "127.0.0.1" and data["target"] == "/things/view/1"
    assert data["user_agent"] == "PyMISP test"
    assert raw.encode() not in payload and raw not in json.dumps(headers)
    assert headers["ce_type"] == AuthenticationFailed.type
    assert headers["ce_source"] == "/authtest"
    assert headers["ce_actorrequestid"] == "req-auth-1"
    assert headers["ce_actoremail"] == "SYSTEM"


async def test_missing_and_short_keys_are_recorded_with_misps_titles(client, engine):
    before = len(await auth_rows(engine))
    await client.get("/things/view/1")
    await client.get("/things/view/1", headers={"Authorization": "tooshort"})
    titles = [data["title"] for data, _, _ in (await auth_rows(engine))[before:]]
    assert "Failed API authentication. No authkey was provided." in titles
    assert "Failed authentication using an API key of incorrect length." in titles
    assert not any("tooshort" in t for t in titles)


async def test_an_expired_key_is_refused_and_recorded_as_expired(client, engine):
    world = World(engine)
    key = await world.build(expiration=int(time.time()) - 5)
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert response.status_code == 403
    assert response.json() == auth_failed("/things/view/1")
    reasons = [d for d, _, _ in await auth_rows(engine) if d.get("authkey_id") == world.key_id]
    assert [d["reason"] for d in reasons] == ["expired"]
    assert reasons[0]["title"] == f"Login attempt by expired auth key {world.key_id}."


async def test_a_key_that_expires_later_works_and_says_when(client, engine):
    expires = int(time.time()) + 3600
    key = await World(engine).build(expiration=expires)
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert response.status_code == 200
    assert response.headers["X-Auth-Key-Expiration"].startswith(
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(expires)))
    key = await World(engine).build()
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert "X-Auth-Key-Expiration" not in response.headers


async def test_allowed_ips_are_enforced_on_the_gateways_client_address(client, engine):
    key = await World(engine).build(allowed_ips=["10.0.0.0/8"])
    refused = await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": "198.51.100.7"})
    assert refused.status_code == 403
    assert refused.json() == {"name": IP_REFUSED, "message": IP_REFUSED, "url": "/things/view/1"}
    allowed = await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": "10.1.2.3"})
    assert allowed.status_code == 200
    spoofed = await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": "10.1.2.3, 198.51.100.7"})
    assert spoofed.status_code == 403


async def test_a_disabled_user_is_refused(client, engine):
    world = World(engine)
    key = await world.build()
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200
    await apply(engine, UserUpdated(user=world.user.model_copy(update={"disabled": True}),
                                    changes={"disabled": (False, True)}))
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert response.status_code == 403
    assert response.json() == {"name": USER_DISABLED, "message": USER_DISABLED,
                               "url": "/things/view/1"}


async def test_a_read_only_key_may_read_but_not_write(client, engine):
    key = await World(engine).build(role_flags={"perm_site_admin": True, "perm_admin": True},
                                    read_only=True)
    read = await client.get("/things/view/1", headers={"Authorization": key})
    assert read.status_code == 200
    assert read.json()["read_only"] is True and read.json()["site_admin"] is False
    write = await client.post("/things/view/1", headers={"Authorization": key})
    assert write.status_code == 403
    assert write.json() == {"name": NO_PERMISSION, "message": NO_PERMISSION,
                            "url": "/things/view/1"}
    admin = await client.get("/admin/things/index", headers={"Authorization": key})
    assert admin.status_code == 403


async def test_a_role_edit_takes_effect_on_the_next_request(client, engine):
    world = World(engine)
    key = await world.build()
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200
    await apply(engine, RoleUpdated(role=role_state(world.role_id, perm_auth=False),
                                    changes={"perm_auth": (True, False)}))
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert response.status_code == 403
    assert response.json() == auth_failed("/things/view/1")
    await apply(engine, RoleUpdated(role=role_state(world.role_id),
                                    changes={"perm_auth": (False, True)}))
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200


async def test_a_revoked_key_is_refused_at_once(client, engine):
    world = World(engine)
    key = await world.build()
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200
    await apply(engine, AuthKeyDeleted(authkey_id=world.key_id, user_id=world.user_id,
                                       key_hmac=authkey_hmac(PEPPER, key)))
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert response.status_code == 403
    assert response.json() == auth_failed("/things/view/1")


async def test_a_deleted_user_loses_access(client, engine):
    world = World(engine)
    key = await world.build()
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200
    await apply(engine, UserDeleted(user_id=world.user_id, uuid=world.user.uuid,
                                    email=world.email, org_id=world.org_id))
    response = await client.get("/things/view/1", headers={"Authorization": key})
    assert response.status_code == 403
    assert response.json() == auth_failed("/things/view/1")


async def test_site_admin_and_permission_dependencies(client, engine):
    user_key = await World(engine).build()
    admin_key = await World(engine).build(role_flags={"perm_site_admin": True,
                                                      "perm_admin": True, "perm_audit": False})
    denied = await client.get("/admin/things/index", headers={"Authorization": user_key})
    assert denied.status_code == 403
    assert denied.json()["message"] == NO_PERMISSION
    assert (await client.get("/admin/things/index",
                             headers={"Authorization": admin_key})).status_code == 200
    # Site admins pass every ACL entry, as in MISP.
    assert (await client.get("/audit/things/index",
                             headers={"Authorization": admin_key})).status_code == 200
    assert (await client.get("/audit/things/index",
                             headers={"Authorization": user_key})).status_code == 200
    no_audit = await World(engine).build(role_flags={"perm_audit": False})
    assert (await client.get("/audit/things/index",
                             headers={"Authorization": no_audit})).status_code == 403


async def test_the_principal_carries_org_name_and_request_id(client, engine):
    world = World(engine)
    key = await world.build()
    response = await client.get("/things/view/9", headers={"Authorization": key,
                                                           "X-Request-ID": "rid-42"})
    body = response.json()
    assert body["user_id"] == world.user_id
    assert body["org"] == world.org_name
    assert body["request_id"] == "rid-42"


# ---- browser sessions (misp_platform.auth.sessions) ----------------------------------------


@router.get("/users/view/{user_id}")
async def view_user(user_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
    return {"user_id": principal.user_id, "session": principal.by_session}


async def start_session(world: World, *, expires_in: timedelta = timedelta(hours=1)) -> str:
    """A session of the world's user, as identity's login publishes it; its raw token."""
    token = secrets.token_urlsafe(32)
    await apply(world.engine, SessionStarted(
        session_hmac=session_hmac(PEPPER, token), user_id=world.user_id,
        expires_at=datetime.now(UTC) + expires_in))
    return token


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


async def test_a_session_cookie_authenticates_a_user_whose_role_has_no_perm_auth(client, engine):
    world = World(engine)
    await world.build(role_flags={"perm_auth": False})
    token = await start_session(world)
    response = await client.get("/users/view/me", headers=cookie(token))
    assert response.status_code == 200, response.text
    assert response.json() == {"user_id": world.user_id, "session": True}
    viewed = await client.get("/things/view/4", headers=cookie(token))
    assert viewed.status_code == 200 and viewed.json()["read_only"] is False


async def test_an_unsafe_method_needs_the_sessions_csrf_token(client, engine):
    world = World(engine)
    await world.build()
    token = await start_session(world)
    other = await start_session(world)
    before = len(await auth_rows(engine))
    for headers in ({}, {CSRF_HEADER: "0" * 64}, {CSRF_HEADER: csrf_token(PEPPER, other)},
                    {CSRF_HEADER: session_hmac(PEPPER, token)}):
        refused = await client.post("/things/view/1", headers={**cookie(token), **headers})
        assert refused.status_code == 403, headers
        assert refused.json() == {"name": CSRF_REFUSED, "message": CSRF_REFUSED,
                                  "url": "/things/view/1"}
    rows = (await auth_rows(engine))[before:]
    assert [data["reason"] for data, _, _ in rows] == ["csrf"]  # the hourly throttle
    assert rows[0][0]["user_id"] == world.user_id and rows[0][0]["title"] == TITLE_CSRF
    assert token.encode() not in rows[0][2] and session_hmac(PEPPER, token) not in rows[0][0][
        "title"]
    allowed = await client.post("/things/view/1", headers={
        **cookie(token), CSRF_HEADER: csrf_token(PEPPER, token)})
    assert allowed.status_code == 200, allowed.text


async def test_an_authkey_wins_over_the_session_cookie(client, engine):
    world = World(engine)
    key = await world.build()
    token = await start_session(world)
    # A key needs no CSRF token: it is no cookie a browser sends by itself.
    with_key = await client.post("/things/view/1", headers={**cookie(token), "Authorization": key})
    assert with_key.status_code == 200
    bad_key = await client.get("/things/view/1",
                               headers={**cookie(token), "Authorization": generate_authkey()})
    assert bad_key.status_code == 403 and bad_key.json() == auth_failed("/things/view/1")


async def test_ended_expired_unknown_and_disabled_sessions_are_refused(client, engine):
    world = World(engine)
    await world.build()
    ended = await start_session(world)
    expired = await start_session(world, expires_in=timedelta(seconds=-1))
    disabled = await start_session(world)
    assert (await client.get("/things/view/1", headers=cookie(ended))).status_code == 200
    await apply(engine, SessionEnded(session_hmac=session_hmac(PEPPER, ended),
                                     user_id=world.user_id, reason="logout"))
    for token in (ended, expired, secrets.token_urlsafe(32), "x" * 300):
        response = await client.get("/things/view/1", headers=cookie(token))
        assert response.status_code == 403, token
        assert response.json() == auth_failed("/things/view/1")
    assert (await client.get("/things/view/1", headers=cookie(disabled))).status_code == 200
    await apply(engine, UserUpdated(user=world.user.model_copy(update={"disabled": True}),
                                    changes={"disabled": (False, True)}))
    response = await client.get("/things/view/1", headers=cookie(disabled))
    assert response.status_code == 403 and response.json()["message"] == USER_DISABLED


async def test_session_failures_are_recorded_without_the_token(client, engine):
    before = len(await auth_rows(engine))
    token = secrets.token_urlsafe(32)
    assert (await client.get("/things/view/1", headers=cookie(token))).status_code == 403
    rows = (await auth_rows(engine))[before:]
    assert [(data["reason"], data["title"]) for data, _, _ in rows] == [
        ("unknown_session", TITLE_SESSION_UNKNOWN)]
    data, headers, payload = rows[0]
    assert token.encode() not in payload and token not in json.dumps(headers)
    assert data["key_start"] is None and data["key_end"] is None


async def test_a_user_who_must_change_the_password_may_only_do_that(client, engine):
    world = World(engine)
    key = await world.build()
    world.user = world.user.model_copy(update={"change_pw": True})
    await apply(engine, UserUpdated(user=world.user, changes={"change_pw": (False, True)}))
    token = await start_session(world)
    refused = await client.get("/things/view/1", headers=cookie(token))
    assert refused.status_code == 403
    assert refused.json()["message"] == CHANGE_PASSWORD_FIRST
    assert (await client.get("/users/view/me", headers=cookie(token))).status_code == 200
    # Keys are not held to it.
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200
    await apply(engine, UserUpdated(user=world.user.model_copy(update={"change_pw": False}),
                                    changes={"change_pw": (True, False)}))
    assert (await client.get("/things/view/1", headers=cookie(token))).status_code == 200


# ---- abuse limits (misp_platform.auth.abuse) ----------------------------------------------


@pytest.fixture
async def limited(engine, database_url):
    """An app whose addresses may fail three times a minute; returns (client, app)."""
    settings = AuthTestSettings(database_url=database_url, pepper=PEPPER,
                                kafka_bootstrap_servers="127.0.0.1:9092", auth_fail_budget=3,
                                auth_fail_window_s=60)
    app = create_app(settings, routers=[router], engine=engine, configure_logs=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, app


def testnet_address() -> str:
    return f"198.51.100.{secrets.randbelow(254) + 1}"


def failures_from(rows: list[tuple[dict[str, Any], dict[str, str], bytes]], ip: str) -> int:
    return sum(1 for data, _headers, _raw in rows if data["ip"] == ip)


async def test_an_address_past_its_failure_budget_gets_429_before_any_lookup_or_write(
        limited, engine):
    client, _app = limited
    key = await World(engine).build()
    flooder, other = testnet_address(), f"203.0.113.{secrets.randbelow(254) + 1}"
    for _ in range(3):
        bad = await client.get("/things/view/1", headers={
            "Authorization": secrets.token_hex(20), "X-Forwarded-For": flooder})
        assert bad.status_code == 403
    assert failures_from(await auth_rows(engine), flooder) == 3
    for headers in ({"Authorization": secrets.token_hex(20)}, {"Authorization": key}, {}):
        refused = await client.get("/things/view/1",
                                   headers={**headers, "X-Forwarded-For": flooder})
        assert refused.status_code == 429
        assert refused.json() == {"name": abuse.BLOCKED, "message": abuse.BLOCKED,
                                  "url": "/things/view/1"}
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    # none of the refused attempts cost a write; another address, and loopback, still work
    assert failures_from(await auth_rows(engine), flooder) == 3
    assert (await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": other})).status_code == 200
    for _ in range(5):
        assert (await client.get("/things/view/1", headers={
            "Authorization": secrets.token_hex(20)})).status_code == 403
    assert (await client.get("/things/view/1", headers={"Authorization": key})).status_code == 200


async def test_a_block_from_the_detector_refuses_the_address_or_the_key_prefix_until_it_ends(
        limited, engine):
    client, app = limited
    key = await World(engine).build()
    blocked, free = testnet_address(), f"203.0.113.{secrets.randbelow(254) + 1}"
    ends = datetime.now(UTC) + timedelta(seconds=30)
    guard = app.state.abuse_guard
    guard.blocks.apply(AbuseBlocked(subject="address", value=blocked, failures=20, window_s=60,
                                    blocked_until=ends))
    refused = await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": blocked})
    assert refused.status_code == 429
    assert 25 <= int(refused.headers["Retry-After"]) <= 30
    assert (await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": free})).status_code == 200
    guard.blocks.apply(AbuseBlocked(subject="key_prefix", value=key[:4], failures=50,
                                    window_s=60, blocked_until=ends))
    assert (await client.get("/things/view/1", headers={
        "Authorization": key, "X-Forwarded-For": free})).status_code == 429
    # an earlier end never shortens a block; one that has passed refuses nothing
    guard.blocks.apply(AbuseBlocked(subject="address", value=free, failures=20, window_s=60,
                                    blocked_until=datetime.now(UTC) - timedelta(seconds=1)))
    other_key = await World(engine).build()
    assert (await client.get("/things/view/1", headers={
        "Authorization": other_key, "X-Forwarded-For": free})).status_code == 200
