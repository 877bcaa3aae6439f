"""admin/users/*, users/view, users/edit, change_pw: MISP's shapes, messages and rules."""

from __future__ import annotations

import asyncio
import secrets

from sqlalchemy import func, select

from identity.adapters.tables import user_account
from misp_platform.db import event, outbox

NO_PERMISSION = "You do not have permission to use this functionality."


async def test_an_added_user_gets_a_working_key_and_misp_defaults(identity) -> None:
    user = await identity.add_user(org_id="1", role_id="3")

    assert len(user["authkey"]) == 40 and user["password"] == "******"
    assert user["change_pw"] is True and user["disabled"] is False
    assert user["invited_by"] == "1" and len(user["nids_sid"]) == 7
    me = await identity.call("GET", "/users/view/me", user["authkey"])
    assert me.status_code == 200 and me.json()["User"]["id"] == user["id"]
    assert me.json()["Role"]["perm_admin"] is False


async def test_without_role_the_default_role_is_used(identity) -> None:
    user = await identity.add_user()
    assert user["role_id"] == "3" and user["org_id"] == "1"


async def test_duplicate_email_is_refused_case_insensitively(identity) -> None:
    user = await identity.add_user()
    again = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                json={"email": user["email"].upper()})
    assert again.status_code == 403
    assert again.json()["saved"] is False
    assert again.json()["errors"] == {"email": ["An account with this email address already "
                                                "exists."]}


async def test_concurrent_adds_of_one_email_create_one_user(identity) -> None:
    email = f"race-{secrets.token_hex(4)}@example.test"
    responses = await asyncio.gather(*(
        identity.call("POST", "/admin/users/add", identity.admin_key, json={"email": email})
        for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] + [403] * 7
    async with identity.engine.connect() as conn:
        count = (await conn.execute(select(func.count()).select_from(user_account).where(
            func.lower(user_account.c.email) == email))).scalar()
    assert count == 1


async def test_bad_input_gets_misp_4xx_and_writes_nothing(identity) -> None:
    async with identity.engine.connect() as conn:
        before = (await conn.execute(select(func.count()).select_from(event))).scalar()
    cases = [
        ({"email": "not-an-email"}, 403),
        ({"email": "a@b.test", "role_id": "999"}, 405),
        ({"email": "a@b.test", "role_id": "abc"}, 403),
        ({"email": "a@b.test", "org_id": "999"}, 403),
        ({"email": "x" * 300 + "@b.test"}, 403),
        ({"email": "a@b.test", "disabled": "maybe"}, 403),
        ({"email": "a@b.test", "password": "short"}, 403),
        ({"email": ["a@b.test"]}, 403),
        ({"email": "a@b.test", "gpgkey": "not a key"}, 403),
    ]
    for body, status in cases:
        response = await identity.call("POST", "/admin/users/add", identity.admin_key, json=body)
        assert response.status_code == status, (body, response.text)
        assert "message" in response.json()
    malformed = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                    content=b"{not json", headers={
                                        "Content-Type": "application/json"})
    assert malformed.status_code == 405 and "Invalid JSON" in malformed.json()["message"]
    async with identity.engine.connect() as conn:
        after = (await conn.execute(select(func.count()).select_from(event))).scalar()
    assert after == before


async def test_unknown_role_is_misp_405_invalid_role(identity) -> None:
    response = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                   json={"email": "r@example.test", "role_id": "999"})
    assert response.status_code == 405 and response.json()["message"] == "Invalid role"


async def test_password_policy_uses_misp_messages(identity) -> None:
    short = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                json={"email": "p1@example.test", "password": "Ab1"})
    assert "Password length requirement not met." in short.json()["errors"]["password"]
    simple = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                 json={"email": "p2@example.test", "password": "abcdefghijkl"})
    assert simple.json()["errors"]["password"] == ["Password complexity requirement not met."]
    long_ok = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                  json={"email": "p3@example.test",
                                        "password": "abcdefghijklmnopq"})
    assert long_ok.status_code == 200


async def test_admin_edit_records_changes_and_refuses_bad_values(identity) -> None:
    user = await identity.add_user()
    response = await identity.call("POST", f"/admin/users/edit/{user['id']}", identity.admin_key,
                                   json={"autoalert": False, "termsaccepted": True,
                                         "password": "*****", "totp": "*****",
                                         "id": "999", "date_modified": "1"})
    assert response.status_code == 200, response.text
    assert response.json()["User"]["termsaccepted"] is True
    assert response.json()["User"]["id"] == user["id"]
    async with identity.engine.connect() as conn:
        rows = (await conn.execute(select(event.c.data).where(
            event.c.type == "misp.identity.user.updated.v1"))).all()
    assert rows[-1].data["changes"]["termsaccepted"] == [False, True]
    bad = await identity.call("POST", f"/admin/users/edit/{user['id']}", identity.admin_key,
                              json={"role_id": "777"})
    assert bad.status_code == 405
    missing = await identity.call("POST", "/admin/users/edit/99999", identity.admin_key,
                                  json={"autoalert": True})
    assert missing.status_code == 404 and missing.json()["message"] == "Invalid user"


async def test_a_password_change_never_puts_the_password_in_an_event(identity) -> None:
    user = await identity.add_user()
    password = "Secret-" + secrets.token_hex(8)
    changed = await identity.call("POST", "/users/change_pw", user["authkey"],
                                  json={"password": password})
    assert changed.status_code == 200 and changed.json()["message"] == "Password Changed."
    same = await identity.call("POST", "/users/change_pw", user["authkey"],
                               json={"password": password})
    assert same.status_code == 403
    assert same.json()["message"] == ("Submitted new password cannot be the same as the "
                                      "current one")
    async with identity.engine.connect() as conn:
        payloads = [bytes(r.payload) for r in await conn.execute(select(outbox.c.payload))]
        events = [str(r.data) for r in await conn.execute(select(event.c.data))]
    assert not any(password.encode() in p for p in payloads)
    assert not any(password in e for e in events)
    assert not any(user["authkey"] in e for e in events)


async def test_users_view_other_id_is_404_for_non_site_admin(identity) -> None:
    user = await identity.add_user()
    other = await identity.add_user()
    response = await identity.call("GET", f"/users/view/{other['id']}", user["authkey"])
    assert response.status_code == 404
    assert response.json()["message"] == "Invalid user or not authorised."
    admin_sees = await identity.call("GET", f"/users/view/{other['id']}", identity.admin_key)
    assert admin_sees.status_code == 200


async def test_self_edit_changes_only_self_service_fields(identity) -> None:
    user = await identity.add_user()
    response = await identity.call("POST", f"/users/edit/{user['id']}", user["authkey"],
                                   json={"autoalert": True, "role_id": "1", "org_id": "5"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["User"]["autoalert"] is True and body["User"]["role_id"] == "3"
    assert body["Role"]["name"] == "User"


async def test_delete_user_removes_the_user_and_its_keys(identity) -> None:
    user = await identity.add_user()
    assert (await identity.call("GET", "/users/view/me", user["authkey"])).status_code == 200
    response = await identity.call("POST", f"/admin/users/delete/{user['id']}",
                                   identity.admin_key)
    assert response.json() == {"saved": True, "success": True, "name": "User deleted.",
                               "message": "User deleted.",
                               "url": f"/admin/users/delete/{user['id']}", "id": user["id"]}
    gone = await identity.call("GET", "/users/view/me", user["authkey"])
    assert gone.status_code == 403


async def test_index_filters(identity) -> None:
    tag = secrets.token_hex(4)
    a = await identity.add_user(email=f"alpha-{tag}@example.test")
    await identity.add_user(email=f"beta-{tag}@example.test", disabled=True)
    found = (await identity.call("GET", f"/admin/users/index/value:alpha-{tag}",
                                 identity.admin_key)).json()
    assert [u["User"]["id"] for u in found] == [a["id"]]
    disabled = (await identity.call("GET", f"/admin/users/index/searchemail:{tag}"
                                           "/searchdisabled:1", identity.admin_key)).json()
    assert [u["User"]["email"] for u in disabled] == [f"beta-{tag}@example.test"]
    negated = (await identity.call("GET", f"/admin/users/index/searchemail:{tag}|nothing"
                                          f"/value:!beta", identity.admin_key)).json()
    assert [u["User"]["id"] for u in negated] == [a["id"]]
    assert found[0]["Organisation"] == {"id": "1", "name": "ORGNAME"}
    assert set(found[0]["Role"]) == {"id", "name", "perm_auth", "perm_site_admin", "perm_admin"}


async def test_heartbeat_needs_no_key(identity) -> None:
    response = await identity.call("GET", "/users/heartbeat")
    assert response.status_code == 200
