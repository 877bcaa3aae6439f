"""The table-driven permission test (issue 4 §7): every endpoint against every kind of caller."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

SA, OA, OAX, USER, RO_ROLE, RO_KEY = "site_admin", "org_admin", "other_org_admin", "user", \
    "read_only_role", "read_only_key"
REFUSED = ("disabled_user", "expired_key", "refused_ip_key", "no_key", "malformed_key")


def _email() -> dict[str, Any]:
    return {"email": f"m-{secrets.token_hex(5)}@example.test"}


# (method, path, body factory, {caller: status}); "victim" is a plain user of the org admin's org.
ENDPOINTS: list[tuple[str, str, Any, dict[str, int]]] = [
    ("GET", "/admin/users/index", None, {SA: 200, OA: 200, OAX: 200, USER: 403, RO_ROLE: 403}),
    ("GET", "/admin/users/view/{victim}", None,
     {SA: 200, OA: 200, OAX: 404, USER: 403, RO_ROLE: 403}),
    ("GET", "/admin/users/view/1", None, {SA: 200, OA: 404, OAX: 404, USER: 403, RO_ROLE: 403}),
    ("GET", "/users/view/{victim}", None, {SA: 200, OA: 404, OAX: 404, USER: 404, RO_ROLE: 404}),
    ("GET", "/users/view/me", None, {SA: 200, OA: 200, OAX: 200, USER: 200, RO_ROLE: 200}),
    ("POST", "/admin/users/edit/{victim}", lambda: {"autoalert": True},
     {SA: 200, OA: 200, OAX: 404, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/users/edit/1", lambda: {"autoalert": False},
     {SA: 200, OA: 404, OAX: 404, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/users/edit/{victim}", lambda: {"role_id": "1"},
     {SA: 200, OA: 403, OAX: 404, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/users/add", lambda: {**_email(), "role_id": "1"},
     {SA: 200, OA: 403, OAX: 403, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/users/add", _email, {SA: 200, OA: 200, OAX: 200, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/users/delete/1", None, {OA: 404, OAX: 404, USER: 403, RO_ROLE: 403}),
    ("GET", "/roles/index", None, {SA: 200, OA: 200, OAX: 200, USER: 200, RO_ROLE: 200}),
    ("GET", "/roles/view/3", None, {SA: 200, OA: 200, OAX: 200, USER: 200, RO_ROLE: 200}),
    ("POST", "/admin/roles/add", lambda: {"name": f"r-{secrets.token_hex(4)}"},
     {SA: 200, OA: 403, OAX: 403, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/roles/edit/4", lambda: {"memory_limit": "512M"},
     {SA: 200, OA: 403, OAX: 403, USER: 403, RO_ROLE: 403}),
    ("POST", "/admin/roles/set_default/3", None,
     {SA: 200, OA: 403, OAX: 403, USER: 403, RO_ROLE: 403}),
    ("POST", "/auth_keys/add/{victim}", lambda: {},
     {SA: 200, OA: 200, OAX: 404, USER: 404, RO_ROLE: 404}),
    ("POST", "/auth_keys/add/1", lambda: {}, {SA: 200, OA: 404, OAX: 404, USER: 404,
                                              RO_ROLE: 404}),
    ("POST", "/auth_keys/add/me", lambda: {}, {SA: 200, OA: 200, OAX: 200, USER: 200,
                                               RO_ROLE: 200}),
    ("GET", "/auth_keys/index", None, {SA: 200, OA: 200, OAX: 200, USER: 200, RO_ROLE: 200}),
    ("POST", "/users/resetauthkey/{victim}", None,
     {SA: 200, OA: 200, OAX: 404, USER: 404, RO_ROLE: 404}),
]


@pytest.fixture
async def world(identity, add_org) -> dict[str, Any]:
    await add_org(2)
    await add_org(3)

    async def user(**fields: Any) -> dict[str, Any]:
        return await identity.add_user(**fields)

    oa = await user(org_id="2", role_id="2")
    oax = await user(org_id="3", role_id="2")
    plain = await user(org_id="2", role_id="3")
    ro_role = await user(org_id="2", role_id="6")
    disabled = await user(org_id="2", disabled=True)
    keys: dict[str, str | None] = {SA: identity.admin_key, OA: oa["authkey"], OAX: oax["authkey"],
                                   USER: plain["authkey"], RO_ROLE: ro_role["authkey"],
                                   "disabled_user": disabled["authkey"], "no_key": None,
                                   "malformed_key": "not-a-key"}

    async def extra_key(body: dict[str, Any]) -> str:
        response = await identity.call("POST", "/auth_keys/add/me", plain["authkey"], json=body)
        assert response.status_code == 200, response.text
        return response.json()["AuthKey"]["authkey_raw"]

    keys["expired_key"] = await extra_key({"expiration": "1000"})
    keys[RO_KEY] = await extra_key({"read_only": True})
    keys["refused_ip_key"] = await extra_key({"allowed_ips": ["192.0.2.0/24"]})
    return {"keys": keys}


async def test_every_endpoint_against_every_caller(identity, world) -> None:
    failures = []
    for method, template, body, expected in ENDPOINTS:
        victim = await identity.add_user(org_id="2", role_id="3")
        path = template.format(victim=victim["id"])
        callers = dict(expected)
        callers.update(dict.fromkeys(REFUSED, 403))
        # A read-only key reads as its user (a plain user) and writes nothing.
        callers[RO_KEY] = expected[USER] if method == "GET" else 403
        # The site admin goes last: its successful writes (a promotion) must not change what
        # the others are allowed to do.
        for caller, status in sorted(callers.items(), key=lambda item: item[0] == SA):
            response = await identity.call(method, path, world["keys"][caller],
                                           json=body() if body else None)
            if response.status_code != status or (status != 200
                                                  and "message" not in response.json()):
                failures.append((method, path, caller, status, response.status_code,
                                 response.text[:200]))
    assert not failures, "\n".join(map(str, failures))


async def test_an_org_admin_sees_only_their_own_org_and_no_site_admin(identity, world) -> None:
    listed = (await identity.call("GET", "/admin/users/index", world["keys"][OA])).json()
    assert listed and all(u["User"]["org_id"] == "2" for u in listed)
    assert not any(u["Role"]["perm_site_admin"] for u in listed)
    created = await identity.call("POST", "/admin/users/add", world["keys"][OA],
                                  json={**_email(), "org_id": "3"})
    assert created.json()["User"]["org_id"] == "2"
