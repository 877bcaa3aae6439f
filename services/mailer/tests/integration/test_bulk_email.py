"""The `bulk_email` job: run by the real `WorkerRunner` (in-process, no Kafka) it queues one
signed (and, with a key, encrypted) mail per enabled user in scope, tells who got none and why,
reports its progress, and a redelivered or re-run job queues nothing twice; a cancel or a
failure leaves nothing behind."""

from __future__ import annotations

import email
import json
import re
import uuid
from email import policy
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.tables import bulk_request, mail
from mailer.domain.errors import EmailingDisabledError
from mailer.domain.model import ContactRequest
from mailer.handlers.bulk import request_bulk_email, summary
from mailer.handlers.compose import Mailer
from mailer.handlers.deliver import Deliverer
from mailer.handlers.jobs import job_handlers
from mailer.settings import MailerSettings
from misp_contracts.envelope import Actor
from misp_contracts.events.jobs import JOB_TYPES, RunJob
from misp_platform.db import event as event_table
from misp_platform.testing import run_job
from misp_platform.worker import JobCancelledError, JobContext

from ..support import Sink, UserKey, add_role, add_user, set_setting

ADMIN = Actor(user_id=900001, email="admin@example.test", org_id=1, org_name="ORGNAME")
PASSWORD_RE = re.compile(r"Your temporary password: (\S+)")


def custom(subject: str = "Maintenance", body: str = "Friday, 18:00 UTC.") -> ContactRequest:
    return ContactRequest(action="custom", recipients="all", subject=subject, body=body,
                          custom_message=True)


async def delivered(deliverer: Deliverer) -> None:
    while await deliverer.deliver_due():
        pass


async def mail_rows(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(select(mail.c.recipient, mail.c.request_id, mail.c.kind,
                                              mail.c.action, mail.c.actor, mail.c.encrypted)))


def handlers(mailer: Mailer) -> Any:
    return job_handlers(MailerSettings(), mailer)


def test_the_job_type_is_the_mailers_on_the_email_queue() -> None:
    job_type = JOB_TYPES["bulk_email"]
    assert (job_type.owner, job_type.queues, job_type.max_attempts) == ("mailer", ("email",), 3)
    many = [{"email": f"u{i}@example.test", "reason": "r"} for i in range(25)]
    assert summary(2, []) == "Queued 2 e-mail(s)."
    assert summary(0, many).endswith("u19@example.test (r); and 5 more.")


async def test_the_job_mails_every_enabled_user_in_scope_once(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink,
        user_keys: dict[str, UserKey]) -> None:
    plain = await add_user(mailer_engine, user_id=701, org_id=4)
    keyed = await add_user(mailer_engine, user_id=702, org_id=4, gpgkey=user_keys["good"].public)
    expired = await add_user(mailer_engine, user_id=703, org_id=4,
                             gpgkey=user_keys["expired"].public)
    await add_user(mailer_engine, user_id=704, org_id=4, disabled=True)
    await add_user(mailer_engine, user_id=705, org_id=5)  # another org
    request_id = str(uuid.uuid4())
    assert await request_bulk_email(mailer_engine, custom(), request_id=request_id,
                                    actor=ADMIN, scope_org_id=4) == 3
    late = await add_user(mailer_engine, user_id=706, org_id=4)  # recipients: when it runs

    first = await run_job(mailer_engine, service="mailer", queue="email", job_type="bulk_email",
                          handlers=handlers(mailer), data={"request_id": request_id},
                          job_id=51)

    message = (f"Queued 3 e-mail(s). Not sent to: {expired.email} "
               "(the GnuPG key has expired).")
    assert (first["outcome"], first["message"], first["replayed"]) == ("succeeded", message,
                                                                       False)
    # The same job again (redelivered), then a new job for the same request: nothing new.
    again = await run_job(mailer_engine, service="mailer", queue="email", job_type="bulk_email",
                          handlers=handlers(mailer), data={"request_id": request_id},
                          job_id=51)
    assert (again["outcome"], again["replayed"]) == ("succeeded", True)
    rerun = await run_job(mailer_engine, service="mailer", queue="email", job_type="bulk_email",
                          handlers=handlers(mailer), job_input=request_id, job_id=52)
    assert (rerun["outcome"], rerun["message"]) == ("succeeded", message)

    rows = await mail_rows(mailer_engine)
    assert sorted(r.recipient for r in rows) == sorted([plain.email, keyed.email, late.email])
    assert {(r.request_id, r.kind, r.action) for r in rows} == {(request_id, "custom",
                                                                 "admin_email")}
    assert all(r.actor["user_id"] == ADMIN.user_id for r in rows)
    async with mailer_engine.connect() as conn:
        row = (await conn.execute(select(bulk_request).where(
            bulk_request.c.id == request_id))).one()
    assert (row.status, row.job_id, row.mails) == ("done", 51, 3)
    assert [s["email"] for s in row.skipped] == [expired.email]

    await delivered(deliverer)
    by_rcpt = {m.rcpt_tos[0]: email.message_from_bytes(m.content, policy=policy.default)
               for m in sink.received}
    assert sorted(by_rcpt) == sorted([plain.email, keyed.email, late.email])
    assert by_rcpt[plain.email]["Subject"] == "Maintenance"
    assert by_rcpt[plain.email].get_content_type() == "multipart/signed"
    assert "Friday, 18:00 UTC." in by_rcpt[plain.email].get_payload()[0].get_content()
    assert by_rcpt[keyed.email].get_content_type() == "multipart/encrypted"


async def test_the_job_reports_its_progress_as_it_signs(
        mailer_engine: AsyncEngine, mailer: Mailer) -> None:
    for user_id in range(711, 736):  # 25 users: reports every 10
        await add_user(mailer_engine, user_id=user_id, org_id=6)
    request_id = str(uuid.uuid4())
    await request_bulk_email(mailer_engine, custom(), request_id=request_id, actor=ADMIN,
                             scope_org_id=6)
    reports: list[tuple[int, str]] = []

    async def report(value: int, message: str) -> None:
        reports.append((value, message))

    job = RunJob(job_id=61, attempt=1, job_type="bulk_email", queue="email",
                 data={"request_id": request_id})
    async with mailer_engine.begin() as conn:
        message = await handlers(mailer)["bulk_email"](conn, JobContext(job=job, report=report))

    assert message == "Queued 25 e-mail(s)."
    values = [v for v, _ in reports]
    assert values == sorted(values) and values[-1] == 90 and len(values) == 6
    assert reports[0] == (8, "Checked keys: 10/25") and reports[2] == (20, "Checked keys: 25/25")
    assert reports[3] == (48, "Signed: 10/25")


async def test_a_password_reset_to_all_mails_each_user_their_own_password_and_only_hashes_leave(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    await add_role(mailer_engine, 3)  # plain users: an org admin may reset their passwords
    users = [await add_user(mailer_engine, user_id=user_id, org_id=8)
             for user_id in (741, 742)]
    request_id = str(uuid.uuid4())
    reset = ContactRequest(action="password_reset", recipients="all", subject="", body="",
                           custom_message=False)
    await request_bulk_email(mailer_engine, reset, request_id=request_id, actor=ADMIN,
                             scope_org_id=8)

    finished = await run_job(mailer_engine, service="mailer", queue="email",
                             job_type="bulk_email", handlers=handlers(mailer),
                             data={"request_id": request_id})
    assert finished["message"] == "Queued 2 e-mail(s)."
    await delivered(deliverer)

    passwords = {}
    for received in sink.received:
        message = email.message_from_bytes(received.content, policy=policy.default)
        found = PASSWORD_RE.search(message.get_payload()[0].get_content())
        assert found is not None
        passwords[received.rcpt_tos[0]] = found.group(1)
    assert sorted(passwords) == sorted(u.email for u in users)
    assert len(set(passwords.values())) == 2
    async with mailer_engine.connect() as conn:
        issued = [r.data for r in await conn.execute(select(event_table.c.data).where(
            event_table.c.type == "misp.mailer.credential.issued.v1"))]
        payloads = [bytes(r.payload) for r in await conn.execute(
            text("SELECT payload FROM outbox"))]
    assert len(issued) == 2
    for data in issued:
        assert PasswordHasher().verify(data["password_hash"], passwords[data["email"]])
    assert not any(p.encode() in payload for p in passwords.values() for payload in payloads)


async def test_a_cancelled_or_failing_run_queues_nothing_and_a_later_run_does_it_all(
        mailer_engine: AsyncEngine, mailer: Mailer) -> None:
    for user_id in (751, 752):
        await add_user(mailer_engine, user_id=user_id, org_id=9)
    request_id = str(uuid.uuid4())
    await request_bulk_email(mailer_engine, custom(), request_id=request_id, actor=ADMIN,
                             scope_org_id=9)
    job = RunJob(job_id=71, attempt=1, job_type="bulk_email", queue="email",
                 data={"request_id": request_id})

    async def report(_value: int, _message: str) -> None:
        return None

    bulk_email = handlers(mailer)["bulk_email"]
    with pytest.raises(JobCancelledError):
        async with mailer_engine.begin() as conn:
            await bulk_email(conn, JobContext(job=job, report=report, cancelled=True))
    await set_setting(mailer_engine, "MISP.disable_emailing", True)
    with pytest.raises(EmailingDisabledError):
        async with mailer_engine.begin() as conn:
            await bulk_email(conn, JobContext(job=job, report=report))
    assert await mail_rows(mailer_engine) == []

    await set_setting(mailer_engine, "MISP.disable_emailing", False)
    async with mailer_engine.begin() as conn:
        assert await bulk_email(conn, JobContext(job=job, report=report)) == "Queued 2 e-mail(s)."
    async with mailer_engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(mail)) == 2


async def test_the_outbox_of_a_bulk_send_never_carries_its_text(
        mailer_engine: AsyncEngine, mailer: Mailer) -> None:
    await add_user(mailer_engine, user_id=761, org_id=10)
    request_id = str(uuid.uuid4())
    secret_text = "Door code 4471, do not forward."
    await request_bulk_email(mailer_engine, custom(body=secret_text), request_id=request_id,
                             actor=ADMIN, scope_org_id=10)
    await run_job(mailer_engine, service="mailer", queue="email", job_type="bulk_email",
                  handlers=handlers(mailer), data={"request_id": request_id})

    async with mailer_engine.connect() as conn:
        payloads = [bytes(r.payload) for r in await conn.execute(
            text("SELECT payload FROM outbox"))]
    assert payloads and not any(b"4471" in p for p in payloads)
    assert any(json.loads(p).get("job_type") == "bulk_email" for p in payloads)


async def test_under_onlyencrypted_keyless_users_get_nothing_and_the_sender_is_told_why(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink,
        user_keys: dict[str, UserKey]) -> None:
    await set_setting(mailer_engine, "GnuPG.onlyencrypted", True)
    plain = await add_user(mailer_engine, user_id=721, org_id=9)
    keyed = await add_user(mailer_engine, user_id=722, org_id=9, gpgkey=user_keys["good"].public)
    request_id = str(uuid.uuid4())
    await request_bulk_email(mailer_engine, custom(), request_id=request_id, actor=ADMIN,
                             scope_org_id=9)

    done = await run_job(mailer_engine, service="mailer", queue="email", job_type="bulk_email",
                         handlers=handlers(mailer), data={"request_id": request_id}, job_id=61)

    assert (done["outcome"], done["message"]) == (
        "succeeded", f"Queued 1 e-mail(s). Not sent to: {plain.email} "
                     "(no GnuPG key, and GnuPG.onlyencrypted is on).")
    rows = await mail_rows(mailer_engine)
    assert [(r.recipient, r.encrypted) for r in rows] == [(keyed.email, True)]
    await delivered(deliverer)
    assert [m.rcpt_tos for m in sink.received] == [[keyed.email]]
