"""Password reset links (`users/forgot`): identity keeps the sha256 of the token the mailer's
`PasswordResetLinkIssued` carries, one live link per user, and `users/password_reset/<token>` sets
a new password under the policy, once. The events go through identity's real consumer runner."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from sqlalchemy import select

from identity.bootstrap import spec
from identity.handlers import password_reset
from identity.handlers.login import SESSION_COOKIE
from identity.handlers.password_reset import INVALID_LINK
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.mailer import CREDENTIAL_TOPIC, PasswordResetLinkIssued
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import event as event_table
from misp_platform.db import outbox
from misp_platform.testing import consumer_record

ASKER = Actor(email="SYSTEM", org_name="SYSTEM", client_ip="203.0.113.8", request_id="req-l")
OLD = "Old-Password-1234567"
NEW = "Brand-New-Password-7654321"



class Links:
    """Issue links to identity as the mailer would (each a new token, a later issue time)."""

    def __init__(self, identity) -> None:  # type: ignore[no-untyped-def]
        self.identity = identity
        self.offset = 0
        self.runner = ConsumerRunner(service="identity", group="identity-test",
                                     engine=identity.engine, bootstrap_servers="unused:9092",
                                     handlers=spec.handlers(identity.settings),
                                     topics=[CREDENTIAL_TOPIC])

    def envelope(self, user: dict[str, Any], *, ttl: timedelta = timedelta(hours=1),
                 issued: datetime | None = None) -> tuple[str, Envelope]:
        token = secrets.token_urlsafe(32)
        at = issued or datetime.now(UTC)
        event = PasswordResetLinkIssued(
            credential_id=str(uuid.uuid4()), user_id=int(user["id"]), email=user["email"],
            token_hash=hashlib.sha256(token.encode()).hexdigest(), expires_at=at + ttl)
        return token, Envelope(source="/mailer", type=event.type, subject=event.credential_id,
                               actor=ASKER, time=at, data=event.model_dump(mode="json"))

    async def feed(self, envelope: Envelope) -> None:
        await self.runner.process([consumer_record(CREDENTIAL_TOPIC, envelope, self.offset)])
        self.offset += 1

    async def issue(self, user: dict[str, Any], **kwargs: Any) -> str:
        token, envelope = self.envelope(user, **kwargs)
        await self.feed(envelope)
        return token


async def _on(identity) -> Links:  # type: ignore[no-untyped-def]
    await identity.set_setting("Security.allow_password_forgotten", True)
    return Links(identity)


async def _reset(identity, token: str, password: str = NEW,  # type: ignore[no-untyped-def]
                 confirm: str | None = None):
    return await identity.call("POST", f"/users/password_reset/{token}",
                               json={"password": password,
                                     "confirm_password": password if confirm is None else confirm})


async def _login(identity, email: str, password: str):  # type: ignore[no-untyped-def]
    return await identity.call("POST", "/users/login",
                               json={"User": {"email": email, "password": password}})


def _invalid(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["message"] == INVALID_LINK
    assert set(response.json()) >= {"name", "message", "url"}


async def test_a_link_sets_the_password_once_and_ends_the_sessions(identity) -> None:
    links = await _on(identity)
    user = await identity.add_user(password=OLD, change_pw=True)
    session = await _login(identity, user["email"], OLD)
    assert session.status_code == 200
    with structlog.testing.capture_logs() as logs:
        token = await links.issue(user)
        status = await identity.call("GET", f"/users/password_reset/{token}")
        assert status.status_code == 200, status.text
        assert status.json() == {"valid": True, "email": user["email"][0] + "***@example.test"}

        done = await _reset(identity, token)
        assert done.status_code == 200, done.text
        assert "message" in done.json()
    # Single use: the same link again, whichever method, is the one invalid answer.
    _invalid(await _reset(identity, token, "Another-Password-99887766"))
    _invalid(await identity.call("GET", f"/users/password_reset/{token}"))
    # The new password works, change_pw is cleared, the old password and session are gone.
    login = await _login(identity, user["email"], NEW)
    assert login.status_code == 200, login.text
    assert login.json()["User"]["change_pw"] in (False, 0, "0")
    assert (await _login(identity, user["email"], OLD)).status_code == 403
    identity.client.cookies.clear()
    cookie = session.cookies[SESSION_COOKIE]
    gone = await identity.call("GET", "/api/v1/identity/session",
                               headers={"Cookie": f"{SESSION_COOKIE}={cookie}"})
    assert gone.status_code == 403

    # The token is in no event, outbox row or log line of identity; its hash is in no event.
    async with identity.engine.connect() as conn:
        events = [json.dumps(r.data) + json.dumps(r.metadata) for r in await conn.execute(
            select(event_table.c.data, event_table.c.metadata))]
        rows = [bytes(r.payload) + json.dumps(r.headers).encode() for r in await conn.execute(
            select(outbox.c.payload, outbox.c.headers))]
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert any("by a reset link" in e for e in events)
    assert not any(token in e or digest in e for e in events)
    assert not any(token.encode() in r for r in rows)
    assert logs and not any(token in repr(line) for line in logs)


async def test_an_expired_link_is_refused(identity, monkeypatch: pytest.MonkeyPatch) -> None:
    links = await _on(identity)
    user = await identity.add_user(password=OLD)
    token = await links.issue(user, ttl=timedelta(minutes=60))
    assert (await identity.call("GET", f"/users/password_reset/{token}")).status_code == 200
    later = datetime.now(UTC) + timedelta(minutes=61)
    monkeypatch.setattr(password_reset, "now", lambda: later)
    _invalid(await identity.call("GET", f"/users/password_reset/{token}"))
    _invalid(await _reset(identity, token))
    assert (await _login(identity, user["email"], OLD)).status_code == 200


async def test_a_second_link_invalidates_the_first_and_a_replay_changes_nothing(
        identity) -> None:
    links = await _on(identity)
    user = await identity.add_user(password=OLD)
    first_token, first = links.envelope(user, issued=datetime.now(UTC) - timedelta(minutes=1))
    await links.feed(first)
    second = await links.issue(user)
    # The first link again (a redelivery, or out of order): older than the live one.
    await links.feed(first.model_copy(update={"id": str(uuid.uuid4())}))
    _invalid(await identity.call("GET", f"/users/password_reset/{first_token}"))
    _invalid(await _reset(identity, first_token))
    assert (await _reset(identity, second)).status_code == 200
    # A redelivery of the used link does not bring it back.
    _invalid(await _reset(identity, first_token, "Another-Password-99887766"))
    assert (await _login(identity, user["email"], NEW)).status_code == 200


async def test_a_password_against_the_policy_is_refused_and_the_link_stays(identity) -> None:
    links = await _on(identity)
    user = await identity.add_user(password=OLD)
    token = await links.issue(user)
    short = await _reset(identity, token, "short")
    url = f"/users/password_reset/{token}"
    assert (short.status_code, short.json()) == (403, {
        "saved": False, "name": "Password length requirement not met.",
        "message": "Password length requirement not met.", "url": url,
        "errors": {"password": ["Password length requirement not met.",
                                "Password complexity requirement not met."]}}), short.text
    mismatch = await _reset(identity, token, NEW, confirm=NEW + "x")
    assert (mismatch.status_code, mismatch.json()) == (403, {
        "saved": False, "name": "Password confirmation does not match.",
        "message": "Password confirmation does not match.", "url": url,
        "errors": {"password": ["Password confirmation does not match."]}}), mismatch.text
    assert (await identity.call("GET", f"/users/password_reset/{token}")).status_code == 200
    assert (await _reset(identity, token)).status_code == 200


async def test_unknown_links_and_links_not_asked_by_the_user_are_refused_alike(identity) -> None:
    links = await _on(identity)
    user = await identity.add_user(password=OLD)
    _invalid(await identity.call("GET", f"/users/password_reset/{secrets.token_urlsafe(32)}"))
    _invalid(await _reset(identity, "x" * 500))
    # A link event with an acting user (not "forgot password") is not kept.
    token, envelope = links.envelope(user)
    await links.feed(envelope.model_copy(update={"actor": Actor(user_id=1, email="a@b.test")}))
    _invalid(await identity.call("GET", f"/users/password_reset/{token}"))
    # Nor is any while "forgot password" is off.
    await identity.set_setting("Security.allow_password_forgotten", False)
    token = await links.issue(user)
    await identity.set_setting("Security.allow_password_forgotten", True)
    _invalid(await identity.call("GET", f"/users/password_reset/{token}"))


async def test_a_link_clicked_before_identity_applied_it_waits_for_the_consumer(
        identity) -> None:
    """Read-your-writes: an unknown token first catches identity's main group up on the
    credential topic (here a stand-in that applies the pending event), then decides again."""
    from misp_platform.consistency import Consistency

    links = await _on(identity)
    user = await identity.add_user(password=OLD)
    token, pending = links.envelope(user)
    waited: list[tuple[str, list[str]]] = []

    class CatchingUp(Consistency):
        def __init__(self) -> None:  # no Kafka: the consumer is `links`
            pass

        async def caught_up(self, group: str, topics: Any) -> bool:
            waited.append((group, list(topics)))
            if len(waited) == 1:
                await links.feed(pending)
            return True

        def publication_mark(self) -> int | None:
            return None

        async def published(self, positions: Any, *, since: int | None = None) -> bool:
            return True  # the write's answer: not held

    before = getattr(identity.app.state, "consistency", None)
    identity.app.state.consistency = CatchingUp()
    try:
        status = await identity.call("GET", f"/users/password_reset/{token}")
        assert status.status_code == 200, status.text
        assert waited == [(identity.settings.main_group, [CREDENTIAL_TOPIC])]
        assert (await _reset(identity, token)).status_code == 200
        assert len(waited) == 1  # a known link asks Kafka nothing
        _invalid(await _reset(identity, token))  # used: known, so no wait either
        assert len(waited) == 1
    finally:
        identity.app.state.consistency = before
