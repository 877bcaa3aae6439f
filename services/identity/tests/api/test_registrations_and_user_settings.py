"""Self-registration (register, inbox, accept, discard) and user settings (index, setSetting,
getSetting, delete, UserSetting in users/view), in MISP's shapes and messages (§2.9, §3.2)."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select

from identity.adapters.tables import registration, user_account, user_setting
from misp_platform.db import event


def _email(prefix: str = "reg") -> str:
    return f"{prefix}-{secrets.token_hex(5)}@example.test"


async def _count(identity, table) -> int:  # type: ignore[no-untyped-def]
    async with identity.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_register_is_refused_unless_self_registration_is_on(identity) -> None:  # type: ignore[no-untyped-def]
    refused = await identity.call("POST", "/users/register", json={"email": _email()})
    assert refused.status_code == 405
    assert refused.json()["message"] == "Self registration is not enabled on this instance."
    assert await _count(identity, registration) == 0


async def test_register_validates_and_needs_no_key(identity) -> None:  # type: ignore[no-untyped-def]
    await identity.set_setting("Security.allow_self_registration", True)
    no_email = await identity.call("POST", "/users/register", json={"message": "hi"})
    assert no_email.status_code == 400
    assert no_email.json()["message"] == "We require at least the email field to be filled."
    bad = await identity.call("POST", "/users/register", json={"email": "not an email",
                                                               "perm_admin": "maybe"})
    assert bad.status_code == 403 and set(bad.json()["errors"]) == {"email", "perm_admin"}
    malformed = await identity.call("POST", "/users/register", content=b"{not json",
                                    headers={"content-type": "application/json"})
    assert malformed.status_code == 405
    assert await _count(identity, registration) == 0

    email = _email()
    ok = await identity.call("POST", "/users/register", json={
        "User": {"email": email, "org_name": "ACME", "message": "let me in",
                 "perm_publish": True}}, headers={"User-Agent": "reg-test/1"})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"saved": True, "success": True, "name": "User registration submitted.",
                         "message": "User registration submitted.", "url": "/users/register"}

    inbox = await identity.call("GET", "/users/registrations/index", identity.admin_key)
    assert inbox.status_code == 200
    [entry] = [e["Inbox"] for e in inbox.json() if e["Inbox"]["data"]["email"] == email]
    assert entry["type"] == "registration" and entry["title"] == f"User registration for {email}"
    assert entry["ip"] == "203.0.113.7" and entry["user_agent"] == "reg-test/1"
    assert entry["data"] == {"email": email, "org_name": "ACME", "org_uuid": False,
                             "message": "let me in", "custom_perms": False, "pgp": False,
                             "perm_sync": False, "perm_publish": True, "perm_admin": False}
    assert isinstance(entry["id"], str) and entry["deleted"] is False


async def test_only_site_admins_see_and_handle_registrations(identity) -> None:  # type: ignore[no-untyped-def]
    await identity.set_setting("Security.allow_self_registration", True)
    await identity.call("POST", "/users/register", json={"email": _email()})
    org_admin = await identity.add_user(role_id=2)
    for method, path in (("GET", "/users/registrations/index"),
                         ("POST", "/users/acceptRegistrations/1"),
                         ("POST", "/users/discardRegistrations/1")):
        response = await identity.call(method, path, org_admin["authkey"], json={})
        assert response.status_code == 403, (path, response.text)
        assert response.json()["message"] == (
            "You do not have permission to use this functionality.")


async def test_accept_creates_the_user_with_the_default_role_and_closes_the_request(
        identity, add_org) -> None:  # type: ignore[no-untyped-def]
    await identity.set_setting("Security.allow_self_registration", True)
    target = await add_org(7, "Accepting org")
    email = _email()
    await identity.call("POST", "/users/register", json={"email": email})
    # A fresh database: this request is the only one open.
    [entry] = [e["Inbox"] for e in (await identity.call(
        "GET", "/users/registrations/index", identity.admin_key)).json()]
    assert entry["data"]["email"] == email
    path = f"/users/acceptRegistrations/{entry['id']}"

    no_org = await identity.call("POST", path, identity.admin_key, json={"User": {}})
    assert no_org.status_code == 400
    assert no_org.json()["message"] == "No organisation selected. Supply an Organisation ID"
    unknown_org = await identity.call("POST", path, identity.admin_key,
                                      json={"User": {"org_id": "987654"}})
    assert unknown_org.status_code == 403 and unknown_org.json()["errors"] == [
        "Invalid organisation"]
    bad_role = await identity.call("POST", path, identity.admin_key,
                                   json={"User": {"org_id": "7", "role_id": "x"}})
    assert bad_role.status_code == 405
    assert await _count(identity, user_account) == 1  # only the site admin: nothing half-done

    accepted = await identity.call("POST", path, identity.admin_key, json={"User": {
        "org_id": target.uuid, "perm_sync": False, "perm_publish": False, "perm_admin": False}})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["message"] == "Added 1 user(s)."
    async with identity.engine.connect() as conn:
        row = (await conn.execute(select(user_account).where(
            func.lower(user_account.c.email) == email))).one()
        types = (await conn.execute(select(event.c.type).where(
            event.c.type.like("misp.identity.registration.%")))).scalars().all()
    assert (row.org_id, row.role_id) == (7, 3) and row.state["change_pw"] is True
    assert sorted(types) == ["misp.identity.registration.accepted.v1",
                             "misp.identity.registration.submitted.v1"]
    inbox = (await identity.call("GET", "/users/registrations/index", identity.admin_key)).json()
    assert inbox == []  # the one request is closed
    again = await identity.call("POST", path, identity.admin_key, json={"org_id": "7"})
    assert again.status_code == 404 and again.json()["message"] == "Invalid registration."


async def test_accepting_a_taken_email_fails_and_discard_closes_it(identity) -> None:  # type: ignore[no-untyped-def]
    await identity.set_setting("Security.allow_self_registration", True)
    existing = await identity.add_user()
    await identity.call("POST", "/users/register", json={"email": existing["email"].upper()})
    [entry] = [e["Inbox"] for e in (await identity.call(
        "GET", "/users/registrations/index", identity.admin_key)).json()]
    taken = await identity.call("POST", f"/users/acceptRegistrations/{entry['id']}",
                                identity.admin_key, json={"org_id": "1", "role_id": "3"})
    assert taken.status_code == 403
    assert taken.json()["errors"] == {"email": [
        "An account with this email address already exists."]}
    discarded = await identity.call("POST", f"/users/discardRegistrations/{entry['id']}",
                                    identity.admin_key)
    assert discarded.status_code == 200
    assert discarded.json()["name"] == "1 registration(s) discarded."
    assert (await identity.call("GET", "/users/registrations/index",
                                identity.admin_key)).json() == []
    gone = await identity.call("POST", f"/users/discardRegistrations/{entry['id']}",
                               identity.admin_key)
    assert gone.status_code == 404


async def test_user_settings_set_get_index_view_and_delete(identity) -> None:  # type: ignore[no-untyped-def]
    user = await identity.add_user(role_id=3)
    key = user["authkey"]
    homepage = await identity.call("POST", "/userSettings/setSetting", key,
                                   json={"setting": "homepage", "value": {"path": "/x"}})
    assert homepage.status_code == 200, homepage.text
    row = homepage.json()["UserSetting"]
    assert (row["setting"], row["value"], row["user_id"]) == ("homepage", {"path": "/x"},
                                                              str(user["id"]))
    assert isinstance(row["id"], str) and row["timestamp"].isdigit()
    # PyMISP sends a dict value as JSON text: it reads back decoded, as in MISP.
    again = await identity.call("POST", "/userSettings/setSetting", key, json={
        "UserSetting": {"setting": "homepage", "value": '{"path": "/events/index"}'}})
    assert again.json()["UserSetting"]["value"] == {"path": "/events/index"}
    assert again.json()["UserSetting"]["id"] == row["id"]  # the same row, updated

    restricted = await identity.call("POST", "/userSettings/setSetting", key,
                                     json={"setting": "dashboard_access", "value": 1})
    assert restricted.status_code == 405
    assert restricted.json()["message"] == ("This setting is restricted and requires the "
                                            "following permission(s): perm_site_admin")
    for body, message in (({"setting": "nope", "value": 1}, "Invalid setting."),
                          ({"setting": "homepage"},
                           "This endpoint expects both a setting and a value to be set.")):
        refused = await identity.call("POST", "/userSettings/setSetting", key, json=body)
        assert refused.status_code == 405 and refused.json()["message"] == message

    # A plain user naming someone else acts on themself (MISP's fallback); an admin may not be
    # reached that way.
    own = await identity.call("POST", "/userSettings/setSetting", key, json={
        "setting": "event_index_hide_columns", "value": [1, 2], "user_id": "1"})
    assert own.json()["UserSetting"]["user_id"] == str(user["id"])
    by_admin = await identity.call("POST", f"/userSettings/setSetting/{user['id']}/dashboard",
                                   identity.admin_key, json={"value": {"widgets": []}})
    assert by_admin.status_code == 200 and by_admin.json()["UserSetting"]["user_id"] == str(
        user["id"])

    got = await identity.call("POST", "/userSettings/getSetting", key,
                              json={"setting": "homepage"})
    assert got.status_code == 200 and got.json()["value"] == {"path": "/events/index"}
    missing = await identity.call("POST", "/userSettings/getSetting", key,
                                  json={"setting": "publish_alert_filter"})
    assert missing.status_code == 404

    index = (await identity.call("GET", "/userSettings/index", key)).json()
    assert sorted(e["UserSetting"]["setting"] for e in index) == [
        "dashboard", "event_index_hide_columns", "homepage"]
    assert all(e["User"]["email"] == user["email"] for e in index)
    admin_index = (await identity.call("GET", f"/userSettings/index/user_id:{user['id']}",
                                       identity.admin_key)).json()
    assert len(admin_index) == 3
    other = await identity.add_user(role_id=3)
    assert (await identity.call("GET", "/userSettings/index", other["authkey"])).json() == []

    view = (await identity.call("GET", "/users/view/me", key)).json()
    assert view["UserSetting"] == {"dashboard": {"widgets": []},
                                   "event_index_hide_columns": [1, 2],
                                   "homepage": {"path": "/events/index"}}

    deleted = await identity.call("POST", "/userSettings/delete", key,
                                  json={"setting": "homepage"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["message"] == "Setting deleted."
    dashboard_id = by_admin.json()["UserSetting"]["id"]
    by_id = await identity.call("DELETE", f"/userSettings/delete/{dashboard_id}",
                                other["authkey"])
    assert by_id.status_code == 404  # not theirs
    by_id = await identity.call("POST", f"/userSettings/delete/{dashboard_id}", key)
    assert by_id.status_code == 200
    assert (await identity.call("POST", "/userSettings/delete", key,
                                json={"setting": "homepage"})).status_code == 404
    view = (await identity.call("GET", "/users/view/me", key)).json()
    assert view["UserSetting"] == {"event_index_hide_columns": [1, 2]}
    assert await _count(identity, user_setting) == 1


async def test_a_deleted_user_takes_their_settings_along(identity) -> None:  # type: ignore[no-untyped-def]
    user = await identity.add_user(role_id=3)
    await identity.call("POST", "/userSettings/setSetting", user["authkey"],
                        json={"setting": "homepage", "value": {"path": "/y"}})
    assert await _count(identity, user_setting) == 1
    await identity.call("POST", f"/admin/users/delete/{user['id']}", identity.admin_key)
    assert await _count(identity, user_setting) == 0

