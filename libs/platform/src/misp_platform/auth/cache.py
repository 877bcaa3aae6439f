"""In-process caches emptied by PostgreSQL notifications (`NotifiedCache`), and the one of
principal rows that authentication reads.

Every change of the principals projection notifies the channel `principals` in its own
transaction (principals.py); each API process listens and empties its cache on every
notification, so a revoked key is refused as soon as the change commits, and a known key costs
no database round trip. While the listener is not connected, nothing is cached. Misses of one
key at once share one read (`shared`): a cache emptied under load costs a query per key, not
one per request. A service may keep caches of its own read models the same way, on a channel
of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
import structlog

from misp_platform.db import libpq_url

log = structlog.get_logger(__name__)

PRINCIPALS_CHANNEL = "principals"
T = TypeVar("T")

# The caches of this process: a change written here empties them at once, so the process that
# revoked a key refuses it on its very next request (the notification follows for the others).
_local_caches: weakref.WeakSet[NotifiedCache] = weakref.WeakSet()


def clear_local_caches() -> None:
    for cache in list(_local_caches):
        cache.clear()


class NotifiedCache:
    """Key -> value, valid until the next notification on `channel` (or `ttl_s`, a safety net
    should a writer not notify)."""

    channel: str = ""

    def __init__(self, *, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.generation = 0
        self.listening = False
        self.hits = 0
        self._rows: dict[str, tuple[Any, float]] = {}
        self._reads: dict[tuple[int, str], asyncio.Future[Any]] = {}
        _local_caches.add(self)

    def get(self, key: str) -> Any | None:
        if not self.listening:
            return None
        hit = self._rows.get(key)
        if hit is None or hit[1] < time.monotonic():
            return None
        self.hits += 1
        return hit[0]

    def put(self, key: str, row: Any, generation: int) -> None:
        """Keep a value read at `generation`, unless a change came in meanwhile."""
        if self.listening and generation == self.generation:
            if len(self._rows) >= self.max_entries:
                self._rows.clear()
            self._rows[key] = (row, time.monotonic() + self.ttl_s)

    def clear(self) -> None:
        self._rows.clear()
        self.generation += 1

    async def shared(self, key: str, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, once for every caller that misses `key` while it runs (and no change came
        in since it began: a caller after a change reads again). A caller cancelled while it
        waits does not cancel the read of the others."""
        name = (self.generation, key)
        running = self._reads.get(name)
        if running is None:
            running = asyncio.ensure_future(read())
            self._reads[name] = running

            def done(future: asyncio.Future[Any]) -> None:
                if self._reads.get(name) is future:
                    del self._reads[name]
                if not future.cancelled():
                    future.exception()  # retrieved: a read nobody awaits any more logs nothing

            running.add_done_callback(done)
        result: T = await asyncio.shield(running)
        return result

    async def listen(self, database_url: str, *, retry_s: float = 1.0) -> None:
        """Follow the notifications until cancelled; cache only while connected."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        libpq_url(database_url), autocommit=True) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    self.clear()
                    self.listening = True
                    async for _ in conn.notifies():
                        self.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cache.listener_down", channel=self.channel, error=str(exc))
            finally:
                self.listening = False
                self.clear()
            await asyncio.sleep(retry_s)


class PrincipalCache(NotifiedCache):
    """Key hash -> principal row, valid until the next principals change (or `ttl_s`)."""

    channel = PRINCIPALS_CHANNEL


@contextlib.asynccontextmanager
async def listening(app: Any, cache: NotifiedCache) -> Any:
    """Keep `cache` listening for as long as the app runs (a lifespan hook's body)."""
    # The engine's database, not the settings': tests hand the app an engine of their own.
    url = app.state.engine.url.render_as_string(hide_password=False)
    task = asyncio.create_task(cache.listen(url))
    try:
        yield cache
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def principal_cache(app: Any) -> Any:
    """Lifespan hook: `app.state.principal_cache`, listening for as long as the app runs."""
    app.state.principal_cache = PrincipalCache()
    async with listening(app, app.state.principal_cache):
        yield
