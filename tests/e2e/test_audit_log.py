"""The audit log through the real processes and the gateway: identity's events (published on
its topic, as identity does) become MISP Log rows that a site admin finds with PyMISP's search
call, a bad key's 403 is logged as auth_fail, and the chains verify."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid

import httpx

from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyState,
    RoleCreated,
    RoleState,
    UserCreated,
    UserState,
    UserUpdated,
)
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform.auth import authkey_hmac, generate_authkey

from .test_principals_everywhere import publish

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")


async def search(client: httpx.AsyncClient, key: str, body: dict[str, object]) -> httpx.Response:
    return await client.post(f"{GATEWAY}/admin/logs/index", json=body,
                             headers={"Authorization": key, "Accept": "application/json"})


async def poll(client: httpx.AsyncClient, key: str, body: dict[str, object],
               timeout_s: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await search(client, key, body)
        if response.status_code == 200 and response.json():
            rows: list[dict[str, object]] = response.json()
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"no row for {body}: {response.status_code} {response.text}")
        await asyncio.sleep(0.1)


async def test_identity_events_become_searchable_log_rows_through_the_gateway(
        kafka_bootstrap: str) -> None:
    pepper = os.environ["MISP_PEPPER"]
    ids = random.randint(10**6, 10**9)
    org = OrganisationState(id=ids, uuid=str(uuid.uuid4()), name=f"e2e-audit-org-{ids}")
    role = RoleState(id=ids, name=f"e2e-audit-role-{ids}", permission=3, perm_auth=True,
                     perm_audit=True, perm_site_admin=True, perm_admin=True)
    user = UserState(id=ids, uuid=str(uuid.uuid4()), email=f"e2e-audit-{ids}@example.test",
                     org_id=org.id, role_id=role.id)
    key = generate_authkey()
    authkey = AuthKeyState(id=ids, uuid=str(uuid.uuid4()), user_id=user.id,
                           key_hmac=authkey_hmac(pepper, key), authkey_start=key[:4],
                           authkey_end=key[-4:])
    renamed = user.model_copy(update={"email": f"e2e-audit-{ids}-renamed@example.test"})
    await publish(kafka_bootstrap, [
        (org.uuid, OrganisationCreated(organisation=org)),
        (str(role.id), RoleCreated(role=role)),
        (user.uuid, UserCreated(user=user)),
        (authkey.uuid, AuthKeyCreated(authkey=authkey)),
        (user.uuid, UserUpdated(user=renamed, changes={"email": (user.email, renamed.email)})),
    ])
    async with httpx.AsyncClient(timeout=10) as client:
        rows = await poll(client, key, {"model": "User", "model_id": ids, "action": "edit"})
        log = rows[0]["Log"]
        assert isinstance(log, dict)
        assert log["change"] == f"email ({user.email}) => ({renamed.email})"
        assert log["title"] == f"User ({ids}): {renamed.email}"
        added = await poll(client, key, {"title": f"%{org.name}%", "action": "add"})
        assert added[0]["Log"]["model"] == "Organisation"  # type: ignore[index]

        bad = "x" * 40
        refused = await client.get(f"{GATEWAY}/admin/logs/index",
                                   headers={"Authorization": bad})
        assert refused.status_code == 403
        fails = await poll(client, key, {"action": "auth_fail",
                                         "title": "%xxxx********************************xxxx%"})
        assert fails[-1]["Log"]["email"] == "SYSTEM"  # type: ignore[index]

        verified = await client.get(f"{GATEWAY}/api/v1/audit/verify",
                                    headers={"Authorization": key})
        assert verified.status_code == 200
        assert verified.json()["ok"] is True, verified.json()
