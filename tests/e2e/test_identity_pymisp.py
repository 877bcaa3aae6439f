"""Identity through the gateway with PyMISP's own calls (issue 4 §11), and a key made by
identity working on, then revoked from, every service."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from pymisp import MISPRole, MISPUser, PyMISP

from misp_contracts.topics import SERVICES

from .support import GATEWAY, admin_key


def wait_everywhere(key: str, status: int, timeout_s: float = 30) -> None:
    """Until every service's whoami answers `status` to `key` (a failed test after the
    deadline)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5) as client:
        while True:
            codes = {s: client.get(f"{GATEWAY}/api/v1/{s}/whoami",
                                   headers={"Authorization": key}).status_code
                     for s in SERVICES}
            if all(c == status for c in codes.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not all {status} after {timeout_s}s: {codes}")
            time.sleep(0.05)


@pytest.fixture
def undo() -> Iterator[ExitStack]:
    """Callbacks that put back what a test made or changed, run (last first) whatever happens."""
    with ExitStack() as stack:
        yield stack


def delete_user_if_left(misp: PyMISP, user: MISPUser) -> None:
    if misp.users(search=user.email, pythonify=True):
        deleted = misp.delete_user(user)
        assert deleted.get("success") is True, deleted


def delete_role_if_left(misp: PyMISP, role: MISPRole) -> None:
    if any(r.id == role.id for r in misp.roles(pythonify=True)):
        deleted = misp.delete_role(role)
        assert deleted.get("success") is True, deleted


def default_role(misp: PyMISP) -> object:
    return next((r.id for r in misp.roles(pythonify=True) if r.default_role), None)


def put_default_role_back(misp: PyMISP, before: object) -> None:
    if before is not None and default_role(misp) != before:
        assert misp.set_default_role(before)["message"] == "Default role set."


def test_pymisp_drives_users_roles_and_keys(undo: ExitStack) -> None:
    misp = PyMISP(GATEWAY, admin_key(), ssl=False)
    assert misp._current_role.perm_site_admin  # from users/view/me

    user = MISPUser()
    user.email = f"pymisp-{secrets.token_hex(4)}@example.test"
    user.org_id = 1
    user.role_id = 3
    created = misp.add_user(user, pythonify=True)
    assert isinstance(created, MISPUser), created
    undo.callback(delete_user_if_left, misp, created)  # the test deletes it: after a failure
    wait_everywhere(created.authkey, 200)

    as_user = PyMISP(GATEWAY, created.authkey, ssl=False)
    me = as_user.get_user(pythonify=True)
    assert me.email == user.email
    created.autoalert = True
    updated = misp.update_user(created, pythonify=True)
    assert updated.autoalert is True
    assert [u.email for u in misp.users(search=user.email, pythonify=True)] == [user.email]
    assert misp.get_user(created.id, pythonify=True).email == user.email

    new_key = misp.get_new_authkey(created)
    assert len(new_key) == 40
    changed = as_user.change_user_password("Another-Password-42")
    assert changed["message"] == "Password Changed."

    role = MISPRole()
    role.name = f"pymisp-role-{secrets.token_hex(3)}"
    added = misp.add_role(role, pythonify=True)
    assert isinstance(added, MISPRole), added
    undo.callback(delete_role_if_left, misp, added)  # the test deletes it: after a failure
    # (put back before the role is deleted: it may be the default when a failure stops here)
    undo.callback(put_default_role_back, misp, default_role(misp))
    assert added.perm_add is False and added.perm_site_admin is False
    added.max_execution_time = "1234"
    assert misp.update_role(added, pythonify=True).max_execution_time == "1234"
    assert misp.set_default_role(added)["message"] == "Default role set."
    assert misp.set_default_role(3)["message"] == "Default role set."
    assert any(r.name == role.name for r in misp.roles(pythonify=True))
    assert misp.delete_role(added)["success"] is True

    assert misp.delete_user(created)["message"] == "User deleted."
    wait_everywhere(created.authkey, 403)


def test_a_deleted_key_is_refused_by_every_service() -> None:
    """The time it takes is a figure of bench/auth.py (deletion -> refused by jobs)."""
    key = admin_key()
    headers = {"Authorization": key, "Accept": "application/json"}
    with httpx.Client(timeout=10) as client:
        added = client.post(f"{GATEWAY}/auth_keys/add/me", json={"comment": "e2e"},
                            headers=headers)
        assert added.status_code == 200, added.text
        raw, key_id = added.json()["AuthKey"]["authkey_raw"], added.json()["AuthKey"]["id"]
        try:
            wait_everywhere(raw, 200)
        except BaseException:
            # a key of the site admin's, which the test deletes below: not left behind
            client.post(f"{GATEWAY}/auth_keys/delete/{key_id}", headers=headers)
            raise
        deleted = client.post(f"{GATEWAY}/auth_keys/delete/{key_id}", headers=headers)
        assert deleted.status_code == 200 and deleted.json()["message"] == "AuthKey deleted.", (
            deleted.text)
        wait_everywhere(raw, 403)
        refused = client.get(f"{GATEWAY}/api/v1/jobs/whoami", headers={"Authorization": raw})
        assert refused.json()["message"].startswith("Authentication failed."), refused.text
