"""Identity's `SendPasswordReset` ("forgot password"), as the consumer handles the command: the
user gets a single-use reset link by mail, only the sha256 of its token is published
(`PasswordResetLinkIssued`), once per command id; a user whose address changed, or who is
disabled, gets nothing."""

from __future__ import annotations

import email
import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from email import policy

from sqlalchemy import select
from sqlalchemy import text as text_sql
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.consumer import command_handlers
from mailer.handlers.compose import Mailer
from mailer.handlers.deliver import Deliverer
from mailer.projections.users import when_user_saved_project
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import UserState, UserUpdated
from misp_contracts.events.mailer import PasswordResetLinkIssued, SendPasswordReset
from misp_platform.db import event as event_table

from ..support import Sink, add_user

LINK_RE = re.compile(r"(\S+)/users/password_reset/([A-Za-z0-9_-]+)")
ASKER = Actor(email="SYSTEM", org_name="SYSTEM", client_ip="203.0.113.8", request_id="req-f")


async def handle(engine: AsyncEngine, mailer: Mailer, command: SendPasswordReset,
                 envelope_id: str) -> None:
    envelope = Envelope(id=envelope_id, source="/identity", type=command.type, actor=ASKER,
                        data=command.model_dump(mode="json"))
    async with engine.begin() as conn:
        await command_handlers(mailer)[command.type](conn, envelope)


async def credentials(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        return [row.data for row in await conn.execute(select(event_table.c.data).where(
            event_table.c.type.in_([PasswordResetLinkIssued.type,
                                    "misp.mailer.credential.issued.v1"])))]


async def test_a_forgotten_password_gets_a_link_once_and_only_its_hash_is_published(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    mailer.gateway_url = "http://gateway.example.test:8080/"
    user = await add_user(mailer_engine, user_id=701)
    command = SendPasswordReset(user_id=701, email=user.email.upper())
    command_id = str(uuid.uuid4())

    await handle(mailer_engine, mailer, command, command_id)
    await handle(mailer_engine, mailer, command, command_id)  # redelivered
    while await deliverer.deliver_due():
        pass

    assert [e.rcpt_tos[0] for e in sink.received] == [user.email]
    message = email.message_from_bytes(sink.received[0].content, policy=policy.default)
    assert message["Subject"] == "[ORGNAME MISP] Password reset"
    assert message.get_content_type() == "multipart/signed"
    text = message.get_payload()[0].get_content()
    assert "temporary password" not in text and "60 minutes" in text
    found = LINK_RE.search(text)
    assert found is not None, text
    # No MISP.baseurl here: the link is the gateway's.
    assert found.group(1) == "http://gateway.example.test:8080"
    token = found.group(2)
    assert len(token) >= 43
    [data] = await credentials(mailer_engine)
    assert data["user_id"] == 701 and data["email"] == user.email
    assert data["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    expires = datetime.fromisoformat(str(data["expires_at"]))
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(minutes=60)
    async with mailer_engine.connect() as conn:
        payloads = [bytes(r.payload)
                    for r in await conn.execute(text_sql("SELECT payload FROM outbox"))]
        events = [str(r.data) for r in await conn.execute(select(event_table.c.data))]
        kinds = [r.kind for r in await conn.execute(text_sql("SELECT kind FROM mail"))]
    assert payloads and not any(token.encode() in p for p in payloads)
    assert not any(token in e for e in events)
    assert any(PasswordResetLinkIssued.type.encode() in p or data["token_hash"].encode() in p
               for p in payloads)
    assert kinds == ["forgot_password"]


async def test_the_link_follows_misp_baseurl_and_the_lifetime_setting(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    from misp_platform.server_settings import record_setting

    async with mailer_engine.begin() as conn:
        await record_setting(conn, "MISP.baseurl", "https://misp.example.test")
        await record_setting(conn, "Security.password_reset_link_ttl", 15)
    user = await add_user(mailer_engine, user_id=704)
    await handle(mailer_engine, mailer, SendPasswordReset(user_id=704, email=user.email),
                 str(uuid.uuid4()))
    while await deliverer.deliver_due():
        pass
    message = email.message_from_bytes(sink.received[0].content, policy=policy.default)
    text = message.get_payload()[0].get_content()
    found = LINK_RE.search(text)
    assert found is not None and found.group(1) == "https://misp.example.test"
    assert "15 minutes" in text
    [data] = await credentials(mailer_engine)
    expires = datetime.fromisoformat(str(data["expires_at"]))
    assert expires - datetime.now(UTC) <= timedelta(minutes=15)


async def test_a_changed_address_or_a_disabled_user_gets_no_mail(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    await add_user(mailer_engine, user_id=702)
    disabled = await add_user(mailer_engine, user_id=703, disabled=True)

    await handle(mailer_engine, mailer, SendPasswordReset(user_id=702, email="old@example.test"),
                 str(uuid.uuid4()))
    await handle(mailer_engine, mailer, SendPasswordReset(user_id=703, email=disabled.email),
                 str(uuid.uuid4()))
    await handle(mailer_engine, mailer, SendPasswordReset(user_id=799, email="x@example.test"),
                 str(uuid.uuid4()))
    while await deliverer.deliver_due():
        pass

    assert sink.received == []
    assert await credentials(mailer_engine) == []


async def project_user(engine: AsyncEngine, user_id: int, email: str, version: int,
                       **flags: object) -> None:
    """The mailer's projection at `version` of the user's stream, as identity published it."""
    user = UserState(id=user_id, uuid=str(uuid.uuid4()), email=email, org_id=1, role_id=3,
                     **flags)
    envelope = Envelope(source="/identity", type=UserUpdated.type, actor=Actor.system(),
                        streamversion=version, data=UserUpdated(user=user).model_dump(mode="json"))
    async with engine.begin() as conn:
        await when_user_saved_project(conn, envelope)


async def test_a_user_the_projection_has_not_seen_yet_is_mailed_at_identitys_copy(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    """The consumer reads the user topic and the commands apart: a user created a moment before
    "forgot password" may reach the mailer after the command. Identity's copy (at version 1)
    stands in; so does a newer address than the projection's."""
    await handle(mailer_engine, mailer, SendPasswordReset(
        user_id=710, email="new-710@example.test", org_id=1, version=1), str(uuid.uuid4()))
    await project_user(mailer_engine, 711, "old-711@example.test", version=1)
    await handle(mailer_engine, mailer, SendPasswordReset(
        user_id=711, email="now-711@example.test", org_id=1, version=2), str(uuid.uuid4()))
    while await deliverer.deliver_due():
        pass

    assert sorted(e.rcpt_tos[0] for e in sink.received) == [
        "new-710@example.test", "now-711@example.test"]
    assert sorted(str(d["user_id"]) for d in await credentials(mailer_engine)) == ["710", "711"]


async def test_a_projection_ahead_of_the_command_decides(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    """Disabled (version 3) after identity asked (version 2): no mail, no password."""
    await project_user(mailer_engine, 712, "u712@example.test", version=3, disabled=True)
    await handle(mailer_engine, mailer, SendPasswordReset(
        user_id=712, email="u712@example.test", org_id=1, version=2), str(uuid.uuid4()))
    while await deliverer.deliver_due():
        pass

    assert sink.received == []
    assert await credentials(mailer_engine) == []
