"""Alembic, the same way in every service: an env.py helper, upgrade, and revision checks.

Each service keeps its own migration scripts; its first one spells the platform's tables.
Every schema step is spelled out as DDL and never edited once released: a revision never reads
the live table definitions (they describe the head, not the step), so a column added to a model
needs a new revision, and `tests/migrations` fails when models and migrations disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, text

from misp_platform import db


def platform_metadata() -> MetaData:
    """The platform's tables, including the principals projection's."""
    import misp_platform.auth.principals  # noqa: F401  (defines its tables on db.metadata)

    return db.metadata


# The worker's marks (misp_platform.worker.job_run): one row per job whose effect a service
# applied, in the effect's transaction. Made by the migration of each service that runs jobs.
JOB_RUN_DDL = (
    """CREATE TABLE IF NOT EXISTS job_run (
        job_id BIGSERIAL NOT NULL,
        attempt INTEGER NOT NULL,
        outcome VARCHAR(16) NOT NULL,
        message TEXT DEFAULT '' NOT NULL,
        worker_id VARCHAR(64) NOT NULL,
        finished_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
        PRIMARY KEY (job_id))""",
)


def execute_all(bind: Connection, statements: Sequence[str]) -> None:
    """Run a schema step's statements in order (in the migration's transaction)."""
    for statement in statements:
        bind.execute(text(statement))


def create_platform_tables(bind: Connection) -> None:
    """The platform's tables as the models describe them now, with the outbox trigger: for
    tests and benchmarks that need them in a throwaway database (a service's migrations spell
    their own steps, from its first revision on)."""
    platform_metadata().create_all(bind)
    execute_all(bind, db.OUTBOX_NOTIFY_DDL)


def create_job_run_table(bind: Connection) -> None:
    """Called by the migration of each service that applies job effects (worker.py)."""
    execute_all(bind, JOB_RUN_DDL)


# The platform's second schema step (every service's migration that calls
# `add_consistency_tables`): consumer positions, flagged streams, and the stream version and
# tombstone of every principal row. IF NOT EXISTS: databases that ran an earlier form of the
# first step (built from the models of its day) may have some of them already.
CONSISTENCY_DDL = (
    """CREATE TABLE IF NOT EXISTS consumer_position (
        consumer VARCHAR(120) NOT NULL,
        topic VARCHAR(249) NOT NULL,
        partition INTEGER NOT NULL,
        next_offset BIGINT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT consumer_position_pkey PRIMARY KEY (consumer, topic, partition))""",
    """CREATE TABLE IF NOT EXISTS flagged_stream (
        consumer VARCHAR(120) NOT NULL,
        topic VARCHAR(249) NOT NULL,
        stream_key TEXT NOT NULL,
        message_id VARCHAR(200) NOT NULL,
        error TEXT NOT NULL,
        flagged_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT flagged_stream_pkey PRIMARY KEY (consumer, message_id))""",
    "ALTER TABLE principal_user ADD COLUMN IF NOT EXISTS version INTEGER",
    "ALTER TABLE principal_user ADD COLUMN IF NOT EXISTS deleted BOOLEAN NOT NULL DEFAULT false",
    "ALTER TABLE principal_role ADD COLUMN IF NOT EXISTS version INTEGER",
    "ALTER TABLE principal_role ADD COLUMN IF NOT EXISTS deleted BOOLEAN NOT NULL DEFAULT false",
    "ALTER TABLE principal_authkey ADD COLUMN IF NOT EXISTS version INTEGER",
    "ALTER TABLE principal_authkey ADD COLUMN IF NOT EXISTS deleted BOOLEAN NOT NULL "
    "DEFAULT false",
    "ALTER TABLE principal_org ADD COLUMN IF NOT EXISTS version INTEGER",
)


def add_consistency_tables(bind: Connection) -> None:
    """Called by each service's migration that brings read-your-writes (consistency.py)."""
    execute_all(bind, CONSISTENCY_DDL)


def drop_consistency_tables(bind: Connection) -> None:
    """The downgrade of `add_consistency_tables`."""
    for table in ("principal_user", "principal_role", "principal_authkey"):
        bind.execute(text(f"ALTER TABLE {table} DROP COLUMN IF EXISTS deleted"))
    for table in ("principal_user", "principal_role", "principal_authkey", "principal_org"):
        bind.execute(text(f"ALTER TABLE {table} DROP COLUMN IF EXISTS version"))
    bind.execute(text("DROP TABLE IF EXISTS flagged_stream"))
    bind.execute(text("DROP TABLE IF EXISTS consumer_position"))


def alembic_config(migrations_dir: Path, database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(migrations_dir: Path, database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(migrations_dir, database_url), revision)


def head_revision(migrations_dir: Path) -> str | None:
    return ScriptDirectory(str(migrations_dir)).get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def run_env(target_metadata: MetaData | None = None) -> None:
    """The body of every service's `migrations/env.py` (online mode, one transaction)."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set"
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          transaction_per_migration=False)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
