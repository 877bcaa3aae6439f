"""Temporary passwords from the mailer (its `TemporaryPasswordIssued`, only an argon2id hash) and
a user's "forgot password" (`users/forgot`, a command to the mailer through the outbox).

The credential events go through identity's real consumer runner (its processed marks included),
fed with Kafka records built in-process."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import select

from identity.bootstrap import spec
from identity.handlers.password_reset import FORGOT_DISABLED, FORGOT_SENT
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import AUTH_TOPIC, USER_TOPIC
from misp_contracts.events.mailer import (
    CREDENTIAL_TOPIC,
    MAILER_COMMANDS_TOPIC,
    SendPasswordReset,
    TemporaryPasswordIssued,
)
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import outbox
from misp_platform.testing import consumer_record

ADMIN = Actor(user_id=1, email="admin@admin.test", org_id=1, org_name="ORGNAME",
              client_ip="198.51.100.9", request_id="req-reset")
TEMPORARY = "Temporary-Pass-7word"



def _issued(user: dict[str, Any], password: str = TEMPORARY, *,
            email: str | None = None) -> tuple[Envelope, str]:
    password_hash = PasswordHasher().hash(password)
    event = TemporaryPasswordIssued(credential_id=str(uuid.uuid4()), user_id=int(user["id"]),
                                    email=email or user["email"], password_hash=password_hash,
                                    reason="password_reset")
    return Envelope(source="/mailer", type=event.type, subject=event.credential_id, actor=ADMIN,
                    data=event.model_dump(mode="json")), password_hash


def _runner(identity) -> ConsumerRunner:  # type: ignore[no-untyped-def]
    return ConsumerRunner(service="identity", group="identity-test", engine=identity.engine,
                          bootstrap_servers="unused:9092",
                          handlers=spec.handlers(identity.settings), topics=[CREDENTIAL_TOPIC])


async def _outbox(identity, topic: str) -> list[tuple[dict[str, Any], bytes]]:  # type: ignore[no-untyped-def]
    async with identity.engine.connect() as conn:
        rows = (await conn.execute(select(outbox.c.headers, outbox.c.payload)
                                   .where(outbox.c.topic == topic)
                                   .order_by(outbox.c.position))).all()
    return [(dict(r.headers) if isinstance(r.headers, dict)
             else {k: v for k, v in r.headers}, bytes(r.payload)) for r in rows]


async def _login(identity, email: str, password: str):  # type: ignore[no-untyped-def]
    return await identity.call("POST", "/users/login",
                               json={"User": {"email": email, "password": password}})


async def test_a_temporary_password_from_the_mailer_becomes_the_password_once(identity) -> None:
    assert CREDENTIAL_TOPIC in spec.topics(identity.settings)
    user = await identity.add_user(password="Old-Password-1234567", change_pw=False)
    envelope, password_hash = _issued(user)
    runner = _runner(identity)
    await runner.process([consumer_record(CREDENTIAL_TOPIC, envelope, 0)])
    response = await _login(identity, user["email"], TEMPORARY)
    assert response.status_code == 200, response.text
    assert response.json()["User"]["change_pw"] in (True, "1", 1)
    assert (await _login(identity, user["email"], "Old-Password-1234567")).status_code == 403

    user_events = await _outbox(identity, USER_TOPIC)
    auth_events = await _outbox(identity, AUTH_TOPIC)
    updated = [json.loads(p) for _, p in user_events if b'"changes"' in p]
    assert updated, user_events
    changes = updated[-1]["changes"]
    assert {"change_pw", "last_pw_change"} <= set(changes)
    assert changes["password"] == ["*****", "*****"]
    resets = [json.loads(p) for _, p in auth_events
              if b"Password reset by e-mail (password_reset)" in p]
    assert len(resets) == 1 and resets[0]["user_id"] == int(user["id"])
    everything = b"".join([p + json.dumps(h).encode()
                           for h, p in [*user_events, *auth_events]])
    assert password_hash.encode() not in everything
    assert b"admin@admin.test" in everything  # the envelope's actor: the audit shows who

    # A redelivery (same message) and a replay without the processed mark change nothing.
    before = len(await _outbox(identity, USER_TOPIC)), len(await _outbox(identity, AUTH_TOPIC))
    await runner.process([consumer_record(CREDENTIAL_TOPIC, envelope, 0)])
    await _runner(identity).process([consumer_record(CREDENTIAL_TOPIC, envelope.model_copy(
        update={"id": str(uuid.uuid4())}), 1)])
    after = len(await _outbox(identity, USER_TOPIC)), len(await _outbox(identity, AUTH_TOPIC))
    assert after == before


async def test_a_temporary_password_for_a_changed_address_or_unknown_user_is_skipped(
        identity) -> None:
    user = await identity.add_user(password="Old-Password-1234567", change_pw=False)
    mismatched, _ = _issued(user, email=f"other-{secrets.token_hex(4)}@example.test")
    unknown, _ = _issued({"id": 999_999, "email": "nobody@example.test"})
    before = len(await _outbox(identity, USER_TOPIC))
    await _runner(identity).process([consumer_record(CREDENTIAL_TOPIC, mismatched, 0),
                                     consumer_record(CREDENTIAL_TOPIC, unknown, 1)])
    assert len(await _outbox(identity, USER_TOPIC)) == before
    assert (await _login(identity, user["email"], TEMPORARY)).status_code == 403
    assert (await _login(identity, user["email"], "Old-Password-1234567")).status_code == 200


async def test_forgot_password_is_refused_with_misp_body_while_the_setting_is_off(
        identity) -> None:
    response = await identity.call("POST", "/users/forgot", json={"email": "a@example.test"})
    assert response.status_code == 403
    assert response.json()["message"] == FORGOT_DISABLED
    assert await _outbox(identity, MAILER_COMMANDS_TOPIC) == []


async def test_forgot_password_asks_the_mailer_without_telling_who_has_an_account(
        identity) -> None:
    await identity.set_setting("Security.allow_password_forgotten", True)
    user = await identity.add_user()
    known = await identity.call("POST", "/users/forgot", json={"email": user["email"].upper()})
    unknown = await identity.call("POST", "/users/forgot",
                                  json={"User": {"email": "nobody-here@example.test"}})
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json() == {"message": FORGOT_SENT}
    commands = await _outbox(identity, MAILER_COMMANDS_TOPIC)
    assert len(commands) == 1
    headers, payload = commands[0]
    assert SendPasswordReset.type in json.dumps(headers)
    # Identity's copy of the user at its stream's version: the mailer's projection may be behind.
    assert json.loads(payload) == {"user_id": int(user["id"]), "email": user["email"],
                                   "org_id": int(user["org_id"]), "gpgkey": None, "version": 1}

    bad = await identity.call("POST", "/users/forgot", json={"email": "not an address"})
    assert bad.status_code == 400 and "message" in bad.json()


async def test_forgot_password_requests_are_limited_per_ip_and_address(identity) -> None:
    await identity.set_setting("Security.allow_password_forgotten", True)
    await identity.set_setting("SecureAuth.amount", 2)
    user = await identity.add_user()
    for _ in range(4):
        response = await identity.call("POST", "/users/forgot", json={"email": user["email"]})
        assert response.status_code == 200 and response.json() == {"message": FORGOT_SENT}
    assert len(await _outbox(identity, MAILER_COMMANDS_TOPIC)) == 2
    # The login of the same address is not affected by the forgot requests.
    login = await _login(identity, user["email"], "wrong-password")
    assert login.status_code == 403 and "maximum number" not in login.text
