"""Helpers for tests against the real PostgreSQL: throwaway databases and the platform tables.

Tests read the server from `MISP_PG_URL` (e.g. `postgresql+psycopg://postgres@127.0.0.1:55432`)
and fail, never skip, when it is missing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import MetaData, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


def required_env(name: str) -> str:
    """The variable's value, or a failed test (the services must be up: a skip would hide it)."""
    value = os.environ.get(name)
    if not value:
        import pytest

        pytest.fail(f"{name} is not set: source .local/env (make up starts the services)",
                    pytrace=False)
    return value


def _admin_engine(server_url: str) -> AsyncEngine:
    return create_async_engine(make_url(server_url).set(database="postgres"),
                               isolation_level="AUTOCOMMIT", poolclass=NullPool)


async def create_test_database(admin_url: str, *, prefix: str = "test") -> str:
    """Create an empty database `<prefix>_<hex>` on the server of `admin_url`; its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    engine = _admin_engine(admin_url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


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
    """`create_all` of the given metadata (default: the platform's, principals included)."""
    if not metadatas:
        import misp_platform.auth.principals  # noqa: F401  (its tables join db.metadata)
        from misp_platform.db import metadata

        metadatas = (metadata,)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
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
