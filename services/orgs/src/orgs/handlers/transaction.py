"""One command, one transaction (the platform's `in_transaction`), with the unique indexes of
the organisations' read model read as validation errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_platform.transaction import in_transaction as run_in_transaction
from orgs.domain.errors import OrganisationValidationError
from orgs.domain.model import NAME_TAKEN, UUID_TAKEN

T = TypeVar("T")


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
    """Run `work` in a transaction, again once after a lost race (then ConcurrencyError); a
    taken name or uuid is the caller's validation error."""
    try:
        return await run_in_transaction(engine, work)
    except IntegrityError as exc:
        mapped = unique_violation(exc)
        if mapped is not None:
            raise mapped from exc
        raise
