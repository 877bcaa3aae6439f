"""Alerts on published events and contact-reporter requests, as the consumer handles the
commands: who gets them, MISP's subjects, and idempotency per command id."""

from __future__ import annotations

import email
import uuid
from email import policy
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.consumer import command_handlers
from mailer.handlers.compose import Mailer
from mailer.handlers.deliver import Deliverer
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.mailer import ContactReporter, NotifyEventPublished, PublishedEvent

from ..support import Sink, add_user, set_setting

EVENT = PublishedEvent(id=8, uuid=str(uuid.uuid4()), info="OSINT - Dissecting XXX",
                       threat_level_id=3, orgc_id=41, orgc_name="Reporter", tags=["tlp:amber"])


async def handle(engine: AsyncEngine, mailer: Mailer, command: Any, envelope_id: str) -> None:
    envelope = Envelope(id=envelope_id, source="/events", type=command.type,
                        actor=Actor.system(), data=command.model_dump(mode="json"))
    async with engine.begin() as conn:
        await command_handlers(mailer)[command.type](conn, envelope)


async def delivered(deliverer: Deliverer, sink: Sink) -> list[tuple[str, Any]]:
    """Every mail received, as (recipients, message): a double delivery shows twice."""
    while await deliverer.deliver_due():
        pass
    return [(",".join(e.rcpt_tos), email.message_from_bytes(e.content, policy=policy.default))
            for e in sink.received]


async def test_published_events_alert_autoalert_users_of_the_orgs_that_see_them(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    alerted = await add_user(mailer_engine, user_id=601, org_id=40, autoalert=True)
    await add_user(mailer_engine, user_id=602, org_id=40, autoalert=False)
    await add_user(mailer_engine, user_id=603, org_id=99, autoalert=True)  # cannot see it
    await add_user(mailer_engine, user_id=604, org_id=40, autoalert=True, disabled=True)
    await set_setting(mailer_engine, "MISP.extended_alert_subject", True)
    await set_setting(mailer_engine, "MISP.org", "CIRCL")
    command = NotifyEventPublished(event=EVENT, visible_org_ids=[40, 41], summary="3 attributes")
    command_id = str(uuid.uuid4())

    await handle(mailer_engine, mailer, command, command_id)
    await handle(mailer_engine, mailer, command, command_id)  # redelivered
    mails = await delivered(deliverer, sink)

    assert [to for to, _ in mails] == [alerted.email]  # once, though the command came twice
    assert mails[0][1]["Subject"] == (
        "[CIRCL MISP] Event 8 - OSINT - Dissecting XXX - Low - TLP:AMBER")


async def test_contact_reporter_reaches_the_reporting_orgs_contactalert_users(
        mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer, sink: Sink) -> None:
    contact = await add_user(mailer_engine, user_id=611, org_id=41, contactalert=True)
    await add_user(mailer_engine, user_id=612, org_id=41, contactalert=False)
    command = ContactReporter(event=EVENT, message="Where did you see this?",
                              requester_user_id=5, requester_email="asker@example.test",
                              requester_org_name="Asking org")

    await handle(mailer_engine, mailer, command, str(uuid.uuid4()))
    mails = await delivered(deliverer, sink)

    assert [to for to, _ in mails] == [contact.email]
    message = mails[0][1]
    assert message["Subject"] == "[ORGNAME MISP] Need info about event 8 - TLP:AMBER"
    assert "Where did you see this?" in message.get_payload()[0].get_content()
