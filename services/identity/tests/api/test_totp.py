"""TOTP two-factor login as MISP does it: enrolment (users/totp_new), the code step of a login
(users/otp), OTP required with perm_skip_otp, an admin's removal (users/totp_delete), codes good
once, pending logins short-lived and of few attempts; no secret in any event. Codes come from
pyotp at a fake clock (the app's `clock`), never from waiting."""

from __future__ import annotations

import json
import time

import pyotp
from sqlalchemy import select

from identity.adapters.tables import user_totp
from identity.handlers.login import SESSION_COOKIE
from identity.handlers.second_step import OTP_COOKIE
from misp_platform.db import event, outbox

PASSWORD = "Correct-Horse-9battery"


class Clock:
    """The app's clock, moved by the test (whole 30-second steps)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()) // 30 * 30 + 5)

    def __call__(self) -> float:
        return self.now

    def code(self, secret: str, steps: int = 0) -> str:
        return pyotp.TOTP(secret).at(self.now + 30 * steps)


def _clock(identity) -> Clock:
    clock = Clock()
    identity.app.state.clock = clock
    return clock


async def _user(identity, **fields) -> dict:
    return await identity.add_user(password=PASSWORD, change_pw=False, **fields)


async def _login(identity, email: str):
    return await identity.client.post("/users/login", json={"email": email, "password": PASSWORD})


async def _enrol(identity, clock: Clock, key: str) -> str:
    shown = await identity.call("GET", "/users/totp_new", key)
    assert shown.status_code == 200, shown.text
    secret = shown.json()["secret"]
    done = await identity.call("POST", "/users/totp_new", key, json={"otp": clock.code(secret)})
    assert done.status_code == 200, done.text
    return secret


async def _otp(identity, pending: str, code: str):
    return await identity.client.post("/users/otp", json={"User": {"otp": code}},
                                      cookies={OTP_COOKIE: pending})


async def test_an_enrolled_user_logs_in_with_a_code_that_is_good_once(identity) -> None:
    clock = _clock(identity)
    user = await _user(identity)
    shown = await identity.call("GET", "/users/totp_new", user["authkey"])
    assert shown.status_code == 200, shown.text
    body = shown.json()
    secret = body["secret"]
    assert body["provisioning_uri"].startswith("otpauth://totp/ORGNAME%20MISP:")
    assert f"secret={secret}" in body["provisioning_uri"]
    assert body["qrcode"].startswith("<svg") and "style" not in body["qrcode"]
    wrong = await identity.call("POST", "/users/totp_new", user["authkey"], json={"otp": "000000"})
    assert wrong.status_code == 400
    assert wrong.json()["message"] == "The OTP is incorrect or has expired."
    enrolled = await identity.call("POST", "/users/totp_new", user["authkey"],
                                   json={"otp": clock.code(secret)})
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["message"] == "The OTP is correct and now active for your account."
    view = (await identity.call("GET", "/users/view/me", user["authkey"])).json()["User"]
    assert view["totp_is_set"] is True  # and the API key is never asked for a code
    again = await identity.call("GET", "/users/totp_new", user["authkey"])
    assert again.status_code == 403 and "already has a TOTP" in again.json()["message"]

    login = await _login(identity, user["email"])
    assert login.status_code == 302 and login.headers["location"] == "/users/otp"
    assert SESSION_COOKIE not in login.cookies
    pending = login.cookies[OTP_COOKIE]
    assert "httponly" in login.headers["set-cookie"].lower()
    assert (await identity.client.get("/api/v1/identity/session",
                                      cookies={OTP_COOKIE: pending})).status_code == 403
    refused = await _otp(identity, pending, "123456")
    assert refused.status_code == 403
    assert refused.json()["message"] == "The OTP is incorrect or has expired"
    replayed = await _otp(identity, pending, clock.code(secret))  # the enrolment's code
    assert replayed.status_code == 403
    clock.now += 30
    code = clock.code(secret)
    ok = await _otp(identity, pending, code)
    assert ok.status_code == 200, ok.text
    assert ok.json()["User"]["id"] == user["id"]
    session = ok.cookies[SESSION_COOKIE]
    me = await identity.client.get("/api/v1/identity/session", cookies={SESSION_COOKIE: session})
    assert me.status_code == 200
    used = await _otp(identity, pending, code)  # the pending login is used up
    assert used.status_code == 403 and "log in again" in used.json()["message"]
    second = (await _login(identity, user["email"])).cookies[OTP_COOKIE]
    assert (await _otp(identity, second, code)).status_code == 403  # a code is good once

    async with identity.engine.connect() as conn:
        stored = (await conn.execute(select(user_totp.c.secret))).scalars().all()
        rows = (await conn.execute(select(outbox.c.payload, outbox.c.headers))).all()
        events = [json.dumps(r.data) for r in await conn.execute(select(event.c.data))]
    payloads = [bytes(r.payload).decode() for r in rows]
    assert stored and secret not in stored[0]
    assert not [p for p in payloads + events if secret in p or pending in p or session in p]
    assert any("totp-set" in json.dumps(r.headers) for r in rows)
    titles = [json.loads(p).get("title") for p in payloads]
    assert f"User ({user['id']}): {user['email']} wrong OTP token" in titles
    assert f"User ({user['id']}): {user['email']} TOTP token created" in titles

    await identity.set_setting("Security.otp_disabled", True)  # MISP: no code asked of anyone
    direct = await _login(identity, user["email"])
    assert direct.status_code == 200 and SESSION_COOKIE in direct.cookies, direct.text
    await identity.set_setting("Security.otp_disabled", False)
    assert (await _login(identity, user["email"])).status_code == 302


async def test_a_pending_login_is_short_lived_has_few_attempts_and_counts_failures(
        identity) -> None:
    clock = _clock(identity)
    await identity.set_setting("SecureAuth.amount", 6)
    user = await _user(identity)
    secret = await _enrol(identity, clock, user["authkey"])
    clock.now += 30
    pending = (await _login(identity, user["email"])).cookies[OTP_COOKIE]
    for _ in range(5):
        assert (await _otp(identity, pending, "000000")).status_code == 403
    spent = await _otp(identity, pending, clock.code(secret))
    assert spent.status_code == 403 and "log in again" in spent.json()["message"]
    pending = (await _login(identity, user["email"])).cookies[OTP_COOKIE]
    assert (await _otp(identity, pending, "000000")).status_code == 403  # the sixth failure
    blocked = await _otp(identity, pending, clock.code(secret))
    assert blocked.status_code == 403
    assert "maximum number of login attempts" in blocked.json()["message"]

    other = await _user(identity)
    secret = await _enrol(identity, clock, other["authkey"])
    pending = (await _login(identity, other["email"])).cookies[OTP_COOKIE]
    clock.now += 5 * 60 + 30
    expired = await _otp(identity, pending, clock.code(secret))
    assert expired.status_code == 403 and "expired" in expired.json()["message"]
    identity.client.cookies.clear()
    assert (await identity.client.post("/users/otp", json={"otp": clock.code(secret)})
            ).status_code == 400  # no pending login at all


async def test_otp_required_makes_users_enrol_at_login_unless_their_role_skips_otp(
        identity) -> None:
    clock = _clock(identity)
    await identity.set_setting("Security.otp_required", True)
    await identity.set_setting("Security.otp_issuer", "Example CERT")
    user = await _user(identity)
    login = await _login(identity, user["email"])
    assert login.status_code == 302 and login.headers["location"] == "/users/totp_new"
    assert SESSION_COOKIE not in login.cookies
    pending = login.cookies[OTP_COOKIE]
    # the pending login opens nothing but the enrolment
    assert (await identity.client.get("/users/view/me", cookies={OTP_COOKIE: pending})
            ).status_code == 403
    assert (await _otp(identity, pending, "123456")).status_code == 403
    shown = await identity.client.get("/users/totp_new", cookies={OTP_COOKIE: pending})
    assert shown.status_code == 200, shown.text
    assert "issuer=Example%20CERT" in shown.json()["provisioning_uri"]
    secret = shown.json()["secret"]
    done = await identity.client.post("/users/totp_new", json={"otp": clock.code(secret)},
                                      cookies={OTP_COOKIE: pending})
    assert done.status_code == 200, done.text
    assert done.json()["User"]["totp_is_set"] is True
    session = done.cookies[SESSION_COOKIE]
    assert (await identity.client.get("/api/v1/identity/session",
                                      cookies={SESSION_COOKIE: session})).status_code == 200

    role = (await identity.call("POST", "/admin/roles/add", identity.admin_key, json={
        "name": "service accounts", "perm_skip_otp": True, "permission": "1",
        "perm_auth": True})).json()["Role"]
    skipper = await _user(identity, role_id=role["id"])
    direct = await _login(identity, skipper["email"])
    assert direct.status_code == 200 and direct.cookies[SESSION_COOKIE]
    await _enrol(identity, clock, skipper["authkey"])  # MISP: a set TOTP is asked for anyway
    assert (await _login(identity, skipper["email"])).headers["location"] == "/users/otp"


async def test_an_admin_removes_a_users_totp_as_misp_allows(identity, add_org) -> None:
    clock = _clock(identity)
    await add_org(2, "other org")
    user = await _user(identity)
    await _enrol(identity, clock, user["authkey"])
    plain = await _user(identity)
    foreign_admin = await _user(identity, org_id=2, role_id=2)
    assert (await identity.call("POST", f"/users/totp_delete/{user['id']}", plain["authkey"])
            ).status_code == 403
    assert (await identity.call("POST", f"/users/totp_delete/{user['id']}",
                                foreign_admin["authkey"])).status_code == 404
    org_admin = await _user(identity, role_id=2)
    assert (await identity.call("POST", "/users/totp_delete/1", org_admin["authkey"])
            ).status_code == 404  # never a site admin's
    removed = await identity.call("DELETE", f"/users/totp_delete/{user['id']}",
                                  org_admin["authkey"])
    assert removed.status_code == 200, removed.text
    assert removed.json()["message"] == "User TOTP deleted."
    view = (await identity.call("GET", f"/admin/users/view/{user['id']}", identity.admin_key))
    assert view.json()["User"]["totp_is_set"] is False
    assert (await _login(identity, user["email"])).status_code == 200
    async with identity.engine.connect() as conn:
        titles = [json.loads(bytes(r.payload)).get("title") for r in await conn.execute(
            select(outbox.c.payload).where(outbox.c.topic == "misp.identity.user.v1"))]
    assert f"User ({user['id']}): {user['email']} TOTP deleted" in titles
