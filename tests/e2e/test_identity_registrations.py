"""Self-registration and user settings through the gateway with PyMISP's own calls (issue 4 §8,
§11): `register_user` (no key), `user_registrations`, `accept_user_registration`,
`discard_user_registration`, and the user-setting calls.

Self-registration is switched on through the settings service's API, as a site admin does;
the previous value is set back at the end."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pymisp import MISPInbox, MISPUser, MISPUserSetting, PyMISP, register_user
from sqlalchemy import create_engine, text

from .support import GATEWAY, admin_key

SELF_REGISTRATION = "Security.allow_self_registration"


def identity_setting(name: str) -> Any:
    """The value identity applies (its `setting_value` row), None when it has no override."""
    url = f"{os.environ['MISP_PG_URL']}/misp_identity"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT value FROM setting_value WHERE name = :n"),
                                {"n": name}).scalar()
    finally:
        engine.dispose()


def set_setting(name: str, value: Any) -> Any:
    """Through the settings service's API (as a site admin would): the previous value."""
    headers = {"Authorization": admin_key(), "Accept": "application/json"}
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        before = http.get(f"/servers/serverSettingsEdit/{name}", headers=headers)
        assert before.status_code == 200, before.text
        if before.json()[name] != value:  # (no write, no wait for its readers, when it is)
            r = http.post(f"/servers/serverSettingsEdit/{name}", headers=headers,
                          json={"value": value, "force": True})
            assert r.status_code == 200, r.text
    return before.json()[name]


def wait_setting(name: str, value: Any, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while identity_setting(name) != value:
        if time.monotonic() > deadline:
            raise AssertionError(f"identity did not apply {name}={value!r} in {timeout_s}s")
        time.sleep(0.1)


def _registration(on: bool) -> Iterator[None]:
    previous = set_setting(SELF_REGISTRATION, on)
    wait_setting(SELF_REGISTRATION, on)
    try:
        yield
    finally:
        set_setting(SELF_REGISTRATION, previous)
        wait_setting(SELF_REGISTRATION, previous)


@pytest.fixture
def self_registration() -> Iterator[None]:
    yield from _registration(True)


@pytest.fixture
def no_self_registration() -> Iterator[None]:
    yield from _registration(False)


@pytest.fixture
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=20)


def _inbox_of(misp: PyMISP, email: str) -> MISPInbox:
    found = [i for i in misp.user_registrations(pythonify=True)
             if isinstance(i, MISPInbox) and i.data.get("email") == email]
    assert len(found) == 1, found
    return found[0]


def test_register_then_accept_and_discard_with_pymisp(self_registration: None,
                                                      misp: PyMISP) -> None:
    email = f"register-{secrets.token_hex(4)}@example.test"
    answer = register_user(GATEWAY, email, org_name="Applicants Inc", message="please",
                           perm_publish=True, verify=False)
    assert answer["saved"] is True, answer
    inbox = _inbox_of(misp, email)
    assert inbox.type == "registration"
    assert inbox.data["org_name"] == "Applicants Inc" and inbox.data["perm_publish"] is True

    # Without a role PyMISP picks the role flagged default_role from roles().
    accepted = misp.accept_user_registration(inbox, organisation=1)
    assert accepted.get("message") == "Added 1 user(s).", accepted
    default_role = next(r for r in misp.roles(pythonify=True) if r.default_role)
    [user] = misp.users(search=email, pythonify=True)
    assert isinstance(user, MISPUser)
    assert int(user.org_id) == 1 and int(user.role_id) == int(default_role.id)

    other = f"discard-{secrets.token_hex(4)}@example.test"
    assert register_user(GATEWAY, other, verify=False)["saved"] is True
    # One listing that holds the new request shows the accepted one closed.
    listed = [i.data.get("email") for i in misp.user_registrations(pythonify=True)
              if isinstance(i, MISPInbox)]
    assert (listed.count(email), listed.count(other)) == (0, 1), listed
    discarded = misp.discard_user_registration(_inbox_of(misp, other))
    assert discarded["name"] == "1 registration(s) discarded.", discarded
    assert not misp.users(search=other)
    assert misp.delete_user(user)["success"] is True


def test_register_is_refused_while_self_registration_is_off(no_self_registration: None) -> None:
    answer = register_user(GATEWAY, f"nope-{secrets.token_hex(4)}@example.test", verify=False)
    assert answer["message"] == "Self registration is not enabled on this instance."


def test_user_settings_with_pymisp(misp: PyMISP) -> None:
    new = MISPUser()
    new.email = f"settings-{secrets.token_hex(4)}@example.test"
    new.org_id = 1
    new.role_id = 3
    user = misp.add_user(new, pythonify=True)
    assert isinstance(user, MISPUser), user
    as_user = PyMISP(GATEWAY, user.authkey, ssl=False, timeout=20)
    try:
        home = as_user.set_user_setting("homepage", {"path": "/events/index"}, pythonify=True)
        assert isinstance(home, MISPUserSetting) and home.value == {"path": "/events/index"}
        # A restricted setting: refused to the user, set for them by the site admin.
        refused = as_user.set_user_setting("dashboard_access", 1)
        assert refused["errors"][0] == 405
        assert "perm_site_admin" in refused["errors"][1]["message"]
        granted = misp.set_user_setting("dashboard_access", 1, user=user, pythonify=True)
        assert isinstance(granted, MISPUserSetting) and granted.value == 1
        assert int(granted.user_id) == int(user.id)

        got = as_user.get_user_setting("homepage", pythonify=True)
        assert isinstance(got, MISPUserSetting) and got.value == {"path": "/events/index"}
        listed = as_user.user_settings(pythonify=True)
        assert sorted(s.setting for s in listed) == ["dashboard_access", "homepage"]
        _, _, settings = as_user.get_user(pythonify=True, expanded=True)
        assert {s.name: s.value for s in settings} == {"dashboard_access": 1,
                                                       "homepage": {"path": "/events/index"}}

        assert as_user.delete_user_setting("homepage")["message"] == "Setting deleted."
        assert misp.delete_user_setting("dashboard_access", user=user)["success"] is True
        assert as_user.user_settings() == []
        missing = as_user.get_user_setting("homepage")
        assert missing["errors"][0] == 404
    finally:
        misp.delete_user(user)
