"""users/login and logout, sessions, brute-force protection (atomic), forced logout."""

from __future__ import annotations

import asyncio
import json
import secrets

import httpx
from sqlalchemy import select

from identity.handlers.login import BAD_CREDENTIALS, SESSION_COOKIE
from misp_contracts.events.identity import SESSION_TOPIC
from misp_platform.auth.abuse import AbuseGuard
from misp_platform.auth.principals import lookup_sessions
from misp_platform.auth.sessions import CSRF_HEADER, CSRF_REFUSED, csrf_token, session_hmac
from misp_platform.db import outbox

PASSWORD = "Correct-Horse-9battery"


async def _user_with_password(identity) -> dict:
    return await identity.add_user(password=PASSWORD, change_pw=False)


async def test_json_and_form_login_open_a_session_and_logout_ends_it(identity) -> None:
    user = await _user_with_password(identity)
    response = await identity.call("POST", "/users/login",
                                   json={"User": {"email": user["email"], "password": PASSWORD}})
    assert response.status_code == 200, response.text
    assert response.json()["User"]["email"] == user["email"]
    token = response.cookies.get(SESSION_COOKIE)
    assert token
    me = await identity.client.get("/api/v1/identity/session",
                                   cookies={SESSION_COOKIE: token})
    assert me.status_code == 200 and me.json()["User"]["id"] == user["id"]
    assert me.json()["csrf_token"] == csrf_token(identity.settings.pepper.get_secret_value(),
                                                 token)
    form = await identity.client.post("/users/login", content=(
        f"data[User][email]={user['email']}&data[User][password]={PASSWORD}").encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200
    out = await identity.client.post("/users/logout", cookies={SESSION_COOKIE: token},
                                     headers={CSRF_HEADER: me.json()["csrf_token"]})
    assert out.status_code == 200
    after = await identity.client.get("/api/v1/identity/session",
                                      cookies={SESSION_COOKIE: token})
    assert after.status_code == 403
    view = (await identity.call("GET", "/users/view/me", user["authkey"])).json()
    assert view["User"]["current_login"] != "0"


async def _login_from(identity, peer: str, email: str, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=identity.app, client=(peer, 4444))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post("/users/login", json={"email": email, "password": PASSWORD},
                                 headers=headers)


async def test_the_session_cookie_is_secure_when_the_gateway_says_https(identity) -> None:
    """X-Forwarded-Proto counts from a trusted proxy only (loopback: the gateway sets it)."""
    user = await _user_with_password(identity)
    cookie = {}
    for name, peer, proto in (("gateway https", "127.0.0.1", "https"),
                              ("gateway http", "127.0.0.1", "http"),
                              ("client says https", "203.0.113.7", "https")):
        response = await _login_from(identity, peer, user["email"], **{"X-Forwarded-Proto": proto})
        assert response.status_code == 200, response.text
        cookie[name] = response.headers["set-cookie"].lower()
        assert cookie[name].startswith(f"{SESSION_COOKIE.lower()}=") and "httponly" in cookie[name]
    assert "; secure" in cookie["gateway https"]
    assert "; secure" not in cookie["gateway http"]
    assert "; secure" not in cookie["client says https"]


async def test_logout_is_post_only(identity) -> None:
    user = await _user_with_password(identity)
    response = await identity.call("POST", "/users/login",
                                   json={"email": user["email"], "password": PASSWORD})
    token = response.cookies.get(SESSION_COOKIE)
    get = await identity.client.get("/users/logout", cookies={SESSION_COOKIE: token})
    assert get.status_code == 405
    assert get.json() == {"name": "Method Not Allowed", "message": "Method Not Allowed",
                          "url": "/users/logout"}
    still = await identity.client.get("/api/v1/identity/session", cookies={SESSION_COOKIE: token})
    assert still.status_code == 200  # the GET ended nothing
    assert (await identity.client.post("/users/logout", cookies={SESSION_COOKIE: token},
                                       headers={CSRF_HEADER: still.json()["csrf_token"]})
            ).status_code == 200


async def test_a_logout_by_cookie_needs_the_csrf_token_and_one_without_a_session_does_not(
        identity) -> None:
    """Else any page could log the user out (its form posts with the user's cookie)."""
    user = await _user_with_password(identity)
    response = await identity.call("POST", "/users/login",
                                   json={"email": user["email"], "password": PASSWORD})
    token = response.cookies.get(SESSION_COOKIE)
    for headers in ({}, {CSRF_HEADER: "0" * 64}):
        refused = await identity.client.post("/users/logout", cookies={SESSION_COOKIE: token},
                                             headers=headers)
        assert refused.status_code == 403
        assert refused.json() == {"name": CSRF_REFUSED, "message": CSRF_REFUSED,
                                  "url": "/users/logout"}
    still = await identity.client.get("/api/v1/identity/session", cookies={SESSION_COOKIE: token})
    assert still.status_code == 200
    async with identity.engine.connect() as conn:
        recorded = [json.loads(r.payload) for r in await conn.execute(
            select(outbox.c.payload).where(outbox.c.topic == "misp.identity.auth.v1"))]
    assert any(r.get("reason") == "csrf" and r.get("user_id") == int(user["id"]) for r in recorded)
    # No cookie, or the cookie of no live session: "Logged out." as before.
    stale = await identity.client.post("/users/logout",
                                       cookies={SESSION_COOKIE: secrets.token_urlsafe(32)})
    assert stale.status_code == 200
    fresh = httpx.AsyncClient(transport=httpx.ASGITransport(app=identity.app),
                              base_url="http://testserver")
    async with fresh:
        assert (await fresh.post("/users/logout")).status_code == 200


async def test_sessions_are_published_by_their_hmac_and_end_with_a_reason(identity) -> None:
    """Every service's principals projection learns them from the session topic; identity's
    own holds them at once. The token never leaves identity's answer to the browser."""
    user = await _user_with_password(identity)
    pepper = identity.settings.pepper.get_secret_value()
    tokens = []
    for _ in range(2):
        response = await identity.call("POST", "/users/login",
                                       json={"email": user["email"], "password": PASSWORD})
        tokens.append(response.cookies.get(SESSION_COOKIE))
    me = await identity.client.get("/users/view/me", headers={
        "Cookie": f"{SESSION_COOKIE}={tokens[0]}"})
    assert me.status_code == 200 and me.json()["User"]["id"] == user["id"]
    out = await identity.client.post("/users/logout", cookies={SESSION_COOKIE: tokens[0]},
                                     headers={CSRF_HEADER: csrf_token(pepper, tokens[0])})
    assert out.status_code == 200
    forced = await identity.call("POST", f"/api/v1/identity/users/{user['id']}/logout",
                                 identity.admin_key)
    assert forced.status_code == 200
    async with identity.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.payload, outbox.c.message_key).where(
            outbox.c.topic == SESSION_TOPIC).order_by(outbox.c.position))).all()
        live = await lookup_sessions(conn, [session_hmac(pepper, t) for t in tokens])
    mine = [(json.loads(r.payload), r.message_key) for r in rows]
    digests = [session_hmac(pepper, t) for t in tokens]
    mine = [(data, key) for data, key in mine if data["session_hmac"] in digests]
    assert [(d["session_hmac"], d.get("reason")) for d, _ in mine] == [
        (digests[0], None), (digests[1], None), (digests[0], "logout"),
        (digests[1], "forced_logout")]
    keys = {key for _, key in mine}  # the user's stream: their session events stay ordered
    assert len(keys) == 1 and None not in keys
    assert all(not any(t in json.dumps(d) for t in tokens) for d, _ in mine)
    assert live == []


async def test_a_wrong_password_is_refused_with_misp_message(identity) -> None:
    user = await _user_with_password(identity)
    response = await identity.call("POST", "/users/login",
                                   json={"email": user["email"], "password": "nope"})
    assert response.status_code == 403 and response.json()["message"] == BAD_CREDENTIALS


async def test_fifty_concurrent_wrong_passwords_let_at_most_the_limit_through(identity) -> None:
    user = await _user_with_password(identity)

    async def attempt() -> str:
        response = await identity.call("POST", "/users/login",
                                       json={"email": user["email"], "password": "wrong"})
        assert response.status_code == 403
        return response.json()["message"]

    messages = await asyncio.gather(*(attempt() for _ in range(50)))
    checked = [m for m in messages if m == BAD_CREDENTIALS]
    blocked = [m for m in messages if m.startswith("You have reached the maximum number of "
                                                   "login attempts. Please wait 300 seconds")]
    assert len(checked) == 5 and len(blocked) == 45
    # Even the right password is now refused, until an admin lifts the block.
    right = await identity.call("POST", "/users/login",
                                json={"email": user["email"], "password": PASSWORD})
    assert right.status_code == 403 and right.json()["message"].startswith("You have reached")
    lifted = await identity.call("POST", "/api/v1/identity/bruteforce/lift", identity.admin_key,
                                 json={"username": user["email"]})
    assert lifted.status_code == 200, lifted.text
    again = await identity.call("POST", "/users/login",
                                json={"email": user["email"], "password": PASSWORD})
    assert again.status_code == 200
    async with identity.engine.connect() as conn:
        payloads = [bytes(r.payload) for r in await conn.execute(select(outbox.c.payload))]
    failures = [p for p in payloads if b"login-failed" in p or b"Failed login attempt" in p]
    assert len(failures) == 5
    assert sum(b"Blocked against bruteforcing." in p for p in payloads) == 1


async def test_an_admin_can_force_a_logout(identity) -> None:
    user = await _user_with_password(identity)
    tokens = []
    for _ in range(2):
        response = await identity.call("POST", "/users/login",
                                       json={"email": user["email"], "password": PASSWORD})
        tokens.append(response.cookies.get(SESSION_COOKIE))
    forced = await identity.call("POST", f"/api/v1/identity/users/{user['id']}/logout",
                                 identity.admin_key)
    assert forced.status_code == 200 and forced.json()["message"] == "2 session(s) ended."
    for token in tokens:
        response = await identity.client.get("/api/v1/identity/session",
                                             cookies={SESSION_COOKIE: token})
        assert response.status_code == 403


async def test_a_disabled_user_cannot_log_in(identity) -> None:
    user = await identity.add_user(password=PASSWORD, disabled=True)
    response = await identity.call("POST", "/users/login",
                                   json={"email": user["email"], "password": PASSWORD})
    assert response.status_code == 403


async def test_repeated_bad_key_failures_are_recorded_once_an_hour(identity) -> None:
    bad = "a" * 36 + secrets.token_hex(2)
    for _ in range(3):
        response = await identity.call("GET", "/users/view/me", bad)
        assert response.status_code == 403
    async with identity.engine.connect() as conn:
        payloads = [bytes(r.payload) for r in await conn.execute(select(outbox.c.payload))]
    assert sum(b"Failed authentication using API key" in p for p in payloads) == 1
    await identity.set_setting("Security.log_each_individual_auth_fail", True)
    identity.client._transport.app.state.log_each_individual_auth_fail = True  # type: ignore[attr-defined]
    for _ in range(2):
        await identity.call("GET", "/users/view/me", bad)
    async with identity.engine.connect() as conn:
        payloads = [bytes(r.payload) for r in await conn.execute(select(outbox.c.payload))]
    assert sum(b"Failed authentication using API key" in p for p in payloads) == 3


async def test_an_address_past_its_failure_budget_gets_429_at_login_before_argon2_or_a_write(
        identity) -> None:
    """The platform's failure budget (misp_platform.auth.abuse) guards the password login too:
    past it, even the right password gets a 429 and no login_fail event is written."""
    user = await _user_with_password(identity)
    before = identity.app.state.abuse_guard
    identity.app.state.abuse_guard = AbuseGuard((), budget=3, window_s=60)
    try:
        for _ in range(3):
            wrong = await identity.call("POST", "/users/login",
                                        json={"email": user["email"], "password": "wrong"})
            assert wrong.status_code == 403 and wrong.json()["message"] == BAD_CREDENTIALS
        for password in ("wrong", PASSWORD):
            refused = await identity.call("POST", "/users/login",
                                          json={"email": user["email"], "password": password})
            assert refused.status_code == 429, refused.text
            assert 0 < int(refused.headers["Retry-After"]) <= 60
    finally:
        identity.app.state.abuse_guard = before
    async with identity.engine.connect() as conn:
        payloads = [bytes(r.payload) for r in await conn.execute(select(outbox.c.payload))]
    assert sum(b"Failed login attempt" in p for p in payloads) == 3
