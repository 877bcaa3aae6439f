"""The API process's cache of users' views (`users/view/{id|me}`, what PyMISP reads on every
connect), emptied by the `identity_views` notification that the read models' triggers send at
commit (migration 0005), and at once by any commit of this process.

A view is kept only when no change came in while it was read, and for 5 s at most (the
notification is the rule, the time limit a safety net)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import event

from misp_platform.auth.cache import NotifiedCache, listening

VIEWS_CHANNEL = "identity_views"


class ViewCache(NotifiedCache):
    """User id -> the MISP record of `users/view`."""

    channel = VIEWS_CHANNEL


@asynccontextmanager
async def view_cache(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan hook: `app.state.view_cache`, listening while the app runs; a commit made by
    this process empties it before the request that made it answers."""
    cache = ViewCache()
    app.state.view_cache = cache

    def on_commit(_conn: Any) -> None:
        cache.clear()

    sync_engine = app.state.engine.sync_engine
    event.listen(sync_engine, "commit", on_commit)
    try:
        async with listening(app, cache):
            yield
    finally:
        event.remove(sync_engine, "commit", on_commit)
