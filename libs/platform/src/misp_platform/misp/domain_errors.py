"""Domain errors as MISP answers them: the one mapping from the kinds of `misp_platform.errors`
(and the event store's lost race) to MISP's statuses and bodies, for every service.

A route that names its failure envelope wraps the command in `as_misp(request, action,
singular)`; any other domain error that escapes a route is answered by the handler the app
factory installs, with a generic envelope ("Could not save record"), never a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Request
from starlette.responses import Response

from misp_platform.errors import (
    BadRequestError,
    DomainError,
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
    kind_of,
)
from misp_platform.eventstore import ConcurrencyError
from misp_platform.misp.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    MethodNotAllowed,
    MispHTTPError,
    NotFound,
    ValidationFailed,
    request_url,
)
from misp_platform.misp.responses import MispJSONResponse

__all__ = ["as_misp", "install_domain_error_handlers", "to_misp"]

# The kinds answered `{"name": message, "message": message, "url": ...}` with their status.
_PLAIN: dict[type[DomainError], Callable[[str], MispHTTPError]] = {
    NotFoundError: NotFound,
    ForbiddenError: Forbidden,
    NotAllowedError: MethodNotAllowed,
    BadRequestError: BadRequest,
    DomainError: BadRequest,
}


def to_misp(error: DomainError | ConcurrencyError, *, url: str, action: str = "save",
            singular: str = "record", id: int | str | None = None) -> MispHTTPError:
    """MISP's answer to `error`; `action`, `singular`, `id` and `url` name the failure envelope
    of an InvalidFieldsError (`{"saved": false, "name": "Could not <action> <singular>", ...}`).

    A lost race (ConcurrencyError, once the transaction's retry lost too) is a 409 whose text
    never shows the error's own (stream names and versions).
    """
    if isinstance(error, ConcurrencyError):
        return Conflict()
    kind = kind_of(error)
    if kind is InvalidFieldsError:
        assert isinstance(error, InvalidFieldsError)
        failed = ValidationFailed(action, singular, url, error.errors, id=id,
                                  message=error.custom_message)
        failed.status_code = error.status
        return failed
    return _PLAIN[kind](error.message)


@contextmanager
def as_misp(request: Request, action: str, singular: str, id: int | str | None = None, *,
            url: str | None = None) -> Iterator[None]:
    """Turn the domain errors (and a lost race) raised inside into MISP's answers, the failure
    envelope named after `action` and `singular` (and `url`: the request's path by default)."""
    try:
        yield
    except (DomainError, ConcurrencyError) as error:
        raise to_misp(error, url=url if url is not None else request_url(request),
                      action=action, singular=singular, id=id) from error


async def _escaped(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError | ConcurrencyError)
    url = request_url(request)
    error = to_misp(exc, url=url)
    return MispJSONResponse(error.body(url), status_code=error.status_code,
                            headers=error.headers or None)


def install_domain_error_handlers(app: FastAPI) -> None:
    """A domain error (or a lost race) that escaped `as_misp` still gets MISP's body."""
    app.add_exception_handler(DomainError, _escaped)
    app.add_exception_handler(ConcurrencyError, _escaped)
