"""Helpers for tests against the real PostgreSQL: throwaway databases and the platform tables.

Tests read the server from `MISP_PG_URL` (e.g. `postgresql+psycopg://postgres@127.0.0.1:55432`)
and fail, never skip, when it is missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.settings import SettingChanged


def load_script(path: Path, name: str) -> ModuleType:
    """A script of deploy/ (not a package) loaded as the module `name`, registered in
    `sys.modules` so that its dataclasses can look themselves up."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def consumer_record(topic: str, envelope: Envelope, offset: int) -> Any:
    """`envelope` as a consumer receives it from `topic` (partition 0, at `offset`), for tests
    that hand records to a consumer's batch handler directly."""
    from aiokafka import ConsumerRecord

    headers, value = to_kafka(envelope)
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=None, value=value, checksum=None,
                          serialized_key_size=0, serialized_value_size=len(value),
                          headers=headers)


def required_env(name: str) -> str:
    """The variable's value, or a failed test (the services must be up: a skip would hide it)."""
    value = os.environ.get(name)
    if not value:
        import pytest

        pytest.fail(f"{name} is not set: source .local/env (make up starts the services)",
                    pytrace=False)
    return value


def _admin_engine(server_url: str) -> AsyncEngine:
    """Creates and drops throwaway databases: no need to wait for the WAL to reach the disk
    (it halves CREATE DATABASE, the most of a test's set-up)."""
    return create_async_engine(make_url(server_url).set(database="postgres"),
                               isolation_level="AUTOCOMMIT", poolclass=NullPool,
                               connect_args={"options": "-c synchronous_commit=off"})


async def create_test_database(admin_url: str, *, prefix: str = "test",
                               template: str | None = None) -> str:
    """Create a database `<prefix>_<hex>` on the server of `admin_url`, empty or a copy of
    `template`; its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    copy = f' TEMPLATE "{template}"' if template else ""
    engine = _admin_engine(admin_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def migrated_test_database(admin_url: str, migrations_dir: Path, *,
                                 prefix: str = "test") -> str:
    """A new database `<prefix>_<hex>` at the newest revision of `migrations_dir`; its URL.

    It is a copy (CREATE DATABASE ... TEMPLATE) of a template migrated once per migration
    history: running every revision for every test cost about a second a test. The template's
    name carries a digest of the revisions (and of the platform's migration helpers), so a
    changed or added revision makes a new one; the history's older templates are dropped then.
    tests/migrations still runs every revision itself, on empty and on filled databases."""
    template = await _template_database(admin_url, migrations_dir)
    return await create_test_database(admin_url, prefix=prefix, template=template)


def _history_digest(migrations_dir: Path) -> str:
    from misp_platform import migrations

    digest = hashlib.sha256(Path(migrations.__file__).read_bytes())
    for path in sorted(migrations_dir.rglob("*.py")):
        digest.update(path.relative_to(migrations_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


async def _template_database(admin_url: str, migrations_dir: Path) -> str:
    """The template of this migration history, made (under an advisory lock: test sessions may
    run at once) when missing. It takes no connections, so copying it never finds one open."""
    from misp_platform.migrations import upgrade

    history = f"tmpl_{migrations_dir.parent.name}"
    template = f"{history}_{_history_digest(migrations_dir)}"
    engine = _admin_engine(admin_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(hashtext(:h))"), {"h": history})
            try:
                found = (await conn.execute(text(
                    "SELECT datname FROM pg_database WHERE datname LIKE :like"),
                    {"like": f"{history}\\_%"})).scalars().all()
                if template not in found:
                    await conn.execute(text(f'CREATE DATABASE "{template}"'))
                    url = make_url(admin_url).set(database=template)
                    try:
                        await asyncio.to_thread(
                            upgrade, migrations_dir, url.render_as_string(hide_password=False))
                    except BaseException:
                        await conn.execute(text(f'DROP DATABASE "{template}" WITH (FORCE)'))
                        raise
                    await conn.execute(text(f'ALTER DATABASE "{template}" WITH IS_TEMPLATE true '
                                            'ALLOW_CONNECTIONS false'))
                for stale in set(found) - {template}:
                    await conn.execute(text(f'ALTER DATABASE "{stale}" WITH IS_TEMPLATE false'))
                    await conn.execute(text(f'DROP DATABASE "{stale}" WITH (FORCE)'))
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:h))"), {"h": history})
    finally:
        await engine.dispose()
    return template


async def drop_test_database(url: str) -> None:
    """Drop a database made by `create_test_database`, closing its leftover connections."""
    name = make_url(url).database
    if not name:
        raise ValueError(f"no database in {url!r}")
    engine = _admin_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


async def create_tables(url: str, *metadatas: MetaData) -> None:
    """`create_all` of the given metadata (default: the platform's, principals and the outbox
    trigger included)."""
    from misp_platform.migrations import create_platform_tables

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if not metadatas:
                await conn.run_sync(create_platform_tables)
            for md in metadatas:
                await conn.run_sync(md.create_all)
    finally:
        await engine.dispose()


@asynccontextmanager
async def throwaway_database(admin_url: str | None = None, *, prefix: str = "test",
                             metadatas: tuple[MetaData, ...] = ()) -> AsyncIterator[str]:
    """A fresh database with the platform tables (or `metadatas`), dropped afterwards."""
    server = admin_url or required_env("MISP_PG_URL")
    url = await create_test_database(server, prefix=prefix)
    try:
        await create_tables(url, *metadatas)
        yield url
    finally:
        await drop_test_database(url)


def with_principal_handlers(handlers: Mapping[str, Any]) -> dict[str, Any]:
    """A service's main handlers plus the principals projection's, as one consumer: what a test
    runs in-process where the real service runs two consumers (misp_platform.cli)."""
    from misp_platform.auth.principals import PRINCIPAL_HANDLERS

    out: dict[str, Any] = dict(PRINCIPAL_HANDLERS)
    for type_, handler in handlers.items():
        out[type_] = _then(out[type_], handler) if type_ in out else handler
    return out


def setting_change(name: str, value: Any, version: int) -> Envelope:
    """The envelope of a server setting's change as the settings service publishes it, at
    version `version` of the setting's stream."""
    event = SettingChanged(name=name, value=value)
    return Envelope(source="/settings", type=event.type, subject=f"setting-{name}",
                    streamversion=version, actor=Actor.system(),
                    data=event.model_dump(mode="json"))


def _then(first: Any, second: Any) -> Any:
    async def both(conn: Any, envelope: Any) -> None:
        await first(conn, envelope)
        await second(conn, envelope)

    return both


async def seed_principal(engine: AsyncEngine, pepper: str, *, user_id: int, org_id: int = 1,
                         org_name: str = "ORGNAME", role: dict[str, Any] | None = None,
                         email: str | None = None) -> str:
    """Feed the principals projection as identity's and orgs' events would; returns a raw key.

    `role` holds RoleState fields (`{"perm_site_admin": True, ...}`); perm_auth is on by default.
    """
    from misp_contracts.envelope import Actor, Envelope
    from misp_contracts.events.base import DomainEvent
    from misp_contracts.events.identity import (
        AuthKeyCreated,
        AuthKeyState,
        RoleCreated,
        RoleState,
        UserCreated,
        UserState,
    )
    from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
    from misp_platform.auth import PRINCIPAL_HANDLERS, authkey_hmac, generate_authkey

    key = generate_authkey()
    events: list[DomainEvent] = [
        OrganisationCreated(organisation=OrganisationState(
            id=org_id, uuid=str(uuid.uuid4()), name=org_name)),
        RoleCreated(role=RoleState(**{"id": user_id, "name": f"role-{user_id}",
                                      "perm_auth": True, **(role or {})})),
        UserCreated(user=UserState(id=user_id, uuid=str(uuid.uuid4()),
                                   email=email or f"user{user_id}@example.test",
                                   org_id=org_id, role_id=user_id)),
        AuthKeyCreated(authkey=AuthKeyState(
            id=user_id, uuid=str(uuid.uuid4()), user_id=user_id,
            key_hmac=authkey_hmac(pepper, key), authkey_start=key[:4], authkey_end=key[-4:])),
    ]
    async with engine.begin() as conn:
        for event in events:
            envelope = Envelope(source="/test", type=event.type, actor=Actor.system(),
                                data=event.model_dump(mode="json"))
            await PRINCIPAL_HANDLERS[event.type](conn, envelope)
    return key


async def run_job(engine: AsyncEngine, *, service: str, queue: str, job_type: str,
                  handlers: Mapping[str, Any], job_input: str = "",
                  data: dict[str, Any] | None = None,
                  job_id: int | None = None, attempt: int = 1) -> dict[str, Any]:
    """Run one `RunJob` through a `WorkerRunner` of `service` in-process (no Kafka: the run
    topic is skipped) and return the `JobRunFinished` report it queued in the outbox."""
    import json
    import random

    from misp_contracts.events.jobs import WORKER_TOPIC, JobRunFinished, RunJob
    from misp_platform.worker import JobContext, WorkerRunner

    job = RunJob(job_id=job_id or random.randint(10**12, 9 * 10**12), attempt=attempt,
                 job_type=job_type, queue=queue, job_input=job_input, data=data or {})
    runner = WorkerRunner(service=service, queue=queue, engine=engine,
                          bootstrap_servers="unused:9092", handlers=handlers)

    async def report(_value: int, _message: str) -> None:
        return None

    runner.current = JobContext(job=job, report=report)
    await runner.finish_current()
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT payload FROM outbox WHERE topic = :t ORDER BY position"), {"t": WORKER_TOPIC})
        reports = [json.loads(r.payload) for r in rows]
    finished = [r for r in reports if r.get("job_id") == job.job_id and "outcome" in r
                and "replayed" in r]
    assert finished, f"no {JobRunFinished.type} for job {job.job_id}"
    return finished[-1]


async def start_group_at_end(bootstrap: str, group: str, topics: Sequence[str]) -> None:
    """Commit the current end offsets for a new group: it reads only what comes next."""
    ends: dict[Any, int] = {}
    for topic in topics:
        ends.update(await topic_ends(bootstrap, topic))
    await start_group_at(bootstrap, group, ends)


async def start_group_at(bootstrap: str, group: str, offsets: Mapping[Any, int]) -> None:
    """Commit `offsets` (by partition) for a group, e.g. where another group stands."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    from misp_platform.kafka import client_options

    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[Any, int]:
    """The offsets `group` committed, by partition."""
    from aiokafka.admin import AIOKafkaAdminClient

    from misp_platform.kafka import client_options

    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in committed.items()}


async def topic_ends(bootstrap: str, topic: str) -> dict[Any, int]:
    """The end offset of each partition of `topic`, now."""
    from aiokafka import AIOKafkaConsumer

    from misp_platform.kafka import client_options, topic_partitions

    consumer = AIOKafkaConsumer(**client_options(bootstrap))
    await consumer.start()
    try:
        ends: dict[Any, int] = await consumer.end_offsets(
            await topic_partitions(consumer, topic))
        return ends
    finally:
        await consumer.stop()


async def read_since(bootstrap: str, since: Mapping[Any, int]) -> list[Any]:
    """The records of a shared topic from `since` (offsets by partition, e.g. its ends taken
    before the test) to its ends now."""
    from aiokafka import AIOKafkaConsumer

    from misp_platform.kafka import client_options

    until: dict[Any, int] = {}
    for topic in {tp.topic for tp in since}:
        until.update(await topic_ends(bootstrap, topic))
    consumer = AIOKafkaConsumer(**client_options(bootstrap), enable_auto_commit=False)
    await consumer.start()
    records: list[Any] = []
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        while [tp for tp in since if await consumer.position(tp) < until[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def eventually(predicate: Callable[[], Awaitable[Any]], timeout_s: float = 30.0,
                     interval_s: float = 0.1) -> Any:
    """Poll an async predicate until it returns a truthy value (or fail at the deadline)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s (last: {value!r})")
        await asyncio.sleep(interval_s)


async def killed_at_failpoint(child: subprocess.Popen[bytes], log: Path,
                              timeout_s: float = 60.0) -> None:
    """Wait for a process armed with a crash failpoint to SIGKILL itself (else: its log's
    tail); a process still running at the deadline is killed."""
    try:
        code = await asyncio.to_thread(child.wait, timeout_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if code != -signal.SIGKILL:
        tail = await asyncio.to_thread(log.read_text, errors="replace")
        raise AssertionError(f"exit {code}, not a SIGKILL: {tail[-3000:]}")


class ChildProcesses:
    """The processes a test or a benchmark starts, each writing to a log file of its own (never
    to the terminal); `stop_all` leaves none behind (TERM, then KILL after 15 s)."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], log_path: Any,
              env: Mapping[str, str] | None = None) -> Any:
        log = open(log_path, "ab")  # noqa: SIM115  (the child owns it)
        child = subprocess.Popen(list(argv), stdout=log, stderr=log,
                                 env=None if env is None else dict(env),
                                 start_new_session=True)
        log.close()  # the child has its own descriptor
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
