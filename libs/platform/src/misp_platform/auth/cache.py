"""An in-process cache of principal rows, emptied by PostgreSQL notifications.

Every change of the principals projection notifies the channel `principals` in its own
transaction (principals.py); each API process listens and empties its cache on every
notification, so a revoked key is refused as soon as the change commits, and a known key costs
no database round trip. While the listener is not connected, nothing is cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import Any

import psycopg
import structlog

from misp_platform.db import libpq_url

log = structlog.get_logger(__name__)

PRINCIPALS_CHANNEL = "principals"

# The caches of this process: a change written here empties them at once, so the process that
# revoked a key refuses it on its very next request (the notification follows for the others).
_local_caches: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()


def clear_local_caches() -> None:
    for cache in list(_local_caches):
        cache.clear()


class PrincipalCache:
    """Key hash -> principal row, valid until the next principals change (or `ttl_s`)."""

    def __init__(self, *, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self.listening = False
        self.hits = 0
        self._rows: dict[str, tuple[Any, float]] = {}
        _local_caches.add(self)

    def get(self, key_hmac: str) -> Any | None:
        if not self.listening:
            return None
        hit = self._rows.get(key_hmac)
        if hit is None or hit[1] < time.monotonic():
            return None
        self.hits += 1
        return hit[0]

    def put(self, key_hmac: str, row: Any, generation: int) -> None:
        """Keep a row read at `generation`, unless a change came in meanwhile."""
        if self.listening and generation == self.generation:
            if len(self._rows) >= self.max_entries:
                self._rows.clear()
            self._rows[key_hmac] = (row, time.monotonic() + self.ttl_s)

    def clear(self) -> None:
        self._rows.clear()
        self.generation += 1

    async def listen(self, database_url: str, *, retry_s: float = 1.0) -> None:
        """Follow the notifications until cancelled; cache only while connected."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        libpq_url(database_url), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {PRINCIPALS_CHANNEL}")
                    self.clear()
                    self.listening = True
                    async for _ in conn.notifies():
                        self.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("auth.cache_listener_down", error=str(exc))
            finally:
                self.listening = False
                self.clear()
            await asyncio.sleep(retry_s)


@contextlib.asynccontextmanager
async def principal_cache(app: Any) -> Any:
    """Lifespan hook: `app.state.principal_cache`, listening for as long as the app runs."""
    cache = PrincipalCache()
    app.state.principal_cache = cache
    # The engine's database, not the settings': tests hand the app an engine of their own.
    url = app.state.engine.url.render_as_string(hide_password=False)
    task = asyncio.create_task(cache.listen(url))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
