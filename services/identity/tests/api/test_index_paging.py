"""Identity's indexes page as every MISP index does (misp_platform.misp.paging): `page` and
`limit` as named params or in the query, in id order, after the filters (a filter that runs in
Python pages its result); bad values are ignored (page 1, no limit) and no limit means every
row up to MISP_INDEX_MAX_ROWS."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

HUGE = "9" * 20


async def ids(identity: Any, path: str, model: str, key: str | None = None) -> list[str]:
    response = await identity.call("GET", path, key or identity.admin_key)
    assert response.status_code == 200, response.text
    return [r[model]["id"] for r in response.json()]


def slices(every: list[str], size: int) -> list[list[str]]:
    return [every[i:i + size] for i in range(0, len(every), size)]


async def test_users_and_authkeys_page_in_sql_and_after_a_search(
        identity: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = secrets.token_hex(4)
    added = [await identity.add_user(email=f"pg-{tag}-{i}@example.test", role_id="3")
             for i in range(4)]
    every = await ids(identity, "/admin/users/index", "User")
    assert len(every) == 5 and every == sorted(every, key=int)
    assert await ids(identity, "/admin/users/index/page:2/limit:2", "User") == every[2:4]
    assert await ids(identity, "/admin/users/index?page=3&limit=2", "User") == every[4:]
    assert await ids(identity, "/admin/users/index/page:4/limit:2.json", "User") == []
    assert await ids(identity, "/admin/users/index/page:\u00b2/limit:2", "User") == every[:2]
    for bad in ("limit:-1", f"limit:{HUGE}", "limit:\u00b2", "page:3"):
        assert await ids(identity, f"/admin/users/index/{bad}", "User") == every, bad
    # The search runs in Python: the page is a slice of the users it kept.
    found = [u["id"] for u in added]
    assert await ids(identity, f"/admin/users/index/value:{tag}", "User") == found
    for page, part in enumerate(slices(found, 3), start=1):
        assert await ids(identity, f"/admin/users/index/value:{tag}/page:{page}/limit:3",
                         "User") == part
    assert await ids(identity, f"/admin/users/index/searchemail:{tag}/page:3/limit:3",
                     "User") == []

    keys = await ids(identity, "/auth_keys/index", "AuthKey")
    assert keys[0] == "1"  # the site admin's
    assert len(keys) == 5 and keys == sorted(keys, key=int)
    assert await ids(identity, "/auth_keys/index/page:2/limit:3", "AuthKey") == keys[3:]
    assert await ids(identity, "/auth_keys/index?page=1&limit=1", "AuthKey") == keys[:1]
    mine = await ids(identity, "/auth_keys/index/me/page:1/limit:5", "AuthKey",
                     key=added[0]["authkey"])
    assert len(mine) == 1
    # An org admin never sees a site admin's key: that check runs after the query.
    org_admin = (await identity.add_user(role_id="2"))["authkey"]
    visible = await ids(identity, "/auth_keys/index", "AuthKey", key=org_admin)
    assert len(visible) == 5 and keys[0] not in visible
    assert await ids(identity, "/auth_keys/index/page:2/limit:4", "AuthKey",
                     key=org_admin) == visible[4:]
    seen = await ids(identity, "/admin/users/index", "User", key=org_admin)
    assert await ids(identity, "/admin/users/index/page:1/limit:2", "User",
                     key=org_admin) == seen[:2]
    every.append(seen[-1])
    monkeypatch.setenv("MISP_INDEX_MAX_ROWS", "2")
    assert await ids(identity, "/admin/users/index", "User") == every[:2]
    assert await ids(identity, f"/admin/users/index/value:{tag}", "User") == found[:2]
    assert await ids(identity, "/auth_keys/index/page:2/limit:50", "AuthKey") == keys[2:4]


async def test_roles_registrations_and_user_settings_page(identity: Any) -> None:
    roles = await ids(identity, "/roles/index", "Role")
    assert len(roles) >= 4 and roles == sorted(roles, key=int)
    assert await ids(identity, "/roles/index/page:2/limit:2", "Role") == roles[2:4]
    assert await ids(identity, f"/roles/index/page:{len(roles) + 1}/limit:1", "Role") == []
    admins = await ids(identity, "/roles/index/name:admin", "Role")
    assert len(admins) >= 2
    assert await ids(identity, "/roles/index/name:admin/page:2/limit:1", "Role") == admins[1:2]

    await identity.set_setting("Security.allow_self_registration", True)
    for i in range(3):
        done = await identity.call("POST", "/users/register",
                                   json={"email": f"reg-{i}-{secrets.token_hex(4)}@ex.test"})
        assert done.status_code == 200, done.text
    inbox = await ids(identity, "/users/registrations/index", "Inbox")
    assert len(inbox) == 3
    assert await ids(identity, "/users/registrations/index/page:2/limit:2", "Inbox") == inbox[2:]
    assert await ids(identity, "/users/registrations?page=1&limit=2", "Inbox") == inbox[:2]

    for i in range(3):
        user = await identity.add_user(role_id="3")
        done = await identity.call("POST", "/userSettings/setSetting", user["authkey"],
                                   json={"setting": "homepage", "value": {"path": f"/{i}"}})
        assert done.status_code == 200, done.text
    settings = await ids(identity, "/userSettings/index", "UserSetting")
    assert len(settings) == 3 and settings == sorted(settings, key=int)
    assert await ids(identity, "/userSettings/index/page:2/limit:2", "UserSetting") \
        == settings[2:]
    assert await ids(identity, "/userSettings/index/page:3/limit:\u00b2", "UserSetting") \
        == settings
