"""The first run's roles and site admin, and `users/view/me` as PyMISP's constructor reads it."""

from __future__ import annotations

import os
import stat

from identity.handlers.first_run import key_path


async def test_the_site_admin_key_from_the_first_run_opens_users_view_me(identity) -> None:
    response = await identity.call("GET", "/users/view/me.json", identity.admin_key)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["User"]["email"] == "admin@admin.test"
    assert body["User"]["id"] == "1" and body["User"]["role_id"] == "1"
    assert body["User"]["change_pw"] is True and body["User"]["password"] == "*****"
    assert "authkey" not in body["User"]
    assert body["Role"]["name"] == "admin"
    assert body["Role"]["perm_site_admin"] is True and body["Role"]["perm_admin"] is True
    assert body["UserSetting"] == []
    assert body["Organisation"]["id"] == "1" and body["Organisation"]["name"] == "ORGNAME"


async def test_the_key_file_is_private(identity) -> None:
    path = key_path(identity.settings.state_dir)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(path.read_text().strip()) == 40


async def test_the_six_seeded_roles_have_misp_ids_names_and_levels(identity) -> None:
    roles = (await identity.call("GET", "/roles/index", identity.admin_key)).json()

    by_id = {r["Role"]["id"]: r["Role"] for r in roles}
    assert {i: r["name"] for i, r in by_id.items()} == {
        "1": "admin", "2": "Org Admin", "3": "User", "4": "Publisher", "5": "Sync user",
        "6": "Read Only"}
    assert [by_id[str(i)]["permission"] for i in range(1, 7)] == ["3", "3", "2", "3", "3", "0"]
    assert by_id["3"]["default_role"] is True and by_id["3"]["default"] is True
    assert by_id["5"]["perm_sync"] is True and by_id["4"]["perm_sync"] is False
    assert by_id["6"]["perm_auth"] is True and by_id["6"]["perm_add"] is False
    assert by_id["1"]["perm_skip_otp"] is False and "perm_full" not in by_id["1"]
    assert by_id["2"]["perm_admin"] is True and by_id["2"]["perm_site_admin"] is False


async def test_seeding_twice_changes_nothing(identity) -> None:
    from identity.handlers.first_run import seed

    assert await seed(identity.engine, pepper=identity.settings.pepper.get_secret_value(),
                      state_dir=identity.settings.state_dir)
    roles = (await identity.call("GET", "/roles/index", identity.admin_key)).json()
    assert len(roles) == 6
    again = await identity.call("GET", "/users/view/me", identity.admin_key)
    assert again.status_code == 200


async def test_users_view_me_shows_the_users_settings_by_name(identity) -> None:  # type: ignore[no-untyped-def]
    user = await identity.add_user(role_id=3)
    for name, value in (("homepage", {"path": "/x"}), ("dashboard", [1])):
        done = await identity.call("POST", "/userSettings/setSetting", user["authkey"],
                                   json={"setting": name, "value": value})
        assert done.status_code == 200, done.text
    view = (await identity.call("GET", "/users/view/me", user["authkey"])).json()
    assert list(view["UserSetting"]) == ["dashboard", "homepage"]
    assert view["UserSetting"]["homepage"] == {"path": "/x"}
    assert view["Role"]["id"] == "3" and view["Role"]["default_role"] is True
    assert view["Organisation"]["id"] == view["User"]["org_id"]
