"""A database that cannot serve now is MISP's 503 with Retry-After, at any route, through the one
handler the app factory installs; every other database error stays MISP's 500. Nothing here
needs a server: the refused connection is to a port nobody listens on."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import psycopg
import pytest
import sqlalchemy.exc
from fastapi import APIRouter
from psycopg import errors as pg_errors
from sqlalchemy import text
from structlog.testing import capture_logs

from misp_platform.app import EngineDep, create_app
from misp_platform.config import ServiceSettings
from misp_platform.db import connect_args
from misp_platform.misp.errors import (
    DATABASE_TOO_SLOW,
    DATABASE_UNAVAILABLE,
    INTERNAL_ERROR,
    RETRY_AFTER_S,
    database_unavailable,
)


def wrapped(orig: Exception,
            kind: type[sqlalchemy.exc.DBAPIError] = sqlalchemy.exc.OperationalError,
            invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    return kind("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(("error", "message"), [
    (psycopg.OperationalError("connection failed: Connection refused"), DATABASE_UNAVAILABLE),
    (wrapped(psycopg.OperationalError("connection timeout expired")), DATABASE_UNAVAILABLE),
    (wrapped(pg_errors.AdminShutdown("terminating connection")), DATABASE_UNAVAILABLE),
    (wrapped(pg_errors.CannotConnectNow("the database system is shutting down")),
     DATABASE_UNAVAILABLE),
    (wrapped(pg_errors.TooManyConnections("too many clients")), DATABASE_UNAVAILABLE),
    (wrapped(pg_errors.ConnectionFailure("connection failure")), DATABASE_UNAVAILABLE),
    (wrapped(psycopg.InterfaceError("the connection is closed"),
             sqlalchemy.exc.InterfaceError, invalidated=True), DATABASE_UNAVAILABLE),
    (sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"),
     DATABASE_UNAVAILABLE),
    (wrapped(pg_errors.QueryCanceled("canceling statement due to statement timeout")),
     DATABASE_TOO_SLOW),
])
def test_an_unavailable_database_is_recognised(error: Exception, message: str) -> None:
    assert database_unavailable(error) == message


@pytest.mark.parametrize("error", [
    wrapped(pg_errors.UniqueViolation("duplicate key"), sqlalchemy.exc.IntegrityError),
    wrapped(pg_errors.DivisionByZero("division by zero"), sqlalchemy.exc.DataError),
    wrapped(pg_errors.UndefinedTable("no such table"), sqlalchemy.exc.ProgrammingError),
    wrapped(pg_errors.SerializationFailure("could not serialize")),
    wrapped(psycopg.InterfaceError("bad use"), sqlalchemy.exc.InterfaceError),
    pg_errors.LockNotAvailable("lock timeout"),
    ValueError("not a database error"),
])
def test_other_errors_are_not_unavailability(error: Exception) -> None:
    assert database_unavailable(error) is None


def test_engine_timeouts_go_to_psycopg_as_connect_arguments() -> None:
    assert connect_args(5, 30) == {"connect_timeout": 5,
                                   "options": "-c statement_timeout=30000"}
    assert connect_args(0.2, 0.25) == {"connect_timeout": 1,
                                       "options": "-c statement_timeout=250"}
    assert connect_args(0, 0) == {}


class NoServerSettings(ServiceSettings):
    service: ClassVar[str] = "nodb"


router = APIRouter()


@router.get("/things/db")
async def db_answer(engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        return {"value": (await conn.execute(text("SELECT 1"))).scalar()}


@router.get("/things/pool")
async def pool_exhausted() -> dict[str, Any]:
    raise sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")


@router.get("/things/duplicate")
async def duplicate() -> dict[str, Any]:
    raise wrapped(pg_errors.UniqueViolation("duplicate key value"), sqlalchemy.exc.IntegrityError)


@pytest.fixture
async def client() -> Any:
    settings = NoServerSettings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
                                kafka_bootstrap_servers="127.0.0.1:1", db_connect_timeout_s=1)
    app = create_app(settings, routers=[router], configure_logs=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://nodb") as c:
        yield c


@pytest.mark.parametrize("path", ["/things/db", "/things/db.json", "/things/pool"])
async def test_unavailable_is_misp_s_503_with_retry_after(client: httpx.AsyncClient,
                                                          path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    assert response.json() == {"name": DATABASE_UNAVAILABLE, "message": DATABASE_UNAVAILABLE,
                               "url": path}


async def test_the_principals_lookup_of_an_authenticated_call_is_503_too(
        client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/nodb/whoami",
                                headers={"Authorization": "a" * 40})

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == str(RETRY_AFTER_S)


async def test_other_database_errors_stay_misp_s_500(client: httpx.AsyncClient) -> None:
    with capture_logs() as logs:  # (and no traceback rendered: that takes seconds)
        response = await client.get("/things/duplicate")

    assert "http.unhandled_error" in [entry["event"] for entry in logs]
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert response.json() == {"name": INTERNAL_ERROR, "message": INTERNAL_ERROR,
                               "url": "/things/duplicate"}


async def test_ready_answers_503_without_a_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")

    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
