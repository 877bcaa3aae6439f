"""Migrations and models agree, and migrations upgrade databases that hold data.

Every revision spells its DDL (docs/migrations.md): a column added to a model without a
revision would reach new databases only if a migration read the models, so this test builds
each service's database from its migrations alone and compares it with the models (alembic's
`compare_metadata`): any table, column, type, nullability, index or unique constraint that
differs fails. Then a database made by the first revisions, holding rows, is upgraded to head.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, text

from misp_platform import server_settings
from misp_platform.migrations import platform_metadata, upgrade
from misp_platform.testing import create_test_database, drop_test_database, required_env
from misp_platform.worker import worker_metadata

# Where each service's models live; the audit's log tables are DDL only (audit.adapters.tables),
# so they are not compared here (their migration is their only definition).
MODELS = {"identity": "identity.adapters.tables", "orgs": "orgs.adapters.tables",
          "jobs": "jobs.adapters.tables", "mailer": "mailer.adapters.tables",
          "settings": "settings.adapters.tables", "audit": None}
DDL_ONLY = {"audit": {"log_entry", "log_chain", "log_checkpoint", "log_email", "log_verification"}}
# The services whose workers apply job effects keep the worker's marks (`job_run`).
RUNS_JOBS = {"identity", "audit", "jobs", "mailer", "settings"}
# The services that decide by server settings keep the platform's read model of them.
READS_SETTINGS = {"identity", "orgs", "audit", "mailer"}
SERVICES = sorted(MODELS)


def spec_of(service: str) -> Any:
    return importlib.import_module(f"{service}.bootstrap").spec


def models_of(service: str) -> MetaData:
    """Everything a service's database should hold: the platform's tables, the worker's marks
    and the service's own."""
    combined = MetaData()
    sources = [platform_metadata(), *([worker_metadata] if service in RUNS_JOBS else []),
               *([server_settings.metadata] if service in READS_SETTINGS else [])]
    if MODELS[service] is not None:
        sources.append(importlib.import_module(MODELS[service]).metadata)  # type: ignore[arg-type]
    for source in sources:
        for table in source.tables.values():
            table.to_metadata(combined)
    return combined


@pytest.fixture
async def database() -> AsyncIterator[str]:
    url = await create_test_database(required_env("MISP_PG_URL"), prefix="test_migrations")
    try:
        yield url
    finally:
        await drop_test_database(url)


def differences(url: str, service: str) -> list[Any]:
    ignored = DDL_ONLY.get(service, set())

    def include(obj: Any, name: str | None, type_: str, reflected: bool, _compare: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return not (table is not None and table.name in ignored) and name not in ignored

    models = models_of(service)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "include_object": include})
            found = list(compare_metadata(context, models))
            # Alembic does not compare sequences: every one the models name must exist.
            existing = set(conn.execute(text("SELECT sequencename FROM pg_sequences")).scalars())
            found += [("missing_sequence", name) for name in sorted(sequences_of(service))
                      if name not in existing]
            return found
    finally:
        engine.dispose()


def sequences_of(service: str) -> set[str]:
    """The standalone sequences the service's models declare (ids it draws itself)."""
    if MODELS[service] is None:
        return set()
    models = importlib.import_module(MODELS[service]).metadata  # type: ignore[arg-type]
    return {sequence.name for sequence in models._sequences.values()}


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_built_by_the_migrations_matches_the_models(
        database: str, service: str) -> None:
    await asyncio.to_thread(upgrade, spec_of(service).migrations_dir, database)
    diff = await asyncio.to_thread(differences, database, service)
    assert diff == [], f"{service}: migrations and models differ: {diff}"


def run(url: str, statements: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            results = [conn.execute(text(sql), params) for sql, params in statements]
            return [r.all() if r.returns_rows else None for r in results]
    finally:
        engine.dispose()


PLATFORM_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("INSERT INTO event (stream_id, version, event_id, stream_type, type, data, metadata) "
     "VALUES (:s, 1, :e, 'user', 'misp.test.happened.v1', '{}', '{}')",
     {"s": str(uuid.uuid4()), "e": str(uuid.uuid4())}),
    ("INSERT INTO outbox (topic, message_key, headers, payload) "
     "VALUES ('misp.test.v1', 'k', '{}', 'x')", {}),
    ("INSERT INTO principal_user (user_id, uuid, email, org_id, role_id) "
     "VALUES (7, :u, 'kept@example.test', 1, 3)", {"u": str(uuid.uuid4())}),
    ("INSERT INTO principal_org (org_id, uuid, name) VALUES (1, :u, 'ORGNAME')",
     {"u": str(uuid.uuid4())}),
]

# Rows of a service's own first tables, and what they look like at head.
SECOND_STEP: dict[str, tuple[list[tuple[str, dict[str, Any]]], str, Callable[[Any], bool]]] = {
    "orgs": ([("INSERT INTO org_member (user_id, org_id, email) VALUES (7, 1, 'a@b.test')", {})],
             "SELECT org_id, version, deleted FROM org_member WHERE user_id = 7",
             lambda rows: rows == [(1, None, False)]),
    "mailer": ([("INSERT INTO mail_user (id, email, org_id) VALUES (7, 'a@b.test', 1)", {}),
                ("INSERT INTO mail_setting (name, value) VALUES ('MISP.org', '\"X\"')", {})],
               "SELECT u.version, u.deleted, s.value, s.version FROM mail_user u, setting_value s",
               lambda rows: rows == [(None, False, "X", None)]),
}


@pytest.mark.parametrize("service", SERVICES)
async def test_a_database_with_data_from_the_first_revisions_upgrades_to_head(
        database: str, service: str) -> None:
    migrations = spec_of(service).migrations_dir
    await asyncio.to_thread(upgrade, migrations, database, "0001")
    await asyncio.to_thread(run, database, PLATFORM_ROWS)
    await asyncio.to_thread(upgrade, migrations, database, "0002")
    second = SECOND_STEP.get(service)
    if second is not None:
        await asyncio.to_thread(run, database, second[0])
    await asyncio.to_thread(upgrade, migrations, database)
    [events, users, outbox] = await asyncio.to_thread(run, database, [
        ("SELECT count(*) FROM event", {}),
        ("SELECT email, version, deleted FROM principal_user", {}),
        ("SELECT topic FROM outbox", {})])
    assert events == [(1,)]
    assert users == [("kept@example.test", None, False)]  # the new columns, at their defaults
    assert outbox == [("misp.test.v1",)]
    if second is not None:
        [rows] = await asyncio.to_thread(run, database, [(second[1], {})])
        assert second[2](rows), f"{service}: {rows}"
    assert await asyncio.to_thread(differences, database, service) == []
