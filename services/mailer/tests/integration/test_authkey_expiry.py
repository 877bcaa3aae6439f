"""The `authkey_expiry_warnings` job: users whose authkeys expire within N days get one signed
(and, with a key, encrypted) warning per key and expiration; a re-run warns nobody twice, a new
expiration is warned about again, keys far off, expired, never-expiring, or of disabled users
are left alone."""

from __future__ import annotations

import email
import time
import uuid
from email import policy

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.tables import mail
from mailer.handlers.compose import Mailer
from mailer.handlers.deliver import Deliverer
from mailer.handlers.jobs import days_of, job_handlers, warn_expiring_authkeys
from mailer.settings import MailerSettings
from misp_contracts.events.identity import AuthKeyCreated, AuthKeyState, AuthKeyUpdated
from misp_contracts.events.jobs import JOB_TYPES, RunJob
from misp_platform.auth import PRINCIPAL_HANDLERS
from misp_platform.worker import JobContext

from ..support import Sink, UserKey, add_user, apply

DAY = 86400


def key(key_id: int, user_id: int, expiration: int) -> AuthKeyState:
    return AuthKeyState(id=key_id, uuid=str(uuid.uuid4()), user_id=user_id,
                        key_hmac=uuid.uuid4().hex + uuid.uuid4().hex,
                        authkey_start="abcd", authkey_end=f"{key_id:04d}",
                        expiration=expiration)


async def delivered(deliverer: Deliverer) -> None:
    while await deliverer.deliver_due():
        pass


def test_the_job_type_is_the_mailers_on_the_email_queue() -> None:
    job_type = JOB_TYPES["authkey_expiry_warnings"]
    assert (job_type.owner, job_type.queues) == ("mailer", ("email",))
    assert days_of("", {}) == 7 and days_of(" 3 ", {}) == 3 and days_of("", {"days": 14}) == 14
    with pytest.raises(ValueError):
        days_of("soon", {})


async def test_users_with_keys_expiring_soon_are_warned_once_per_expiration(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink,
        user_keys: dict[str, UserKey]) -> None:
    now = int(time.time())
    plain = await add_user(mailer_engine, user_id=801)
    keyed = await add_user(mailer_engine, user_id=802, gpgkey=user_keys["good"].public)
    far = await add_user(mailer_engine, user_id=803)
    disabled = await add_user(mailer_engine, user_id=804, disabled=True)
    for state in (key(1, plain.id, now + 2 * DAY), key(2, keyed.id, now + 6 * DAY),
                  key(3, far.id, now + 30 * DAY), key(4, far.id, 0),
                  key(5, far.id, now - DAY), key(6, disabled.id, now + DAY)):
        await apply(mailer_engine, PRINCIPAL_HANDLERS[AuthKeyCreated.type],
                    AuthKeyCreated(authkey=state))

    async with mailer_engine.begin() as conn:
        assert await warn_expiring_authkeys(conn, mailer, days=7) == (2, 2)
    async with mailer_engine.begin() as conn:  # a re-run: already warned
        assert await warn_expiring_authkeys(conn, mailer, days=7) == (0, 0)
    await delivered(deliverer)

    assert sorted(m.rcpt_tos[0] for m in sink.received) == sorted([plain.email, keyed.email])
    by_rcpt = {m.rcpt_tos[0]: email.message_from_bytes(m.content, policy=policy.default)
               for m in sink.received}
    signed = by_rcpt[plain.email]
    assert signed["Subject"] == "[ORGNAME MISP] Your API key expires soon"
    assert signed.get_content_type() == "multipart/signed"
    text = signed.get_payload()[0].get_content()
    assert "abcd...0001" in text and plain.email in text
    assert by_rcpt[keyed.email].get_content_type() == "multipart/encrypted"
    async with mailer_engine.connect() as conn:
        rows = (await conn.execute(select(mail.c.kind, mail.c.action, mail.c.status))).all()
    assert {tuple(r) for r in rows} == {("authkey_expiry", "email", "sent")}

    # The key gets a new (still close) expiration: that one is warned about too, by the job.
    await apply(mailer_engine, PRINCIPAL_HANDLERS[AuthKeyUpdated.type],
                AuthKeyUpdated(authkey=key(1, plain.id, now + 3 * DAY)))
    settings = MailerSettings()
    handler = job_handlers(settings, mailer)["authkey_expiry_warnings"]
    job = RunJob(job_id=1, attempt=1, job_type="authkey_expiry_warnings", queue="email",
                 job_input="7")

    async def report(_value: int, _message: str) -> None:
        return None

    async with mailer_engine.begin() as conn:
        message = await handler(conn, JobContext(job=job, report=report))
    assert message == "Warned about 1 authkey(s) expiring within 7 days (1 mail(s) queued)."
    await delivered(deliverer)
    assert [m.rcpt_tos[0] for m in sink.received].count(plain.email) == 2
