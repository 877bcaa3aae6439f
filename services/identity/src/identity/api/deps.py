"""Dependencies shared by identity's routes, and the platform's `as_misp` they answer domain
errors with (misp_platform.misp.domain_errors: one mapping for every service)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Request

from identity.domain.errors import UnknownOrganisationError
from identity.handlers.password_reset import UnknownResetLinkError
from misp_contracts.events.mailer import CREDENTIAL_TOPIC
from misp_contracts.events.orgs import ORGANISATION_TOPIC
from misp_contracts.numbers import whole_number
from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import Principal
from misp_platform.consistency import consistency_of, decide_fresh
from misp_platform.misp import NotFound, as_misp

__all__ = ["EngineDep", "Pepper", "SettingsDep", "as_misp", "fresh_orgs", "fresh_reset_link",
           "resolve_user_id"]

T = TypeVar("T")


async def _pepper(settings: SettingsDep) -> str:
    return settings.pepper.get_secret_value()


Pepper = Annotated[str, Depends(_pepper)]


def resolve_user_id(value: str, principal: Principal, *, message: str = "Invalid user") -> int:
    """`me` or a numeric id; anything else cannot exist (404)."""
    if value == "me":
        return principal.user_id
    number = whole_number(value)
    if number is None:
        raise NotFound(message)
    return number


async def fresh_orgs(request: Request, decide: Callable[[], Awaitable[T]]) -> T:
    """`decide()`, once more after identity's projection of organisations has caught up with
    Kafka when it found the organisation unknown (created a moment ago in orgs)."""
    return await decide_fresh(
        consistency_of(request.app),
        [(request.app.state.settings.main_group, [ORGANISATION_TOPIC])], decide,
        stale=lambda exc: isinstance(exc, UnknownOrganisationError))



async def fresh_reset_link(request: Request, decide: Callable[[], Awaitable[T]]) -> T:
    """`decide()`, once more after identity's main consumer has caught up with the mailer's
    credential topic when it found no link for the token (a link clicked as soon as mailed may
    reach identity before the mailer's PasswordResetLinkIssued)."""
    return await decide_fresh(
        consistency_of(request.app),
        [(request.app.state.settings.main_group, [CREDENTIAL_TOPIC])], decide,
        stale=lambda exc: isinstance(exc, UnknownResetLinkError))
