"""Browser sessions everywhere (ARCHITECTURE §4), through the gateway against the running stack.

A user logs in at identity (`users/login`); with nothing but the `MISP-session` cookie they then
call every service, each of which knows the session from its own principals projection (fed by
identity's session topic; read-your-writes covers the call right after the login). A write needs
the session's CSRF token (identity's `GET /api/v1/identity/session` gives it); after the logout
every service refuses the cookie; a user who must change their password may only do that; and
the token itself is never published.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest

from misp_contracts.events.identity import SESSION_TOPIC
from misp_contracts.topics import SERVICES
from misp_platform.auth.sessions import CHANGE_PASSWORD_FIRST, CSRF_REFUSED, session_hmac

from .support import GATEWAY, admin_headers, delete_organisation, delete_user, until
from .test_mailer_no_secrets import records_since, topic_ends

COOKIE = "MISP-session"
# A MISP path of each service the site admin's session may call (and each service's whoami).
MISP_READS = ("/users/view/me", "/organisations/index", "/admin/logs/index",
              "/servers/serverSettings")
AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled "
               "user along in the Authorization header.")


@pytest.fixture
def undo() -> Iterator[ExitStack]:
    """The deletions a test registers as it makes things, run at its end whatever happens (the
    last registered first)."""
    with ExitStack() as stack:
        yield stack


def as_admin(delete: Callable[[httpx.Client, dict[str, str], object], None],
             what: object) -> None:
    """`delete(client, headers, what)` with a site admin's client of its own."""
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        delete(http, admin_headers(), what)


def add_user(http: httpx.Client, undo: ExitStack, *, role_id: int,
             change_pw: bool) -> tuple[str, str]:
    """A fresh user with a known password, deleted at the end of the test: (email, password)."""
    email = f"session-{secrets.token_hex(5)}@example.test"
    password = f"Session-{secrets.token_hex(8)}A1"
    created = http.post("/admin/users/add", headers=admin_headers(),
                        json={"email": email, "org_id": 1, "role_id": role_id,
                              "password": password, "change_pw": 1 if change_pw else 0})
    assert created.status_code == 200, created.text
    undo.callback(as_admin, delete_user, created.json()["User"]["id"])
    return email, password


def login(email: str, password: str) -> str:
    """The session token identity's login sets as the cookie."""
    with httpx.Client(base_url=GATEWAY, timeout=30) as http:
        response = http.post("/users/login", headers={"Accept": "application/json"},
                             json={"User": {"email": email, "password": password}})
        assert response.status_code == 200, response.text
        token = response.cookies.get(COOKIE)
    assert token
    return token


def session_client(token: str) -> httpx.Client:
    """A client that presents the cookie and nothing else (no key)."""
    return httpx.Client(base_url=GATEWAY, timeout=30,
                        headers={"Accept": "application/json", "Cookie": f"{COOKIE}={token}"})


def whoami_statuses(http: httpx.Client) -> dict[str, int]:
    return {s: http.get(f"/api/v1/{s}/whoami").status_code for s in SERVICES}


def test_a_session_works_on_every_service_writes_with_its_csrf_token_and_ends_everywhere(
        undo: ExitStack) -> None:
    bootstrap = os.environ["MISP_KAFKA_BOOTSTRAP_SERVERS"]
    starts = asyncio.run(topic_ends(bootstrap))
    with httpx.Client(base_url=GATEWAY, timeout=30) as admin:
        email, password = add_user(admin, undo, role_id=1, change_pw=False)
    token = login(email, password)
    digest = session_hmac(os.environ["MISP_PEPPER"], token)

    with session_client(token) as http:
        # At once, no waiting: each service catches up with identity if it has to.
        for path in MISP_READS:
            response = http.get(path)
            assert response.status_code == 200, (path, response.text)
        whoami = {s: http.get(f"/api/v1/{s}/whoami") for s in SERVICES}
        assert {s: r.status_code for s, r in whoami.items()} == dict.fromkeys(SERVICES, 200)
        assert all(r.json()["User"]["email"] == email for r in whoami.values()), whoami

        session = http.get("/api/v1/identity/session")
        assert session.status_code == 200 and session.json()["User"]["email"] == email
        csrf = session.json()["csrf_token"]

        name = f"e2e-session-org-{secrets.token_hex(4)}"
        refused = http.post("/admin/organisations/add", json={"name": name})
        assert refused.status_code == 403, refused.text
        assert refused.json() == {"name": CSRF_REFUSED, "message": CSRF_REFUSED,
                                  "url": "/admin/organisations/add"}
        wrong = http.post("/admin/organisations/add", json={"name": name},
                          headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403 and wrong.json()["message"] == CSRF_REFUSED
        # orgs answers its index from its own database: nothing was written.
        listed = http.get("/organisations/index", params={"searchall": name})
        assert listed.status_code == 200
        assert not any(o["Organisation"]["name"] == name for o in listed.json()), listed.json()

        added = http.post("/admin/organisations/add", json={"name": name},
                          headers={"X-CSRF-Token": csrf})
        assert added.status_code == 200, added.text
        undo.callback(as_admin, delete_organisation, added.json()["Organisation"]["id"])
        assert added.json()["Organisation"]["name"] == name

        out = http.post("/users/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200, out.text
        # Every service learns the end from identity's session topic: poll until all refuse.
        until(lambda: set(whoami_statuses(http).values()) == {403},
              "every service refuses the ended session", timeout_s=30)
        for path in MISP_READS:
            gone = http.get(path)
            assert gone.status_code == 403, path
            assert gone.json()["message"] == AUTH_FAILED

    # The session topic carried its start and end by the HMAC; no topic carried the token.
    deadline = time.monotonic() + 30
    while True:
        records = asyncio.run(records_since(bootstrap, starts))
        mine = [r for r in records if digest.encode() in r]
        if (any(b"misp.identity.session.started.v1" in r for r in mine)
                and any(b"misp.identity.session.ended.v1" in r for r in mine)):
            break
        assert time.monotonic() < deadline, f"no session start and end on {SESSION_TOPIC}"
        time.sleep(0.5)
    assert not any(token.encode() in r for r in records)


def test_a_session_whose_user_must_change_the_password_may_only_do_that(
        undo: ExitStack) -> None:
    with httpx.Client(base_url=GATEWAY, timeout=30) as admin:
        email, password = add_user(admin, undo, role_id=3, change_pw=True)
    token = login(email, password)
    with session_client(token) as http:
        assert http.get("/api/v1/identity/session").status_code == 200
        me = http.get("/users/view/me")
        assert me.status_code == 200 and me.json()["User"]["email"] == email
        refused = http.get("/organisations/index")
        assert refused.status_code == 403
        assert refused.json()["message"] == CHANGE_PASSWORD_FIRST
        csrf = http.get("/api/v1/identity/session").json()["csrf_token"]
        changed = http.post("/users/change_pw", headers={"X-CSRF-Token": csrf},
                            json={"password": f"Changed-{secrets.token_hex(8)}B2"})
        assert changed.status_code == 200, changed.text
        # At once: orgs catches up with identity before it refuses.
        after = http.get("/organisations/index")
        assert after.status_code == 200, after.text
