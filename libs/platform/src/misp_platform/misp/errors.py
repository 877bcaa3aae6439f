"""MISP's error shapes: exceptions a route raises and the handlers that render them.

Every error is `{"name": MSG, "message": MSG, "url": "/request/path"}` (CakePHP's renderer), a
failed save is MISP's 403 failure envelope, and nothing internal ever leaks: an unexpected
exception is logged and answered with MISP's generic 500. A database that does not answer
(down, restarting, out of connections, a statement past its timeout) is a 503 with
`Retry-After`, whatever the route.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy.exc
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from misp_platform.logging import loggable_path
from misp_platform.misp.responses import MispJSONResponse, exception_body, failure
from misp_platform.outbox import MessageTooLargeError

log = structlog.get_logger("misp_platform.errors")

INVALID_JSON = (
    "Invalid JSON input. Make sure that the JSON input is a correctly formatted JSON string. "
    "This request has been blocked to avoid an unfiltered request."
)
NO_PERMISSION = "You do not have permission to use this functionality."
INTERNAL_ERROR = "An Internal Error Has Occurred."
NOT_FOUND = "Not Found"
METHOD_NOT_ALLOWED = "Method Not Allowed"
DATABASE_UNAVAILABLE = "Service Unavailable: the database does not answer, please try again later."
DATABASE_TOO_SLOW = ("Service Unavailable: the database did not answer in time, please try again "
                     "later.")
# Seconds a client is asked to wait after a 503 (PostgreSQL restarts in a few).
RETRY_AFTER_S = 5

_DEFAULT_STATUS_MESSAGES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    409: "Conflict",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
}


class MispHTTPError(Exception):
    """An error answered as `{"name", "message", "url"}` with its status."""

    status_code: int = 500
    default_message: str = INTERNAL_ERROR

    def __init__(self, status_code: int | None = None, message: str | None = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        if status_code is not None:
            self.status_code = status_code
        self.message = message if message is not None else self.default_message
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def body(self, url: str) -> dict[str, Any]:
        return exception_body(self.message, url)


class _Fixed(MispHTTPError):
    """A subclass with a fixed status: `NotFound("Invalid user")`."""

    def __init__(self, message: str | None = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(None, message, headers=headers)


class BadRequest(_Fixed):
    status_code = 400
    default_message = "Bad Request"


class Forbidden(_Fixed):
    status_code = 403
    default_message = NO_PERMISSION


class NotFound(_Fixed):
    status_code = 404
    default_message = NOT_FOUND


class MethodNotAllowed(_Fixed):
    status_code = 405
    default_message = METHOD_NOT_ALLOWED


class Conflict(_Fixed):
    status_code = 409
    default_message = "The record was changed by another request, please try again."


class TooManyRequests(_Fixed):
    """429: the caller must wait (give `Retry-After`); misp_platform.auth.abuse."""

    status_code = 429
    default_message = "Too Many Requests"


class InvalidJSON(MethodNotAllowed):
    """Malformed JSON body: MISP answers 405 with this exact text."""

    default_message = INVALID_JSON


class ValidationFailed(MispHTTPError):
    """A save refused by validation: MISP's 403 `{"saved": false, ..., "errors": ...}`."""

    status_code = 403

    def __init__(self, action: str, singular: str, url: str, errors: Any, *,
                 id: int | str | None = None, message: str | None = None) -> None:
        self.envelope = failure(action, singular, url, errors, id=id, message=message)
        super().__init__(403, self.envelope["message"])

    def body(self, url: str) -> dict[str, Any]:
        return self.envelope


def request_url(request: Request) -> str:
    """The path the client asked for (before `.json` and named params were taken off)."""
    state = request.scope.get("state") or {}
    original = state.get("original_path")
    return original if isinstance(original, str) else request.url.path


def misp_error_response(status_code: int, message: str, url: str,
                        headers: Mapping[str, str] | None = None,
                        **extra: Any) -> MispJSONResponse:
    body: dict[str, Any] = {**exception_body(message, url), **extra}
    return MispJSONResponse(body, status_code=status_code, headers=dict(headers or {}))


def _loc_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


def validation_errors(errors: Sequence[Any]) -> dict[str, list[str]]:
    """pydantic/FastAPI errors in Cake's `{"field": ["message"]}` shape."""
    out: dict[str, list[str]] = {}
    for err in errors:
        if not isinstance(err, Mapping):
            continue
        out.setdefault(_loc_name(err.get("loc", ())), []).append(str(err.get("msg", "invalid")))
    return out


async def _misp_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MispHTTPError)
    return MispJSONResponse(exc.body(request_url(request)), status_code=exc.status_code,
                            headers=exc.headers or None)


async def _request_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    url = request_url(request)
    errors = list(exc.errors())
    if any(isinstance(e, Mapping) and e.get("type") == "json_invalid" for e in errors):
        return misp_error_response(405, INVALID_JSON, url)
    locations = {e.get("loc", ("",))[0] for e in errors if isinstance(e, Mapping)}
    if locations and locations <= {"path"}:
        # A path id that is not a number: MISP answers "not found" for an id that cannot exist.
        return misp_error_response(404, NOT_FOUND, url)
    details = validation_errors(errors)
    summary = "; ".join(f"{field}: {', '.join(msgs)}" for field, msgs in details.items())
    return misp_error_response(400, f"Invalid request: {summary}" if summary else "Bad Request",
                               url, errors=details)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if isinstance(exc.detail, str) and exc.detail:
        message = exc.detail
    else:
        message = _DEFAULT_STATUS_MESSAGES.get(status, INTERNAL_ERROR if status >= 500
                                               else "Bad Request")
    if status >= 500:
        message = INTERNAL_ERROR
    return misp_error_response(status, message, request_url(request),
                               headers=getattr(exc, "headers", None))


async def _message_too_large(request: Request, exc: Exception) -> Response:
    """A change whose event would pass the message cap (outbox.py): refused, nothing stored."""
    assert isinstance(exc, MessageTooLargeError)
    log.warning("http.message_too_large", path=loggable_path(request.url.path), topic=exc.topic,
                size=exc.size, limit=exc.limit)
    return misp_error_response(413, str(exc), request_url(request))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("http.unhandled_error", path=loggable_path(request.url.path),
                  method=request.method,
                  error_type=type(exc).__name__)
    return misp_error_response(500, INTERNAL_ERROR, request_url(request))


# SQLSTATEs of a server that cannot serve now: class 08 (the connection failed or was lost),
# too many connections, the server shutting down, crashed or still starting.
_UNAVAILABLE_STATES = frozenset({"53300", "57P01", "57P02", "57P03"})
QUERY_CANCELED = "57014"  # a statement past statement_timeout (or cancelled by an operator)


def database_unavailable(exc: BaseException) -> str | None:
    """The answer's message when `exc` says the database cannot serve now (not that the request
    is wrong), else None: a connection that cannot be opened or was lost, the server shutting
    down or starting, no pooled connection in time, a statement cancelled by its timeout."""
    if isinstance(exc, sqlalchemy.exc.TimeoutError):  # no pooled connection within pool_timeout
        return DATABASE_UNAVAILABLE
    orig: BaseException | None = exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return DATABASE_UNAVAILABLE
        orig = exc.orig
    if not isinstance(orig, psycopg.Error):
        return None
    state = orig.sqlstate
    if state == QUERY_CANCELED:
        return DATABASE_TOO_SLOW
    if state is None:
        # Raised by the client, not the server: refused, connect timeout, connection lost.
        return DATABASE_UNAVAILABLE if isinstance(orig, psycopg.OperationalError) else None
    return DATABASE_UNAVAILABLE if state.startswith("08") or state in _UNAVAILABLE_STATES \
        else None


async def _database_error(request: Request, exc: Exception) -> Response:
    """503 with Retry-After when the database cannot serve now; any other database error goes
    on as before (the request-context middleware's 500)."""
    message = database_unavailable(exc)
    if message is None:
        raise exc
    orig = getattr(exc, "orig", None) or exc
    log.warning("http.database_unavailable", path=loggable_path(request.url.path),
                method=request.method,
                error_type=type(orig).__name__, sqlstate=getattr(orig, "sqlstate", None),
                error=str(orig)[:300])
    return misp_error_response(503, message, request_url(request),
                               headers={"Retry-After": str(RETRY_AFTER_S)})


def install_error_handlers(app: FastAPI) -> None:
    """Render every error in MISP's shape: ours, FastAPI's validation, Starlette's 404/405, the
    database's unavailability (503), 500."""
    app.add_exception_handler(MispHTTPError, _misp_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(MessageTooLargeError, _message_too_large)
    for database_error in (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, psycopg.Error):
        app.add_exception_handler(database_error, _database_error)
    # Last resort: Starlette's ServerErrorMiddleware runs this one (and then re-raises for the
    # server to log); the request-context middleware normally answers before it gets there.
    app.add_exception_handler(Exception, _unexpected)

