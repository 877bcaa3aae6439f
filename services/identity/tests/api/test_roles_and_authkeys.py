"""Roles (add/edit/delete/set_default) and advanced authkeys (add/index/view/edit/delete/reset)."""

from __future__ import annotations

import secrets

NO_PERMISSION = "You do not have permission to use this functionality."


async def test_role_lifecycle_with_misp_messages(identity) -> None:
    name = f"analyst-{secrets.token_hex(3)}"
    added = await identity.call("POST", "/admin/roles/add", identity.admin_key,
                                json={"name": name, "perm_audit": True, "permission": "1"})
    assert added.status_code == 200, added.text
    role = added.json()["Role"]
    assert role["perm_audit"] is True and role["perm_sync"] is False
    assert role["perm_add"] is True and role["perm_publish"] is False
    assert role["permission"] == "1" and role["permission_description"] == "manage_own"
    duplicate = await identity.call("POST", "/admin/roles/add", identity.admin_key,
                                    json={"name": name.upper()})
    assert duplicate.status_code == 403
    assert duplicate.json()["errors"] == {"name": ["A role with this name already exists."]}

    edited = await identity.call("POST", f"/admin/roles/edit/{role['id']}", identity.admin_key,
                                 json={"max_execution_time": "1234", "perm_tagger": True})
    assert edited.json()["Role"]["max_execution_time"] == "1234"
    assert edited.json()["Role"]["permission"] == "1"  # kept when omitted

    user = await identity.add_user(role_id=role["id"])
    refused = await identity.call("POST", f"/admin/roles/delete/{role['id']}", identity.admin_key)
    assert refused.status_code == 403
    assert refused.json()["errors"] == ("It is not possible to delete role that is assigned to "
                                        "users.")
    set_default = await identity.call("POST", f"/admin/roles/set_default/{role['id']}",
                                      identity.admin_key)
    assert set_default.json()["message"] == "Default role set."
    bad = await identity.call("POST", "/admin/roles/set_default/9999", identity.admin_key)
    assert bad.status_code == 403 and bad.json()["message"] == "Invalid Role."
    await identity.call("POST", "/admin/roles/set_default/3", identity.admin_key)
    await identity.call("POST", f"/admin/users/delete/{user['id']}", identity.admin_key)
    deleted = await identity.call("POST", f"/admin/roles/delete/{role['id']}", identity.admin_key)
    assert deleted.json()["message"] == "Role deleted."
    assert deleted.json()["url"] == f"/roles/delete/{role['id']}"


async def test_a_role_edit_takes_effect_on_the_next_request(identity) -> None:
    added = (await identity.call("POST", "/admin/roles/add", identity.admin_key,
                                 json={"name": f"r-{secrets.token_hex(3)}", "perm_auth": True,
                                       "perm_admin": True})).json()["Role"]
    user = await identity.add_user(role_id=added["id"])
    assert (await identity.call("GET", "/admin/users/index", user["authkey"])).status_code == 200
    await identity.call("POST", f"/admin/roles/edit/{added['id']}", identity.admin_key,
                        json={"perm_admin": False})
    denied = await identity.call("GET", "/admin/users/index", user["authkey"])
    assert denied.status_code == 403 and denied.json()["message"] == NO_PERMISSION


async def test_authkeys_lifecycle(identity) -> None:
    user = await identity.add_user()
    added = await identity.call("POST", "/auth_keys/add/me", user["authkey"],
                                json={"comment": "ci", "allowed_ips": "10.0.0.0/8\n192.0.2.1",
                                      "expiration": "2099-01-01", "read_only": True})
    assert added.status_code == 200, added.text
    key = added.json()["AuthKey"]
    raw = key["authkey_raw"]
    assert len(raw) == 40 and key["authkey_start"] == raw[:4] and key["authkey_end"] == raw[-4:]
    assert key["allowed_ips"] == ["10.0.0.0/8", "192.0.2.1/32"] and key["read_only"] is True
    assert "key_hmac" not in key
    # The test client's IP (203.0.113.7) is not allowed.
    refused = await identity.call("GET", "/users/view/me", raw)
    assert refused.status_code == 403
    assert refused.json()["message"] == ("It is not possible to use this Auth key from your IP "
                                         "address")
    listed = (await identity.call("GET", "/auth_keys/index", user["authkey"])).json()
    # Exactly the user's two keys: the one made with the user, and this one.
    assert sorted((k["User"]["id"], k["AuthKey"]["authkey_start"], k["AuthKey"]["authkey_end"])
                  for k in listed) == sorted((user["id"], k[:4], k[-4:])
                                             for k in (user["authkey"], raw))
    assert key["id"] in {k["AuthKey"]["id"] for k in listed}
    edited = await identity.call("POST", f"/auth_keys/edit/{key['id']}", user["authkey"],
                                 json={"allowed_ips": ["203.0.113.0/24"], "comment": "x"})
    assert edited.json()["AuthKey"]["comment"] == "x"
    reading = await identity.call("GET", "/users/view/me", raw)
    assert reading.status_code == 200
    writing = await identity.call("POST", "/auth_keys/add/me", raw, json={})
    assert writing.status_code == 403  # a read-only key writes nothing
    other = await identity.add_user()
    hidden = await identity.call("GET", f"/auth_keys/view/{key['id']}", other["authkey"])
    assert hidden.status_code == 404
    deleted = await identity.call("POST", f"/auth_keys/delete/{key['id']}", user["authkey"])
    assert deleted.json()["message"] == "AuthKey deleted."
    assert (await identity.call("GET", "/users/view/me", raw)).status_code == 403


async def test_resetauthkey_replaces_every_key(identity) -> None:
    user = await identity.add_user()
    assert (await identity.call("GET", "/users/view/me", user["authkey"])).status_code == 200
    response = await identity.call("POST", "/users/resetauthkey/me", user["authkey"])
    assert response.status_code == 200
    new = response.json()["message"].removeprefix("Authkey updated: ")
    assert len(new) == 40
    assert (await identity.call("GET", "/users/view/me", user["authkey"])).status_code == 403
    assert (await identity.call("GET", "/users/view/me", new)).status_code == 200


async def test_an_expired_key_and_a_disabled_user_are_refused(identity) -> None:
    user = await identity.add_user()
    expired = (await identity.call("POST", "/auth_keys/add/me", user["authkey"],
                                   json={"expiration": "1000"})).json()["AuthKey"]
    assert (await identity.call("GET", "/users/view/me",
                                expired["authkey_raw"])).status_code == 403
    await identity.call("POST", f"/admin/users/edit/{user['id']}", identity.admin_key,
                        json={"disabled": True})
    disabled = await identity.call("GET", "/users/view/me", user["authkey"])
    assert disabled.status_code == 403
    assert disabled.json()["message"] == ("Authentication failed. Your user account has been "
                                          "disabled.")
