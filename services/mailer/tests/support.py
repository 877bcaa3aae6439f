"""Helpers of the mailer's tests: a migrated mailer database per test, short GnuPG homes (the
agent's socket lives there), a real SMTP server (aiosmtpd) on a free port that can be told to
refuse, users' keys (good, expired, revoked), and the app in-process."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gnupg
import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mailer.adapters.gpg import Keyring
from mailer.bootstrap import create_app, deliverer_for
from mailer.handlers.compose import Mailer
from mailer.handlers.deliver import Deliverer
from mailer.projections.users import when_user_saved_project
from mailer.settings import MailerSettings
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import RoleCreated, RoleState, UserCreated, UserState
from misp_contracts.events.settings import SettingChanged
from misp_platform.auth import PRINCIPAL_HANDLERS
from misp_platform.server_settings import when_setting_changed_record
from misp_platform.testing import drop_test_database, migrated_test_database, seed_principal

PEPPER = "mailer-test-pepper"
MIGRATIONS = Path(__file__).resolve().parents[1] / "src" / "mailer" / "migrations"

# aiosmtpd logs every connection at INFO, through the handler the app installs on stderr: noise
# in the test run's output, whatever pytest captures.
logging.getLogger("mail.log").setLevel(logging.WARNING)


def short_home(prefix: str = "mg") -> Path:
    """A GnuPG home with a short path: gpg-agent's socket path must stay under ~108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def drop_home(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False,
                   capture_output=True)
    shutil.rmtree(home, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sink:
    """What the SMTP server received; `refuse` holds replies to give instead of 250, in order."""

    port: int
    received: list[Any] = field(default_factory=list)
    refuse: list[str] = field(default_factory=list)
    attempts: int = 0
    sessions: set[Any] = field(default_factory=set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        self.sessions.add(session.peer)  # the client's (host, port): one per SMTP session
        if self.refuse:
            return self.refuse.pop(0)
        self.received.append(envelope)
        return "250 OK"


@pytest.fixture
def sink() -> Iterator[Sink]:
    port = free_port()
    handler = Sink(port)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler
    controller.stop()


@dataclass(frozen=True)
class UserKey:
    home: Path
    fingerprint: str
    public: str
    gpg: gnupg.GPG


def _make_key(home: Path, email: str, *, expire: str = "0",
              options: list[str] | None = None) -> tuple[gnupg.GPG, str]:
    gpg = gnupg.GPG(gnupghome=str(home), options=options)
    gpg.encoding = "utf-8"
    result = gpg.gen_key(gpg.gen_key_input(
        name_real="Test User", name_email=email, key_type="EDDSA", key_curve="ed25519",
        subkey_type="ECDH", subkey_curve="cv25519", expire_date=expire, no_protection=True))
    assert result.fingerprint, result.stderr
    return gpg, str(result.fingerprint)


@pytest.fixture(scope="session")
def user_keys() -> Iterator[dict[str, UserKey]]:
    """A good key (with its secret, to decrypt), an expired one and a revoked one."""
    homes = [short_home("uk") for _ in range(3)]
    keys: dict[str, UserKey] = {}
    gpg, fpr = _make_key(homes[0], "good@example.test")
    keys["good"] = UserKey(homes[0], fpr, str(gpg.export_keys(fpr)), gpg)
    # Made in 2020 with a one-day lifetime: long expired today.
    gpg, fpr = _make_key(homes[1], "expired@example.test", expire="1d",
                         options=["--faked-system-time", "20200101T000000"])
    keys["expired"] = UserKey(homes[1], fpr, str(gpg.export_keys(fpr)), gpg)
    gpg, fpr = _make_key(homes[2], "revoked@example.test")
    certificate = (homes[2] / "openpgp-revocs.d" / f"{fpr}.rev").read_text()
    certificate = certificate.replace(":-----BEGIN", "-----BEGIN")
    gpg.import_keys(certificate)
    keys["revoked"] = UserKey(homes[2], fpr, str(gpg.export_keys(fpr)), gpg)
    yield keys
    for home in homes:
        drop_home(home)


@pytest.fixture
async def mailer_db(pg_url: str) -> AsyncIterator[str]:
    url = await migrated_test_database(pg_url, MIGRATIONS, prefix="test_mailer")
    yield url
    await drop_test_database(url)


@pytest.fixture
async def mailer_engine(mailer_db: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(mailer_db, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
def gnupg_home() -> Iterator[Path]:
    home = short_home()
    yield home
    drop_home(home)


@pytest.fixture
def mailer_settings(mailer_db: str, kafka_bootstrap: str, sink: Sink,
                    gnupg_home: Path) -> MailerSettings:
    return MailerSettings(database_url=mailer_db, pepper=PEPPER,
                          kafka_bootstrap_servers=kafka_bootstrap, smtp_port=sink.port,
                          gnupg_home=str(gnupg_home), backoff_base_s=0.05,
                          poll_interval_s=0.05, max_attempts=3, gpg_parallelism=2)


@pytest.fixture
def mailer(gnupg_home: Path) -> Mailer:
    return Mailer(Keyring(gnupg_home), parallelism=2)


@pytest.fixture
def deliverer(mailer_settings: MailerSettings, mailer_engine: AsyncEngine) -> Deliverer:
    return deliverer_for(mailer_settings, mailer_engine)


async def apply(engine: AsyncEngine, handler: Any, event: Any) -> None:
    envelope = Envelope(source="/test", type=event.type, actor=Actor.system(),
                        data=event.model_dump(mode="json"))
    async with engine.begin() as conn:
        await handler(conn, envelope)


async def add_user(engine: AsyncEngine, *, user_id: int, org_id: int = 1,
                   gpgkey: str | None = None, email: str | None = None, role_id: int = 3,
                   **flags: Any) -> UserState:
    user = UserState(id=user_id, uuid=str(uuid.uuid4()),
                     email=email or f"u{user_id}-{uuid.uuid4().hex[:6]}@example.test",
                     org_id=org_id, role_id=role_id, gpgkey=gpgkey, **flags)
    await apply(engine, when_user_saved_project, UserCreated(user=user))
    return user


async def add_role(engine: AsyncEngine, role_id: int, **flags: bool) -> RoleState:
    """A role as the principals projection learns it from identity (`perm_admin=True`, ...):
    what tells the mailer which users are admins."""
    role = RoleState(id=role_id, name=f"role-{role_id}", **flags)
    await apply(engine, PRINCIPAL_HANDLERS[RoleCreated.type], RoleCreated(role=role))
    return role


async def set_setting(engine: AsyncEngine, name: str, value: Any) -> None:
    await apply(engine, when_setting_changed_record, SettingChanged(name=name, value=value))


@pytest.fixture
async def client(mailer_settings: MailerSettings,
                 mailer_engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(mailer_settings, engine=mailer_engine)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mailer") as http:
        yield http


@pytest.fixture
async def admin_key(mailer_engine: AsyncEngine) -> str:
    return await seed_principal(mailer_engine, PEPPER, user_id=900001,
                                role={"perm_site_admin": True, "perm_admin": True})


@pytest.fixture
async def org_admin_key(mailer_engine: AsyncEngine) -> str:
    return await seed_principal(mailer_engine, PEPPER, user_id=900002, org_id=2,
                                org_name="Other", role={"perm_admin": True})


async def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
