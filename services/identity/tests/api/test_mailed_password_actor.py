"""Identity checks who sent a password by mail before applying it: a `TemporaryPasswordIssued`
whose actor may not manage the user's credentials (misp_contracts.access, the rule the mailer
applies too) changes nothing and is consumed, never retried nor dead-lettered.

The events go through identity's real consumer runner, fed with Kafka records built in-process
(as in test_password_reset.py)."""

from __future__ import annotations

import uuid
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select

from identity.bootstrap import spec
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.mailer import CREDENTIAL_TOPIC, TemporaryPasswordIssued
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import processed_message
from misp_platform.testing import consumer_record

OLD = "Old-Password-1234567"
TEMPORARY = "Temporary-Pass-7word"
ORG_ADMIN_ROLE, USER_ROLE = "2", "3"



def _issued(user: dict[str, Any], actor: Actor, reason: str = "password_reset") -> Envelope:
    event = TemporaryPasswordIssued(
        credential_id=str(uuid.uuid4()), user_id=int(user["id"]), email=user["email"],
        password_hash=PasswordHasher().hash(TEMPORARY), reason=reason)  # type: ignore[arg-type]
    return Envelope(source="/mailer", type=event.type, subject=event.credential_id,
                    actor=actor, data=event.model_dump(mode="json"))


def _actor(user: dict[str, Any]) -> Actor:
    return Actor(user_id=int(user["id"]), email=user["email"], org_id=int(user["org_id"]))


async def _apply(identity, envelope: Envelope, offset: int = 0) -> None:  # type: ignore[no-untyped-def]
    runner = ConsumerRunner(service="identity", group="identity-test", engine=identity.engine,
                            bootstrap_servers="unused:9092",
                            handlers=spec.handlers(identity.settings), topics=[CREDENTIAL_TOPIC])
    await runner.process([consumer_record(CREDENTIAL_TOPIC, envelope, offset)])


async def _password_is(identity, user: dict[str, Any], password: str) -> bool:  # type: ignore[no-untyped-def]
    response = await identity.call("POST", "/users/login",
                                   json={"User": {"email": user["email"], "password": password}})
    return response.status_code == 200


async def _consumed(identity, envelope: Envelope) -> bool:  # type: ignore[no-untyped-def]
    """Handled and marked so (not dead-lettered, not left to be retried)."""
    async with identity.engine.connect() as conn:
        outcome = await conn.scalar(select(processed_message.c.outcome).where(
            processed_message.c.message_id == envelope.id))
    return outcome == "applied"


async def test_identity_ignores_a_password_mailed_by_an_org_admin_to_another_admin_of_their_org(
        identity) -> None:
    org_admin = await identity.add_user(role_id=ORG_ADMIN_ROLE)
    other_admin = await identity.add_user(role_id=ORG_ADMIN_ROLE, password=OLD, change_pw=False)
    site_admin = await identity.add_user(role_id="1", password=OLD, change_pw=False)
    plain = await identity.add_user(role_id=USER_ROLE, password=OLD, change_pw=False)
    assert org_admin["org_id"] == other_admin["org_id"] == plain["org_id"]

    for offset, victim in enumerate((other_admin, site_admin)):
        envelope = _issued(victim, _actor(org_admin))
        await _apply(identity, envelope, offset)

        assert await _consumed(identity, envelope)
        assert not await _password_is(identity, victim, TEMPORARY)
        assert await _password_is(identity, victim, OLD)
    # The same actor's reset of a plain user of their org applies.
    await _apply(identity, _issued(plain, _actor(org_admin)), 5)
    assert await _password_is(identity, plain, TEMPORARY)


async def test_identity_ignores_a_mailed_password_from_an_unknown_actor_or_the_system(
        identity) -> None:
    await identity.set_setting("Security.allow_password_forgotten", False)
    user = await identity.add_user(role_id=USER_ROLE, password=OLD, change_pw=False)
    forged = [_issued(user, Actor(user_id=987_654, email="ghost@example.test", org_id=1)),
              _issued(user, Actor.system()),  # an admin's reset always has an acting user
              _issued(user, Actor.system(), reason="forgot_password")]  # the feature is off

    for offset, envelope in enumerate(forged):
        await _apply(identity, envelope, offset)
        assert await _consumed(identity, envelope)
    assert not await _password_is(identity, user, TEMPORARY)

    # A user's own "forgot password" (the system acting for them) applies once it is on.
    await identity.set_setting("Security.allow_password_forgotten", True)
    await _apply(identity, _issued(user, Actor.system(), reason="forgot_password"), 9)
    assert await _password_is(identity, user, TEMPORARY)
