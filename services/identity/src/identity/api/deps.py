"""Dependencies and error translation shared by identity's routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

from identity.domain.errors import (
    BadRequestError,
    DomainError,
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
    UnknownOrganisationError,
)
from misp_contracts.events.orgs import ORGANISATION_TOPIC
from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import Principal
from misp_platform.consistency import consistency_of, decide_fresh
from misp_platform.misp import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    MispHTTPError,
    MispJSONResponse,
    NotFound,
    ValidationFailed,
)
from misp_platform.misp.errors import request_url

__all__ = ["EngineDep", "Pepper", "SettingsDep", "as_misp", "fresh_orgs", "resolve_user_id"]

T = TypeVar("T")


async def _pepper(settings: SettingsDep) -> str:
    return settings.pepper.get_secret_value()


Pepper = Annotated[str, Depends(_pepper)]


def resolve_user_id(value: str, principal: Principal, *, message: str = "Invalid user") -> int:
    """`me` or a numeric id; anything else cannot exist (404)."""
    if value == "me":
        return principal.user_id
    if not value.isdigit() or len(value) > 18:
        raise NotFound(message)
    return int(value)


async def fresh_orgs(request: Request, decide: Callable[[], Awaitable[T]]) -> T:
    """`decide()`, once more after identity's projection of organisations has caught up with
    Kafka when it found the organisation unknown (created a moment ago in orgs)."""
    return await decide_fresh(
        consistency_of(request.app), request.app.state.settings.main_group,
        [ORGANISATION_TOPIC], decide,
        stale=lambda exc: isinstance(exc, UnknownOrganisationError))


def to_misp(error: DomainError, *, url: str, action: str, singular: str,
            id: int | str | None = None) -> MispHTTPError:
    if isinstance(error, InvalidFieldsError):
        return ValidationFailed(action, singular, url, error.errors, id=id,
                                message=error.custom_message)
    if isinstance(error, NotFoundError):
        return NotFound(error.message)
    if isinstance(error, ForbiddenError):
        return Forbidden(error.message)
    if isinstance(error, NotAllowedError):
        return MethodNotAllowed(error.message)
    if isinstance(error, BadRequestError):
        return BadRequest(error.message)
    return BadRequest(error.message)


@contextmanager
def as_misp(request: Request, action: str, singular: str,
            id: int | str | None = None) -> Iterator[None]:
    """Turn domain errors into MISP's answers (failure envelope named after the action)."""
    try:
        yield
    except DomainError as error:
        raise to_misp(error, url=request_url(request), action=action, singular=singular,
                      id=id) from None


def install_domain_errors(app: FastAPI) -> None:
    """A domain error that escaped `as_misp` still gets a MISP body, never a 500."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        error = to_misp(exc, url=request_url(request), action="save", singular="record")
        return MispJSONResponse(error.body(request_url(request)), status_code=error.status_code)

    app.add_exception_handler(DomainError, handle)
