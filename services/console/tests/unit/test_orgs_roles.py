"""The organisation and role pages' pure pieces: MISP's named parameters, the bodies sent to the
API from the forms, the merge target, which refusals are a form's errors, and the multipart
reader of the logo form."""

from __future__ import annotations

import asyncio
import os

import pytest
from starlette.requests import Request

from console.forms import Form, FormTooLarge
from console.gateway import ApiError
from console.multipart import NotMultipart, parse_multipart, read_multipart
from console.pages.answers import record_of, refusal, refused_form
from console.pages.orgs import (
    index_path,
    merge_target,
    named_params,
    nationality_options,
    org_body,
)
from console.pages.roles import PERM_FLAGS, role_body


def test_named_params_of_a_path() -> None:
    assert named_params("scope:external/searchall:acme/page:2") == {
        "scope": "external", "searchall": "acme", "page": "2"}
    assert named_params("junk/:x/scope:") == {"scope": ""}


def test_the_index_path_quotes_the_search_and_drops_slashes() -> None:
    assert index_path("all", "", 1) == "/organisations/index/scope:all/page:1/limit:50"
    assert index_path("local", " a/b c ", 3) == (
        "/organisations/index/scope:local/searchall:a%20b%20c/page:3/limit:50")


def test_the_organisation_body_of_the_form() -> None:
    form = Form([("name", "  Acme  "), ("uuid", ""), ("description", "d"), ("local", "1"),
                 ("restricted_to_domain", "a.example\r\n\r\n b.example \n")])
    body = org_body(form, creating=True)
    assert body == {"name": "Acme", "description": "d", "type": "", "nationality": "",
                    "sector": "", "contacts": "", "local": True,
                    "restricted_to_domain": ["a.example", "b.example"]}
    # on edit the unchecked box is false and an empty uuid is sent (the API keeps the old one)
    edited = org_body(Form([("name", "Acme"), ("uuid", "")]), creating=False)
    assert (edited["local"], edited["uuid"], edited["restricted_to_domain"]) == (False, "", [])


def test_nationality_options_keep_a_value_that_is_no_country() -> None:
    assert nationality_options(["France"], "") == [("", "Not given"), ("France", "France")]
    assert nationality_options(["France"], "Atlantis") == [
        ("", "Not given"), ("Atlantis", "Atlantis"), ("France", "France")]


@pytest.mark.parametrize(("pairs", "expected"), [
    ([("targetType", "local"), ("orgsLocal", "7"), ("orgsExternal", "9")], ("local", "7")),
    ([("targetType", "external"), ("orgsLocal", "7"), ("orgsExternal", "9")],
     ("external", "9")),
    ([("targetType", "new"), ("new_name", "  New org ")], ("new", "New org")),
    ([("targetType", "new"), ("new_name", " ")], ("new", None)),
    ([("targetType", "bogus"), ("orgsLocal", "")], ("local", None)),
])
def test_the_merge_target(pairs: list[tuple[str, str]],
                          expected: tuple[str, str | None]) -> None:
    assert merge_target(Form(pairs)) == expected


def test_the_role_body_sends_every_flag() -> None:
    body = role_body(Form([("name", " Analyst "), ("permission", "2"), ("perm_audit", "1"),
                           ("memory_limit", "512M"), ("max_execution_time", "")]))
    assert body["name"] == "Analyst" and body["permission"] == "2"
    assert body["perm_audit"] is True
    assert [flag for flag, _ in PERM_FLAGS if body[flag]] == ["perm_audit"]
    assert (body["restricted_to_site_admin"], body["enforce_rate_limit"]) == (False, False)
    assert (body["rate_limit_count"], body["memory_limit"], body["max_execution_time"]) == (
        "0", "512M", "")


def test_the_role_flags_are_misps() -> None:
    from misp_contracts.events.identity import PERM_FLAGS as CONTRACT_FLAGS
    assert tuple(flag for flag, _ in PERM_FLAGS) == CONTRACT_FLAGS


def test_records_and_refusals() -> None:
    assert record_of({"Role": {"id": "3"}}, "Role") == {"id": "3"}
    assert record_of({"id": "3"}, "Role") == {"id": "3"}
    assert record_of([1], "Role") == {}
    taken = ApiError(403, "Could not add Organisation", {"name": ["taken"]})
    assert refused_form(taken)
    assert not refused_form(ApiError(403, "You do not have permission", None))
    assert not refused_form(ApiError(502, "down", {"name": ["x"]}))
    in_use = ApiError(403, "Could not delete Role", "It is not possible to delete role that "
                      "is assigned to users.")
    assert refusal(in_use) == ("Could not delete Role: It is not possible to delete role that "
                               "is assigned to users.")
    assert refusal(taken) == "Could not add Organisation"


def _multipart(data: bytes) -> bytes:
    return (b"--B\r\nContent-Disposition: form-data; name=\"_csrf\"\r\n\r\ntoken\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"logo\"; filename=\"l.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + data + b"\r\n"
            b"--B\r\nContent-Disposition: form-data; name=\"other\"; filename=\"\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n\r\n--B--\r\n")


def test_multipart_keeps_a_files_bytes_exactly() -> None:
    for _ in range(20):
        data = os.urandom(3000) + b"\r\n-B\n\r\r\n" + os.urandom(10)
        posted = parse_multipart("multipart/form-data; boundary=B", _multipart(data))
        assert posted.form["_csrf"] == "token"
        assert list(posted.files) == ["logo"]  # the empty file input is left out
        assert posted.files["logo"].data == data
        assert posted.files["logo"].filename == "l.png"


def _request(content_type: str, body: bytes) -> Request:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}
    return Request({"type": "http", "method": "POST", "path": "/", "headers": [
        (b"content-type", content_type.encode())]}, receive)


def test_multipart_is_bounded_and_leaves_other_bodies_unread() -> None:
    with pytest.raises(FormTooLarge):
        asyncio.run(read_multipart(_request("multipart/form-data; boundary=B",
                                            _multipart(b"x" * 2000)), max_bytes=1000))
    with pytest.raises(NotMultipart):
        asyncio.run(read_multipart(_request("application/x-www-form-urlencoded", b"a=1")))
    with pytest.raises(NotMultipart):
        parse_multipart("multipart/form-data", b"")
