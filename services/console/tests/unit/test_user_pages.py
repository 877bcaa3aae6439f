"""The user screens' pure pieces: the JSON a form becomes, MISP's answers read back (the new key
of a reset, errors that name no field), the choices a form offers."""

from __future__ import annotations

import pytest

from console.forms import Form
from console.gateway import ApiError
from console.pages.authkeys import allowed_ips, expiration_day, key_body
from console.pages.choices import (
    default_role,
    loose_errors,
    org_choices,
    role_choices,
)
from console.pages.common import shown_on_the_form
from console.pages.contact import contact_body, user_choices
from console.pages.registrations import requested_org
from console.pages.users import CONFIRM_MISMATCH, key_of_reset, user_body

ROLES = [
    {"Role": {"id": "1", "name": "admin", "perm_site_admin": True, "default_role": False}},
    {"Role": {"id": "2", "name": "Org Admin", "perm_admin": True, "default_role": False}},
    {"Role": {"id": "3", "name": "User", "default_role": True}},
    {"Role": {"id": "5", "name": "Sync user", "perm_sync": True}},
    {"Role": {"id": "6", "name": "Restricted", "restricted_to_site_admin": True}},
]


def test_an_org_admin_is_offered_only_the_roles_they_may_assign() -> None:
    assert [r[0] for r in role_choices(ROLES, site_admin=True)] == ["1", "2", "3", "5", "6"]
    assert role_choices(ROLES, site_admin=False) == [("2", "Org Admin"), ("3", "User")]
    # the user's current role stays on offer, as MISP lets it stay
    assert [r[0] for r in role_choices(ROLES, site_admin=False, keep="5")] == ["2", "3", "5"]
    assert default_role(ROLES) == "3"
    assert default_role([]) is None


def test_organisations_are_offered_by_name() -> None:
    body = [{"Organisation": {"id": "7", "name": "beta"}},
            {"Organisation": {"id": "2", "name": "Alpha"}}, {"Organisation": {"name": "no id"}}]
    assert org_choices(body) == [("2", "Alpha"), ("7", "beta")]
    assert requested_org(org_choices(body), {"org_name": "ALPHA"}) == "2"
    assert requested_org(org_choices(body), {"org_name": False}) is None


def test_a_user_form_becomes_misps_body() -> None:
    form = Form([("email", " new@x.test "), ("org_id", "4"), ("role_id", "3"),
                 ("nids_sid", ""), ("gpgkey", ""), ("autoalert", "1"),
                 ("password", "Pw-1234567890"), ("confirm_password", "Pw-1234567890")])
    body, errors = user_body(form, creating=True, site_admin=False)
    assert errors == {}
    assert body == {"email": "new@x.test", "org_id": "4", "role_id": "3", "autoalert": True,
                    "contactalert": False, "termsaccepted": False, "change_pw": False,
                    "disabled": False, "password": "Pw-1234567890"}
    # an edit by an org admin never sends the organisation; an empty key clears it
    body, _ = user_body(form, creating=False, site_admin=False)
    assert "org_id" not in body and body["gpgkey"] == ""


def test_a_password_confirmation_that_differs_is_refused_by_the_console() -> None:
    form = Form([("email", "a@x.test"), ("password", "one"), ("confirm_password", "two")])
    _, errors = user_body(form, creating=True, site_admin=True)
    assert errors == {"confirm_password": CONFIRM_MISMATCH}


@pytest.mark.parametrize(("message", "key"), [
    ("Authkey updated: " + "a" * 40, "a" * 40),
    ("Authkey updated: ", None),
    ("User saved", None),
    (None, None),
])
def test_the_new_key_is_read_from_resetauthkeys_message(message: str | None,
                                                         key: str | None) -> None:
    assert key_of_reset(message) == key


def test_a_key_form_becomes_misps_body() -> None:
    form = Form([("comment", " ci "), ("expiration", "2027-01-31"),
                 ("allowed_ips", "10.0.0.1\r\n\r\n 192.168.0.0/16, 10.0.0.2 \n"),
                 ("read_only", "1")])
    assert key_body(form) == {"comment": "ci", "expiration": "2027-01-31", "read_only": True,
                              "allowed_ips": ["10.0.0.1", "192.168.0.0/16", "10.0.0.2"]}
    assert allowed_ips("") == []
    assert key_body(Form([]))["expiration"] == ""  # never
    assert expiration_day("0") == "" and expiration_day("1801353600") == "2027-01-31"


def test_the_contact_form_sends_only_the_chosen_recipients_fields() -> None:
    base = [("action", "0"), ("subject", "Hi"), ("body", "Text"), ("recipientEmailList", "9"),
            ("recipientEmail", "new@x.test"), ("gpg", "")]
    assert contact_body(Form([*base, ("recipient", "1")])) == {
        "action": "0", "recipient": "1", "subject": "Hi", "body": "Text",
        "customMessage": False, "recipientEmailList": "9"}
    future = contact_body(Form([*base, ("recipient", "2"), ("customMessage", "on")]))
    assert future["recipientEmail"] == "new@x.test" and "recipientEmailList" not in future
    assert future["customMessage"] is True and "gpg" not in future
    assert contact_body(Form([]))["recipient"] == "0"
    assert user_choices([{"User": {"id": "2", "email": "b@x"}},
                         {"User": {"id": "1", "email": "A@x"}}]) == [("1", "A@x"), ("2", "b@x")]


@pytest.mark.parametrize(("status", "errors", "on_the_form"), [
    (403, {"email": ["taken"]}, True),   # MISP's validation failure
    (403, None, False),                  # not allowed: a page
    (405, None, True),                   # "Invalid role"
    (400, None, True),
    (404, None, False),
    (401, None, False),
    (500, {"x": ["y"]}, False),
])
def test_a_refused_form_is_told_from_a_refused_page(status: int, errors: object,
                                                     on_the_form: bool) -> None:
    assert shown_on_the_form(ApiError(status, "m", errors)) is on_the_form


def test_errors_that_name_no_field_are_shown_too() -> None:
    assert loose_errors(["Invalid organisation"]) == ["Invalid organisation"]
    assert loose_errors("Broken") == ["Broken"]
    assert loose_errors({"email": ["x"]}) == []
    assert loose_errors(None) == []
