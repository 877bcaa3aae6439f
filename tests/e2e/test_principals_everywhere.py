"""Authorization everywhere (ARCHITECTURE §4), through the real processes and the gateway.

The test publishes identity's and orgs' contract events on their topics, as those services
will; every service's consumer process builds its own principals projection from them, and its
API then accepts the key. Revoking the key reaches every service within a second or so.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid

import httpx

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyDeleted,
    AuthKeyState,
    RoleCreated,
    RoleState,
    UserCreated,
    UserState,
)
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_contracts.topics import SERVICES
from misp_platform.auth import authkey_hmac, generate_authkey
from misp_platform.kafka import create_producer

GATEWAY = os.environ.get("MISP_GATEWAY_URL", "http://127.0.0.1:8080")
AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled "
               "user along in the Authorization header.")


async def publish(bootstrap: str, events: list[tuple[str, DomainEvent]]) -> None:
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for subject, event in events:
            source = "/" + event.type.split(".")[1]
            envelope = Envelope(source=source, type=event.type, subject=subject,
                                actor=Actor.system(), data=event.model_dump(mode="json"))
            headers, value = to_kafka(envelope)
            await producer.send_and_wait(event.topic, value=value, key=subject.encode(),
                                         headers=headers)
    finally:
        await producer.stop()


async def statuses(client: httpx.AsyncClient, key: str) -> dict[str, int]:
    responses = await asyncio.gather(*(
        client.get(f"{GATEWAY}/api/v1/{s}/whoami", headers={"Authorization": key})
        for s in SERVICES))
    return {s: r.status_code for s, r in zip(SERVICES, responses, strict=True)}


async def wait_for(client: httpx.AsyncClient, key: str, status: int,
                   timeout_s: float = 30) -> float:
    started = time.monotonic()
    while True:
        seen = await statuses(client, key)
        if all(code == status for code in seen.values()):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not every service answered {status} in {timeout_s}s: {seen}")
        await asyncio.sleep(0.02)


async def test_a_key_published_by_identity_works_on_every_service_and_revocation_reaches_all(
        kafka_bootstrap: str) -> None:
    pepper = os.environ["MISP_PEPPER"]
    ids = random.randint(10**6, 10**9)
    org = OrganisationState(id=ids, uuid=str(uuid.uuid4()), name=f"e2e-org-{ids}")
    role = RoleState(id=ids, name=f"e2e-role-{ids}", permission=3, perm_auth=True,
                     perm_audit=True)
    user = UserState(id=ids, uuid=str(uuid.uuid4()), email=f"e2e-{ids}@example.test",
                     org_id=org.id, role_id=role.id)
    key = generate_authkey()
    authkey = AuthKeyState(id=ids, uuid=str(uuid.uuid4()), user_id=user.id,
                           key_hmac=authkey_hmac(pepper, key), authkey_start=key[:4],
                           authkey_end=key[-4:])
    await publish(kafka_bootstrap, [
        (org.uuid, OrganisationCreated(organisation=org)),
        (str(role.id), RoleCreated(role=role)),
        (user.uuid, UserCreated(user=user)),
        (authkey.uuid, AuthKeyCreated(authkey=authkey)),
    ])
    async with httpx.AsyncClient(timeout=10) as client:
        await wait_for(client, key, 200)
        me = (await client.get(f"{GATEWAY}/api/v1/orgs/whoami",
                               headers={"X-MISP-AUTH": key})).json()
        assert me["User"] == {"id": str(user.id), "email": user.email}
        assert me["Organisation"]["name"] == org.name

        revoked_at = time.monotonic()
        await publish(kafka_bootstrap, [(authkey.uuid, AuthKeyDeleted(
            authkey_id=authkey.id, user_id=user.id, key_hmac=authkey.key_hmac))])
        await wait_for(client, key, 403)
        propagation = time.monotonic() - revoked_at
        print(f"revocation reached all {len(SERVICES)} services in {propagation * 1000:.0f} ms")
        refused = await client.get(f"{GATEWAY}/api/v1/jobs/whoami",
                                   headers={"Authorization": key})
        assert refused.json() == {"name": AUTH_FAILED, "message": AUTH_FAILED,
                                  "url": "/api/v1/jobs/whoami"}
