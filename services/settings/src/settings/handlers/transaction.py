"""One command, one transaction: retried once on a lost race, then a ConcurrencyError (409)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_platform.eventstore import ConcurrencyError

log = structlog.get_logger(__name__)

T = TypeVar("T")


async def in_transaction(engine: AsyncEngine,
                         work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    for attempt in (1, 2):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except (ConcurrencyError, IntegrityError) as exc:
            if isinstance(exc, IntegrityError) and "event_pkey" not in str(exc.orig):
                raise
            log.info("settings.concurrency_conflict", attempt=attempt)
            if attempt == 2:
                raise ConcurrencyError(str(exc)) from exc
    raise AssertionError("unreachable")
