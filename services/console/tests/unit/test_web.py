"""The console's pure pieces: redirect targets, forms, MISP's field errors, the viewer."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request

from console.forms import MAX_FORM_BYTES, FormTooLarge, read_form
from console.gateway import ApiError
from console.pages.users import named
from console.viewer import BadCsrfToken, check_csrf, viewer_from
from console.web import CONTENT_SECURITY_POLICY, query_string, safe_target, when


@pytest.mark.parametrize(("target", "expected"), [
    ("/admin/users/index?page=2", "/admin/users/index?page=2"),
    ("//evil.example/x", "/"),
    ("https://evil.example/", "/"),
    ("/\\evil.example", "/"),
    ("", "/"),
    (None, "/"),
])
def test_only_local_paths_are_redirect_targets(target: str | None, expected: str) -> None:
    assert safe_target(target) == expected


def _request(body: bytes) -> Request:
    chunks = [body[i:i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive() -> dict[str, object]:
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    return Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)


def test_a_form_keeps_repeated_fields_and_blank_values() -> None:
    form = asyncio.run(read_form(_request(b"a=1&a=2&b=&c=on&email=+x%40y.test+")))
    assert form["a"] == "2"
    assert form.all("a") == ["1", "2"]
    assert form["b"] == "" and "b" in form
    assert form.flag("c") and not form.flag("b")
    assert form.text("email") == "x@y.test"
    assert form.get("missing") is None and form["missing"] == ""


def test_a_form_over_the_limit_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(FormTooLarge):
        asyncio.run(read_form(_request(b"a=" + b"x" * MAX_FORM_BYTES)))


def test_misps_errors_become_one_message_per_field() -> None:
    error = ApiError(403, "Could not add user.", {"email": ["An account with this email exists."],
                                                   "User": {"org_id": ["Invalid org."]}})
    assert error.field_errors == {"email": "An account with this email exists.",
                                  "org_id": "Invalid org."}
    assert ApiError(404, "Invalid user").field_errors == {}


def test_the_viewer_is_read_from_identitys_session_answer() -> None:
    viewer = viewer_from({"User": {"id": "7", "email": "a@b.test", "org_id": "2",
                                   "change_pw": True},
                          "Role": {"name": "Org Admin", "perm_admin": True},
                          "Organisation": {"name": "ORG"}, "csrf_token": "tok"})
    assert (viewer.id, viewer.org_id, viewer.email) == (7, 2, "a@b.test")
    assert viewer.is_admin and not viewer.is_site_admin and viewer.change_pw
    check_csrf(viewer, "tok")
    for wrong in ("", None, "tok2"):
        with pytest.raises(BadCsrfToken):
            check_csrf(viewer, wrong)
    with pytest.raises(BadCsrfToken):
        check_csrf(viewer_from({}), "")


def test_filters_become_misps_named_parameters() -> None:
    assert named({"value": " alice ", "searchorg": "", "disabled": "1"}) == \
        "/value:alice/disabled:1"
    assert named({"value": "a/b"}) == "/value:a b"


def test_small_rendering_helpers() -> None:
    assert query_string({"a": "1", "b": "", "c": None, "d": "x y"}) == "?a=1&d=x%20y"
    assert when(0) == "" and when("2026-01-01") == "2026-01-01"
    assert when(86400) == "1970-01-02 00:00 UTC"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
