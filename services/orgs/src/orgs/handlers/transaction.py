"""One command, one transaction: the work runs in a unit of work, committed when it returns, and
once more after a lost race (another writer moved the stream, a deadlock: the unit of work says
so with a ConcurrencyError), which the second loss gives up with (a 409). A taken name or uuid
leaves the unit of work as a validation error, without a retry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from misp_platform.eventstore import ConcurrencyError
from orgs.adapters.ports import OrgsStore, UnitOfWork

log = structlog.get_logger(__name__)

T = TypeVar("T")

ATTEMPTS = 2


async def in_transaction(uow: UnitOfWork, work: Callable[[OrgsStore], Awaitable[T]], *,
                         attempts: int = ATTEMPTS) -> T:
    """Run `work` on the unit of work's store and commit; again after a lost race (each attempt
    a new transaction that decides again on what it reads); ConcurrencyError after the last."""
    lost: ConcurrencyError | None = None
    for attempt in range(1, attempts + 1):
        try:
            async with uow:
                result = await work(uow.store)
                await uow.commit()
                return result
        except ConcurrencyError as exc:
            lost = exc
            log.info("transaction.lost_race", attempt=attempt, error=str(exc)[:200])
    raise ConcurrencyError(str(lost)) from lost
