"""One command, one transaction: retried once on a concurrency conflict, then given up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_platform.eventstore import ConcurrencyError
from orgs.domain.errors import OrganisationValidationError
from orgs.domain.model import NAME_TAKEN, UUID_TAKEN

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Deadlock and serialization failures: another transaction won; the retry decides again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


def unique_violation(exc: IntegrityError) -> OrganisationValidationError | None:
    """The validation error a unique index of the read model stands for, if it is one."""
    text = str(exc.orig)
    if "ux_organisation_name" in text:
        return OrganisationValidationError({"name": [NAME_TAKEN]})
    if "ux_organisation_uuid" in text:
        return OrganisationValidationError({"uuid": [UUID_TAKEN]})
    return None


async def in_transaction(engine: AsyncEngine,
                         work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in a transaction; a lost race is retried once, then ConcurrencyError."""
    for attempt in (1, 2):
        try:
            async with engine.begin() as conn:
                return await work(conn)
        except ConcurrencyError:
            log.info("orgs.concurrency_conflict", attempt=attempt)
            if attempt == 2:
                raise
        except IntegrityError as exc:
            mapped = unique_violation(exc)
            if mapped is not None:
                raise mapped from exc
            if "event_pkey" in str(exc.orig) and attempt == 1:
                continue
            raise
        except DBAPIError as exc:
            if _sqlstate(exc) not in _RETRYABLE_SQLSTATES:
                raise
            log.info("orgs.transaction_retry", attempt=attempt, sqlstate=_sqlstate(exc))
            if attempt == 2:
                raise ConcurrencyError(str(exc)) from exc
    raise AssertionError("unreachable")
