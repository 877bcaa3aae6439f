"""Identity through the gateway with PyMISP's own calls (issue 4 §11), and a key made by
identity working on, then revoked from, every service."""

from __future__ import annotations

import secrets
import time

import httpx
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


def test_pymisp_drives_users_roles_and_keys() -> None:
    misp = PyMISP(GATEWAY, admin_key(), ssl=False)
    assert misp._current_role.perm_site_admin  # from users/view/me

    user = MISPUser()
    user.email = f"pymisp-{secrets.token_hex(4)}@example.test"
    user.org_id = 1
    user.role_id = 3
    created = misp.add_user(user, pythonify=True)
    assert isinstance(created, MISPUser), created
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
        wait_everywhere(raw, 200)
        deleted = client.post(f"{GATEWAY}/auth_keys/delete/{key_id}", headers=headers)
        assert deleted.status_code == 200 and deleted.json()["message"] == "AuthKey deleted.", (
            deleted.text)
        wait_everywhere(raw, 403)
        refused = client.get(f"{GATEWAY}/api/v1/jobs/whoami", headers={"Authorization": raw})
        assert refused.json()["message"].startswith("Authentication failed."), refused.text
