"""The one mapping from domain errors to MISP's answers: every kind to its status and body, the
`as_misp` envelope naming, and the handler the app factory installs for errors that escape."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from misp_platform.app import create_app
from misp_platform.config import ServiceSettings
from misp_platform.errors import (
    BadRequestError,
    DomainError,
    ForbiddenError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
    describe,
    kind_of,
)
from misp_platform.eventstore import ConcurrencyError
from misp_platform.misp import as_misp, install_error_handlers, to_misp
from misp_platform.misp.domain_errors import install_domain_error_handlers

URL = "/things/add"
CONFLICT = "The record was changed by another request, please try again."


def answer(error: DomainError | ConcurrencyError, **names: Any) -> tuple[int, dict[str, Any]]:
    misp = to_misp(error, url=URL, **names)
    return misp.status_code, misp.body(URL)


def plain(message: str) -> dict[str, str]:
    return {"name": message, "message": message, "url": URL}


@pytest.mark.parametrize(("error", "status"), [
    (NotFoundError("Invalid thing"), 404),
    (ForbiddenError("You may not."), 403),
    (NotAllowedError("Only from the CLI."), 405),
    (BadRequestError("Invalid filter."), 400),
    (DomainError("Refused."), 400),
])
def test_each_plain_kind_is_misp_s_exception_body_with_its_status(error: DomainError,
                                                                   status: int) -> None:
    assert answer(error) == (status, plain(error.message))


def test_invalid_fields_are_misp_s_403_failure_envelope_named_by_the_route() -> None:
    error = InvalidFieldsError({"name": ["A name is required."]})

    assert answer(error, action="add", singular="Thing") == (403, {
        "saved": False, "name": "Could not add Thing", "message": "Could not add Thing",
        "url": URL, "errors": {"name": ["A name is required."]}})


def test_the_envelope_takes_the_error_s_message_and_the_route_s_id() -> None:
    error = InvalidFieldsError("Job 3 has not failed.", "Job 3 has not failed.")

    assert answer(error, action="rerun", singular="Job", id=3) == (403, {
        "saved": False, "name": "Job 3 has not failed.", "message": "Job 3 has not failed.",
        "url": URL, "errors": "Job 3 has not failed.", "id": "3"})


def test_an_error_that_names_no_envelope_is_a_saved_record_s() -> None:
    status, body = answer(InvalidFieldsError({"email": ["Taken."]}))

    assert (status, body["message"]) == (403, "Could not save record")


def test_a_refusal_off_misp_s_paths_may_answer_the_envelope_with_its_own_status() -> None:
    class TooLarge(InvalidFieldsError):
        status = 413

    status, body = answer(TooLarge({"logo": ["Too large."]}), action="upload", singular="Logo")

    assert status == 413
    assert body["message"] == "Could not upload Logo" and body["errors"] == {
        "logo": ["Too large."]}


def test_a_lost_race_is_a_409_that_never_shows_the_store_s_text() -> None:
    assert answer(ConcurrencyError("stream user-7 is at version 4, not 3")) == (
        409, plain(CONFLICT))


def test_a_service_error_with_a_base_of_its_own_is_answered_as_its_kind() -> None:
    class ServiceError(DomainError):
        pass

    class Missing(ServiceError, NotFoundError):
        pass

    class Refused(ServiceError, InvalidFieldsError):
        pass

    assert kind_of(Missing("Invalid entry")) is NotFoundError
    assert answer(Missing("Invalid entry")) == (404, plain("Invalid entry"))
    assert answer(Refused("No change.", "No change."))[0] == 403


def test_the_first_kind_in_the_method_resolution_order_wins() -> None:
    class BadInput(InvalidFieldsError):
        pass

    class MissingField(NotAllowedError, BadInput):
        pass

    error = MissingField({"subject": ["Missing field."]})

    assert isinstance(error, BadInput)
    assert answer(error) == (405, plain("subject: Missing field."))


def test_the_text_of_invalid_fields_is_their_message_or_a_summary_of_them() -> None:
    assert str(InvalidFieldsError({"a": ["x", "y"], "b": ["z"]})) == "a: x, y; b: z"
    assert str(InvalidFieldsError({"a": ["x"]}, "Could not add")) == "Could not add"
    assert InvalidFieldsError({"a": ["x"]}).custom_message is None
    assert describe(["one", "two"]) == "one; two"
    assert describe("as is") == "as is"


# ---- in an app -------------------------------------------------------------------------------

router = APIRouter()


@router.post("/things/add")
async def add_thing(request: Request) -> dict[str, Any]:
    with as_misp(request, "add", "Thing"):
        raise InvalidFieldsError({"name": ["A name is required."]})


@router.post("/things/edit/{thing_id}")
async def edit_thing(thing_id: int, request: Request) -> dict[str, Any]:
    with as_misp(request, "edit", "Thing", id=thing_id, url="/things/edit"):
        raise InvalidFieldsError("Locked.", "Locked.")


@router.get("/things/view/{thing_id}")
async def view_thing(thing_id: int) -> dict[str, Any]:
    raise NotFoundError("Invalid thing")


@router.post("/things/save")
async def save_thing() -> dict[str, Any]:
    raise InvalidFieldsError({"name": ["Taken."]})


@router.post("/things/race")
async def race(request: Request) -> dict[str, Any]:
    raise ConcurrencyError("stream thing-1 moved")


@router.post("/things/other")
async def other(request: Request) -> dict[str, Any]:
    with as_misp(request, "add", "Thing"):
        raise LookupError("not a domain error")


def app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    install_domain_error_handlers(app)
    app.include_router(router)
    return app


async def call(method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.request(method, path)


async def test_as_misp_names_the_envelope_after_the_route() -> None:
    added = await call("POST", "/things/add")
    edited = await call("POST", "/things/edit/5")

    assert added.status_code == 403
    assert added.json() == {"saved": False, "name": "Could not add Thing",
                            "message": "Could not add Thing", "url": "/things/add",
                            "errors": {"name": ["A name is required."]}}
    assert edited.status_code == 403
    assert edited.json() == {"saved": False, "name": "Locked.", "message": "Locked.",
                             "url": "/things/edit", "errors": "Locked.", "id": "5"}


async def test_a_domain_error_that_escapes_a_route_gets_misp_s_body_never_a_500() -> None:
    missing = await call("GET", "/things/view/7")
    refused = await call("POST", "/things/save")
    raced = await call("POST", "/things/race")

    assert (missing.status_code, missing.json()) == (404, {
        "name": "Invalid thing", "message": "Invalid thing", "url": "/things/view/7"})
    assert (refused.status_code, refused.json()["message"]) == (403, "Could not save record")
    assert (raced.status_code, raced.json()["message"]) == (409, CONFLICT)


async def test_as_misp_lets_any_other_error_through() -> None:
    response = await call("POST", "/things/other")

    assert response.status_code == 500
    assert "not a domain error" not in response.text


class UnitSettings(ServiceSettings):
    service: ClassVar[str] = "unittest"


def test_the_app_factory_installs_the_handler_for_every_service() -> None:
    app = create_app(UnitSettings(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
                                  kafka_bootstrap_servers="127.0.0.1:1"),
                     configure_logs=False)

    assert DomainError in app.exception_handlers
    assert ConcurrencyError in app.exception_handlers
