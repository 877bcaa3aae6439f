"""The six services in-process for the permission matrix: each on a fresh database migrated by
its own migrations, its ASGI app on it, and one authkey per kind of caller (MISP's seeded roles).

The services are built once per module, on first use, and shared by every case of the matrix.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity.domain.roles import seeded_roles
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import AuthKeyCreated, AuthKeyState
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform.auth import PRINCIPAL_HANDLERS, authkey_hmac, generate_authkey
from misp_platform.config import ServiceSettings
from misp_platform.server_settings import record_setting
from misp_platform.testing import (
    drop_test_database,
    migrated_test_database,
    seed_principal,
    with_principal_handlers,
)

SERVICES = ("identity", "orgs", "audit", "jobs", "mailer", "settings")

ANONYMOUS, USER, ORG_ADMIN, SITE_ADMIN = "anonymous", "user", "org_admin", "site_admin"
READ_ONLY, SYNC_USER, READ_ONLY_KEY = "read_only", "sync_user", "read_only_key"
# Every kind of caller; READ_ONLY_KEY is the site admin's own key flagged read-only.
CALLERS = (ANONYMOUS, USER, ORG_ADMIN, SITE_ADMIN, READ_ONLY, SYNC_USER, READ_ONLY_KEY)
# The role (MISP's seeded ids) of each caller with a role of its own; the site admin's org is
# 1, everybody else's 2.
ROLE_OF = {SITE_ADMIN: 1, ORG_ADMIN: 2, USER: 3, SYNC_USER: 5, READ_ONLY: 6}
HOST_ORG, OTHER_ORG = 1, 2

PEPPER = secrets.token_hex(16)


@dataclass
class ServiceUnderTest:
    """One service's app and client, and a key (None: no key) for every caller."""

    name: str
    app: FastAPI
    client: httpx.AsyncClient
    keys: dict[str, str | None]
    extra: dict[str, Any] = field(default_factory=dict)

    async def call(self, method: str, path: str, caller: str,
                   body: Any = None) -> httpx.Response:
        headers = {"Accept": "application/json"}
        key = self.keys[caller]
        if key is not None:
            headers["Authorization"] = key
        try:
            return await self.client.request(method, path, json=body, headers=headers)
        finally:
            # A login's session cookie must not follow the next caller.
            self.client.cookies.clear()


def settings_of(name: str, **fields: Any) -> ServiceSettings:
    settings: ServiceSettings = importlib.import_module(f"{name}.bootstrap").spec.settings(
        **fields)
    return settings


def build_app(name: str, settings: ServiceSettings, **kwargs: Any) -> FastAPI:
    app: FastAPI = importlib.import_module(f"{name}.bootstrap").spec.create_app(settings,
                                                                               **kwargs)
    return app


def role_flags(role_id: int) -> dict[str, Any]:
    """The flags of one of MISP's seeded roles, as `seed_principal` takes them."""
    role = next(r for r in seeded_roles(datetime.now(UTC)) if r.id == role_id)
    return {k: v for k, v in role.model_dump().items()
            if k.startswith("perm_") or k == "permission"}


async def apply(engine: AsyncEngine, handlers: dict[str, Any], event: Any) -> None:
    envelope = Envelope(source="/test", type=event.type, actor=Actor.system(),
                        data=event.model_dump(mode="json"))
    async with engine.begin() as conn:
        await handlers[event.type](conn, envelope)


def short_dir(prefix: str) -> Path:
    """A short path: gpg-agent's socket lives in the mailer's GnuPG home (~108 bytes at most)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def migrated_database(pg_url: str, name: str) -> AsyncIterator[str]:
    spec = importlib.import_module(f"{name}.bootstrap").spec
    url = await migrated_test_database(pg_url, spec.migrations_dir, prefix=f"test_perm_{name}")
    try:
        yield url
    finally:
        await drop_test_database(url)


@asynccontextmanager
async def serving(name: str, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("203.0.113.7", 5555)),
            base_url=f"http://{name}", timeout=30) as client:
        yield client


@asynccontextmanager
async def identity_under_test(pg_url: str, kafka: str,
                              state_dir: Path) -> AsyncIterator[ServiceUnderTest]:
    """Identity as its own tests make it: organisations fed as orgs publishes them, the first
    run done (roles 1..6, the site admin and its key), every other caller a real user; self
    registration and "forgot password" on, and a user with a password to log in with."""
    from identity.bootstrap import spec
    from identity.handlers.first_run import key_path, seed

    async with migrated_database(pg_url, "identity") as url:
        settings = settings_of("identity", database_url=url, pepper=PEPPER,
                               kafka_bootstrap_servers=kafka, state_dir=str(state_dir))
        engine = create_async_engine(url, pool_size=10)
        try:
            handlers = with_principal_handlers(spec.handlers(settings))
            for org_id in (HOST_ORG, OTHER_ORG):
                await apply(engine, handlers, OrganisationCreated(organisation=OrganisationState(
                    id=org_id, uuid=str(uuid.uuid4()), name=f"org-{org_id}", local=True)))
            assert await seed(engine, pepper=PEPPER, state_dir=str(state_dir))
            async with engine.begin() as conn:
                for name in ("Security.allow_self_registration",
                             "Security.allow_password_forgotten"):
                    await record_setting(conn, name, True)
            admin_key = key_path(str(state_dir)).read_text().strip()
            app = build_app("identity", settings, engine=engine, configure_logs=False)
            async with serving("identity", app) as client:
                service = ServiceUnderTest("identity", app, client,
                                           {ANONYMOUS: None, SITE_ADMIN: admin_key})
                for caller, role_id in ROLE_OF.items():
                    if caller == SITE_ADMIN:
                        continue
                    body = {"email": f"pm-{secrets.token_hex(5)}@example.test",
                            "org_id": str(OTHER_ORG), "role_id": str(role_id)}
                    added = await service.call("POST", "/admin/users/add", SITE_ADMIN, body)
                    assert added.status_code == 200, added.text
                    service.keys[caller] = added.json()["User"]["authkey"]
                ro = await service.call("POST", "/auth_keys/add/me", SITE_ADMIN,
                                        {"read_only": True})
                assert ro.status_code == 200, ro.text
                service.keys[READ_ONLY_KEY] = ro.json()["AuthKey"]["authkey_raw"]
                login = {"email": f"pm-{secrets.token_hex(5)}@example.test",
                         "password": f"Pm-{secrets.token_hex(12)}!A1"}
                added = await service.call("POST", "/admin/users/add", SITE_ADMIN,
                                           {**login, "org_id": str(OTHER_ORG), "role_id": "3"})
                assert added.status_code == 200, added.text
                service.extra["login"] = login
                yield service
        finally:
            await engine.dispose()


async def seed_callers(engine: AsyncEngine) -> dict[str, str | None]:
    """Keys fed to a service's principals projection as identity's events would make them."""
    base = 10**6 + secrets.randbelow(10**8)
    keys: dict[str, str | None] = {ANONYMOUS: None}
    for n, (caller, role_id) in enumerate(ROLE_OF.items()):
        org = HOST_ORG if caller == SITE_ADMIN else OTHER_ORG
        keys[caller] = await seed_principal(engine, PEPPER, user_id=base + n, org_id=org,
                                            org_name=f"org-{org}", role=role_flags(role_id))
    admin_id = base + list(ROLE_OF).index(SITE_ADMIN)
    raw = generate_authkey()
    await apply(engine, PRINCIPAL_HANDLERS, AuthKeyCreated(authkey=AuthKeyState(
        id=base + 100, uuid=str(uuid.uuid4()), user_id=admin_id,
        key_hmac=authkey_hmac(PEPPER, raw), authkey_start=raw[:4], authkey_end=raw[-4:],
        read_only=True)))
    keys[READ_ONLY_KEY] = raw
    return keys


@asynccontextmanager
async def service_under_test(name: str, pg_url: str, kafka: str,
                             state_dir: Path) -> AsyncIterator[ServiceUnderTest]:
    """Any service but identity, as its api tests make it: principals seeded in its own
    projection, nothing delivered, no other service asked for diagnostics."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(migrated_database(pg_url, name))
        fields: dict[str, Any] = {"database_url": url, "pepper": PEPPER,
                                  "kafka_bootstrap_servers": kafka, "state_dir": str(state_dir)}
        if name == "settings":
            fields["diagnostics_urls"] = {}
            fields["openapi_urls"] = {}
        if name == "audit":
            fields["signing_key_path"] = str(state_dir / "audit-signing.key")
        if name == "mailer":
            home = short_dir("pmg")
            stack.callback(shutil.rmtree, home, ignore_errors=True)
            stack.callback(subprocess.run, ["gpgconf", "--homedir", str(home), "--kill", "all"],
                           check=False, capture_output=True)
            fields.update(gnupg_home=str(home), smtp_port=unused_port(), deliver_in_api=False)
        settings = settings_of(name, **fields)
        engine = create_async_engine(url, pool_size=5)
        stack.push_async_callback(engine.dispose)
        if name == "settings":
            from settings.handlers.first_run import seed

            await seed(engine)
        keys = await seed_callers(engine)
        app = build_app(name, settings)
        client = await stack.enter_async_context(serving(name, app))
        yield ServiceUnderTest(name, app, client, keys)


class Services:
    """Each service built on first use and kept until the module's tests are done."""

    def __init__(self, stack: AsyncExitStack, pg_url: str, kafka: str, state_dir: Path) -> None:
        self.stack, self.pg_url, self.kafka, self.state_dir = stack, pg_url, kafka, state_dir
        self.built: dict[str, ServiceUnderTest] = {}
        self.lock = asyncio.Lock()

    async def get(self, name: str) -> ServiceUnderTest:
        async with self.lock:
            if name not in self.built:
                state_dir = self.state_dir / name
                state_dir.mkdir()
                context = (identity_under_test(self.pg_url, self.kafka, state_dir)
                           if name == "identity" else
                           service_under_test(name, self.pg_url, self.kafka, state_dir))
                self.built[name] = await self.stack.enter_async_context(context)
            return self.built[name]


@pytest.fixture(scope="module")
def permission_state_dir() -> Iterator[Path]:
    path = short_dir("pm")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
async def services(pg_url: str, kafka_bootstrap: str,
                   permission_state_dir: Path) -> AsyncIterator[Services]:
    async with AsyncExitStack() as stack:
        yield Services(stack, pg_url, kafka_bootstrap, permission_state_dir)
