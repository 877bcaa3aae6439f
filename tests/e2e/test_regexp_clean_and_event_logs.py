"""Two MISP calls PyMISP has no method for, through the gateway with httpx in MISP's shapes
(issue 17, item 2): `admin/regexp/clean` (site admins only; this product stores no attributes,
so every run finds them all clean) and `logs/event_index/{id}` (the log rows of one event)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest
from pymisp import MISPUser, PyMISP

from .support import GATEWAY, admin_headers, admin_key
from .test_identity_pymisp import wait_everywhere

NO_PERMISSION = "You do not have permission to use this functionality."


@pytest.fixture(scope="module")
def members() -> Iterator[dict[str, str]]:
    """Keys of a new org admin and a new user of the host organisation, deleted afterwards."""
    misp = PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)
    created: dict[str, MISPUser] = {}
    for name, role_id in (("org_admin", 2), ("user", 3)):
        user = MISPUser()
        user.email = f"e2e-{name.replace('_', '-')}-{secrets.token_hex(4)}@example.test"
        user.org_id = 1
        user.role_id = role_id
        created[name] = misp.add_user(user, pythonify=True)
        assert isinstance(created[name], MISPUser), created[name]
    for user in created.values():
        wait_everywhere(user.authkey, 200)
    yield {name: user.authkey for name, user in created.items()}
    for user in created.values():
        misp.delete_user(user)


def _as(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


def test_a_site_admin_cleans_the_attributes_and_finds_nothing_to_change() -> None:
    r = httpx.post(f"{GATEWAY}/admin/regexp/clean", headers=admin_headers())
    assert r.status_code == 200, r.text
    message = "All done! Number of changed attributes: 0 Number of deletions: 0"
    assert r.json() == {"saved": True, "success": True, "name": message, "message": message,
                        "url": "/admin/regexp/clean"}


def test_an_org_admin_or_a_user_may_not_clean(members: dict[str, str]) -> None:
    for key in members.values():
        r = httpx.post(f"{GATEWAY}/admin/regexp/clean", headers=_as(key))
        assert r.status_code == 403, r.text
        assert r.json() == {"name": NO_PERMISSION, "message": NO_PERMISSION,
                            "url": "/admin/regexp/clean"}
