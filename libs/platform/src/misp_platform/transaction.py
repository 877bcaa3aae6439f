"""One command, one transaction: `in_transaction` runs the work again when it lost a race
(another writer moved the stream, a deadlock or serialization failure, or a unique index the
caller names as raced), and gives up with a ConcurrencyError (a 409) after the last attempt."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_platform.eventstore import ConcurrencyError

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Deadlock and serialization failures: another transaction won; the retry decides again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def _never(_exc: IntegrityError) -> bool:
    return False


async def in_transaction(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]],
                         *, raced: Callable[[IntegrityError], bool] = _never,
                         attempts: int = 2) -> T:
    """Run `work` in a transaction, again after a lost race; other errors go to the caller
    (an IntegrityError the caller does not call raced, for one)."""
    lost: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except ConcurrencyError as exc:
            lost = exc
        except IntegrityError as exc:
            if not raced(exc):
                raise
            lost = exc
        except DBAPIError as exc:
            if sqlstate(exc) not in RETRYABLE_SQLSTATES:
                raise
            lost = exc
        log.info("transaction.lost_race", attempt=attempt, error=type(lost).__name__)
    raise ConcurrencyError(str(lost)) from lost
