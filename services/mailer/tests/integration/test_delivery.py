"""Delivery to a real SMTP server: retries on 4xx with backoff, permanent failures recorded, no
double send of a redelivered request, one event per mail sent or failed (never the body), and a
burst sent over the configured SMTP sessions, kept open across batches."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.smtp import SmtpConfig
from mailer.adapters.tables import mail
from mailer.domain.model import Recipient
from mailer.handlers.compose import Draft, Mailer, queue
from mailer.handlers.deliver import Deliverer
from misp_contracts.envelope import Actor
from misp_platform.db import event as event_table

from ..support import Sink


async def queue_one(engine: AsyncEngine, mailer: Mailer, request_id: str,
                    to: str = "x@example.test") -> None:
    draft = Draft(Recipient(to, 7, 1, None), "Subject", "Body text\n")
    async with engine.begin() as conn:
        await queue(conn, mailer, [draft], request_id=request_id, kind="custom",
                    action="admin_email", actor=Actor(user_id=1, email="admin@admin.test"))


async def statuses(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        return [(r.status, r.attempts) for r in await conn.execute(
            select(mail.c.status, mail.c.attempts))]


async def mail_events(engine: AsyncEngine) -> list[tuple[str, dict[str, object]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(event_table.c.type, event_table.c.data).where(
            event_table.c.stream_type == "mail"))
        return [(r.type, r.data) for r in rows]


async def drain(deliverer: Deliverer, engine: AsyncEngine) -> None:
    async def done() -> bool:
        return all(s != "pending" for s, _ in await statuses(engine))

    for _ in range(200):
        await deliverer.deliver_due()
        if await done():
            return
        import asyncio

        await asyncio.sleep(0.05)
    raise AssertionError("mails still pending")


async def test_a_mail_is_delivered_once_and_its_event_carries_no_body(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    request_id = str(uuid.uuid4())
    await queue_one(mailer_engine, mailer, request_id)
    await queue_one(mailer_engine, mailer, request_id)  # a redelivered request: nothing new

    await drain(deliverer, mailer_engine)
    await deliverer.deliver_due()

    assert len(sink.received) == 1 and sink.received[0].rcpt_tos == ["x@example.test"]
    assert await statuses(mailer_engine) == [("sent", 1)]
    [(type_, data)] = await mail_events(mailer_engine)
    assert type_ == "misp.mailer.mail.emailed.v1" and data["action"] == "admin_email"
    assert "Body text" not in str(data)
    raw = sink.received[0].content
    assert str(data["message_id"]).encode() in raw
    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(mail.c.raw))).scalar() is None


async def test_a_4xx_is_retried_with_backoff_until_accepted(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    sink.refuse = ["451 4.3.0 try again later", "421 4.7.0 busy"]
    await queue_one(mailer_engine, mailer, str(uuid.uuid4()))

    await drain(deliverer, mailer_engine)

    assert sink.attempts == 3 and len(sink.received) == 1
    assert await statuses(mailer_engine) == [("sent", 3)]


async def test_a_5xx_fails_at_once_and_is_recorded(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    sink.refuse = ["550 5.1.1 no such mailbox"]
    await queue_one(mailer_engine, mailer, str(uuid.uuid4()))

    await drain(deliverer, mailer_engine)

    assert await statuses(mailer_engine) == [("failed", 1)]
    [(type_, data)] = await mail_events(mailer_engine)
    assert type_ == "misp.mailer.mail.failed.v1" and "550" in str(data["error"])
    assert data["permanent"] is True


async def test_retries_give_up_after_max_attempts(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    sink.refuse = ["451 4.3.0 later"] * 5
    await queue_one(mailer_engine, mailer, str(uuid.uuid4()))

    await drain(deliverer, mailer_engine)

    assert await statuses(mailer_engine) == [("failed", 3)] and sink.received == []
    [(_, data)] = await mail_events(mailer_engine)
    assert data["permanent"] is False and "gave up after 3 attempts" in str(data["error"])


async def test_a_mail_in_flight_when_its_sender_died_is_sent_after_the_lease(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    await queue_one(mailer_engine, mailer, str(uuid.uuid4()))
    async with mailer_engine.begin() as conn:  # claimed by a process that then crashed
        await conn.execute(text("UPDATE mail SET lease_until = now() + interval '1 hour', "
                                "attempts = 1"))
    assert await deliverer.deliver_due() == 0
    async with mailer_engine.begin() as conn:
        await conn.execute(text("UPDATE mail SET lease_until = now() - interval '1 second'"))

    await drain(deliverer, mailer_engine)

    assert len(sink.received) == 1 and await statuses(mailer_engine) == [("sent", 2)]
    [(type_, data)] = await mail_events(mailer_engine)
    assert type_ == "misp.mailer.mail.emailed.v1"
    assert str(data["message_id"]).encode() in sink.received[0].content
    assert await deliverer.deliver_due() == 0 and len(sink.received) == 1  # sent once, done


async def test_a_burst_goes_out_over_the_configured_sessions_kept_across_batches(
        mailer_engine: AsyncEngine, mailer: Mailer, sink: Sink) -> None:
    request_id = str(uuid.uuid4())
    drafts = [Draft(Recipient(f"burst{i}@example.test", None, 1, None), "Subject", "Body\n")
              for i in range(24)]
    async with mailer_engine.begin() as conn:
        await queue(conn, mailer, drafts, request_id=request_id, kind="custom",
                    action="admin_email", actor=Actor.system())
    deliverer = Deliverer(mailer_engine, SmtpConfig("127.0.0.1", sink.port), batch=5,
                          poll_interval_s=0.05, connections=2)
    stop = asyncio.Event()
    loop = asyncio.create_task(deliverer.run(stop))
    try:
        for _ in range(600):
            if len(sink.received) == 24 or loop.done():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await loop

    assert sorted(e.rcpt_tos[0] for e in sink.received) == sorted(
        d.recipient.email for d in drafts)  # each once
    assert await statuses(mailer_engine) == [("sent", 1)] * 24
    assert len(await mail_events(mailer_engine)) == 24
    # Five batches, two sessions: opened once, not once per batch.
    assert len(sink.sessions) <= 2, sink.sessions


async def test_a_session_records_a_batch_of_mixed_outcomes_each_as_its_own(
        mailer_engine: AsyncEngine, mailer: Mailer, sink: Sink) -> None:
    # One session, one batch of three: two refused (for good, then for later), the third
    # accepted; recorded in one transaction, each with its own status and event.
    sink.refuse = ["550 5.1.1 no such mailbox", "451 4.3.0 later"]
    request_id = str(uuid.uuid4())
    drafts = [Draft(Recipient(f"mixed{i}@example.test", None, 1, None), "Subject", "Body\n")
              for i in range(3)]
    async with mailer_engine.begin() as conn:
        await queue(conn, mailer, drafts, request_id=request_id, kind="custom",
                    action="admin_email", actor=Actor.system())
    deliverer = Deliverer(mailer_engine, SmtpConfig("127.0.0.1", sink.port), batch=3,
                          connections=1, record_batch=3, max_attempts=3, backoff_base_s=60)

    assert await deliverer.deliver_due() == 3

    async with mailer_engine.connect() as conn:
        rows = {r.recipient: r for r in await conn.execute(
            select(mail.c.recipient, mail.c.status, mail.c.last_error, mail.c.raw))}
    sent = [e.rcpt_tos[0] for e in sink.received]
    assert len(sent) == 1 and rows[sent[0]].status == "sent" and rows[sent[0]].raw is None
    others = sorted((r for r in rows.values() if r.recipient != sent[0]),
                    key=lambda r: r.status)
    assert [r.status for r in others] == ["failed", "pending"]
    assert "550" in others[0].last_error and others[0].raw is None
    assert "451" in others[1].last_error and others[1].raw is not None  # kept for its retry
    events = sorted(type_ for type_, _ in await mail_events(mailer_engine))
    assert events == ["misp.mailer.mail.emailed.v1", "misp.mailer.mail.failed.v1"]
