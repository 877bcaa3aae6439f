"""Alembic, the same way in every service: an env.py helper, upgrade, and revision checks.

Each service keeps its own migration scripts; its first one calls `create_platform_tables`.
"""

from __future__ import annotations

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


def create_platform_tables(bind: Connection) -> None:
    """Called by each service's first migration."""
    platform_metadata().create_all(bind)
    for ddl in db.OUTBOX_NOTIFY_DDL:
        bind.execute(text(ddl))


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
