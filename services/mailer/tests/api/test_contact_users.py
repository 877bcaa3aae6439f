"""`admin/users/email`, `quickEmail/{id}` and `/gpg.asc` through the app, with the real gpg and
SMTP server: what arrives, what is refused with MISP's 4xx body, and what the outbox carries."""

from __future__ import annotations

import email
import re
import socket
from email import policy
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.tables import mail
from mailer.bootstrap import create_app
from mailer.settings import MailerSettings
from misp_platform.db import event as event_table

from ..support import Sink, UserKey, add_user, set_setting, wait_for

PASSWORD_RE = re.compile(r"Your temporary password: (\S+)")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


async def outbox_payloads(engine: AsyncEngine) -> list[bytes]:
    async with engine.connect() as conn:
        return [bytes(r.payload) for r in await conn.execute(text("SELECT payload FROM outbox"))]


async def test_quick_email_sends_an_encrypted_mail_to_a_user_with_a_key(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine, sink: Sink,
        user_keys: dict[str, UserKey]) -> None:
    user = await add_user(mailer_engine, user_id=501, gpgkey=user_keys["good"].public)

    r = await client.post("/admin/users/quickEmail/501", headers=auth(admin_key),
                           json={"subject": "Hi", "body": "A word for you."})

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["message"] == "Email sent."
    assert body["mails"][0]["encrypted"] is True
    await wait_for(lambda: len(sink.received) == 1)
    message = email.message_from_bytes(sink.received[0].content, policy=policy.default)
    assert message["To"] == user.email and message.get_content_type() == "multipart/encrypted"
    decrypted = user_keys["good"].gpg.decrypt(message.get_payload()[1].get_payload(decode=True),
                                              always_trust=True)
    assert "A word for you." in str(decrypted)


async def test_bad_input_gets_misp_4xx_and_nothing_is_queued(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine,
        user_keys: dict[str, UserKey]) -> None:
    await add_user(mailer_engine, user_id=502)
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("/admin/users/quickEmail/999999", {"subject": "s", "body": "b"}, 404),
        ("/admin/users/quickEmail/502", {"subject": "s"}, 405),
        ("/admin/users/email", {"action": "0", "recipient": "0", "body": "b"}, 403),
        ("/admin/users/email", {"action": "0", "recipient": "2", "subject": "s", "body": "b",
                                "recipientEmail": "bad address"}, 403),
        ("/admin/users/email", {"action": "0", "recipient": "2", "subject": "s", "body": "b",
                                "recipientEmail": "new@example.test", "gpg": "garbage"}, 403),
        ("/admin/users/email", {"action": "0", "recipient": "1", "subject": "s", "body": "b",
                                "recipientEmailList": "999999"}, 404),
    ]
    for path, payload, status in cases:
        r = await client.post(path, headers=auth(admin_key), json=payload)
        assert r.status_code == status, (path, payload, r.text)
        assert r.json()["message"] and r.json()["url"] == path
    bad_json = await client.post("/admin/users/email", headers=auth(admin_key), content=b"{")
    assert bad_json.status_code == 405
    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(mail.c.id))).first() is None


async def test_an_expired_key_of_a_single_recipient_is_refused_with_the_reason(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine,
        user_keys: dict[str, UserKey]) -> None:
    # (A mail to all users reports such recipients in its job's message: test_bulk_email.py.)
    await add_user(mailer_engine, user_id=504, org_id=7, gpgkey=user_keys["expired"].public)

    single = await client.post("/admin/users/quickEmail/504", headers=auth(admin_key),
                               json={"subject": "s", "body": "b"})

    assert single.status_code == 403 and "expired" in single.text
    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(mail.c.id))).first() is None


async def test_an_org_admin_only_reaches_their_own_org(
        client: httpx.AsyncClient, org_admin_key: str, mailer_engine: AsyncEngine) -> None:
    await add_user(mailer_engine, user_id=506, org_id=1)

    r = await client.post("/admin/users/quickEmail/506", headers=auth(org_admin_key),
                          json={"subject": "s", "body": "b"})

    assert r.status_code == 404


async def test_a_password_reset_mails_the_password_and_publishes_only_its_hash(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine,
        sink: Sink) -> None:
    user = await add_user(mailer_engine, user_id=507)

    r = await client.post("/admin/users/email", headers=auth(admin_key),
                          json={"action": "2", "recipient": "1", "recipientEmailList": "507",
                                "customMessage": "1", "body": "Please log in again."})

    assert r.status_code == 200, r.text
    await wait_for(lambda: len(sink.received) == 1)
    raw = sink.received[0].content
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message.get_content_type() == "multipart/signed"
    text_part = message.get_payload()[0].get_content()
    assert text_part.index("Please log in again.") < text_part.index("temporary password")
    password = PASSWORD_RE.search(text_part).group(1)  # type: ignore[union-attr]
    async with mailer_engine.connect() as conn:
        [data] = [row.data for row in await conn.execute(select(event_table.c.data).where(
            event_table.c.type == "misp.mailer.credential.issued.v1"))]
    assert data["user_id"] == 507 and data["email"] == user.email
    assert PasswordHasher().verify(data["password_hash"], password)
    payloads = await outbox_payloads(mailer_engine)
    assert payloads and not any(password.encode() in p for p in payloads)


async def test_gpg_asc_serves_the_instance_key_and_diagnostics_show_it(
        client: httpx.AsyncClient) -> None:
    r = await client.get("/gpg.asc")

    assert r.status_code == 200 and "BEGIN PGP PUBLIC KEY BLOCK" in r.text
    diagnostics = (await client.get("/_svc/mailer/diagnostics")).json()
    gnupg = diagnostics["checks"]["gnupg"]
    assert len(gnupg["instance_key_fingerprint"]) == 40
    assert "must not be used anywhere else" in gnupg["warning"]
    assert gnupg["ok"] is True and gnupg["can_sign"] is True
    smtp = diagnostics["checks"]["smtp"]
    assert smtp["ok"] is True and smtp["ehlo"].startswith("250")


async def test_diagnostics_report_an_unreachable_smtp_server(
        mailer_settings: MailerSettings, mailer_engine: AsyncEngine) -> None:
    with socket.socket() as probe:  # a port that nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    app = create_app(mailer_settings.model_copy(update={"smtp_port": closed}),
                     engine=mailer_engine, deliver=False)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://mailer") as http:
        diagnostics = (await http.get("/_svc/mailer/diagnostics")).json()
    assert diagnostics["status"] == "degraded"
    assert diagnostics["checks"]["smtp"]["ok"] is False


async def test_under_onlyencrypted_a_keyless_single_recipient_is_refused_with_the_reason(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine, sink: Sink,
        user_keys: dict[str, UserKey]) -> None:
    await set_setting(mailer_engine, "GnuPG.onlyencrypted", True)
    await add_user(mailer_engine, user_id=511, email="u511@example.test")
    keyed = await add_user(mailer_engine, user_id=512, gpgkey=user_keys["good"].public)

    refused = await client.post("/admin/users/quickEmail/511", headers=auth(admin_key),
                                json={"subject": "s", "body": "b"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"] == {
        "recipient": ["u511@example.test: no GnuPG key, and GnuPG.onlyencrypted is on"]}
    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(mail.c.id))).first() is None

    sent = await client.post("/admin/users/quickEmail/512", headers=auth(admin_key),
                             json={"subject": "s", "body": "b"})
    assert sent.status_code == 200 and sent.json()["mails"][0]["encrypted"] is True
    await wait_for(lambda: [m.rcpt_tos for m in sink.received] == [[keyed.email]])


async def test_a_subject_with_a_line_break_is_refused_and_nothing_is_queued(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine) -> None:
    """A CR or LF would end the Subject header and start one of the sender's choosing (Bcc)."""
    await add_user(mailer_engine, user_id=520)
    for path, payload in [
        ("/admin/users/quickEmail/520", {"subject": "hi\r\nBcc: x@evil.test", "body": "b"}),
        ("/admin/users/email", {"action": "custom", "recipient": "one", "body": "b",
                                "recipientEmailList": "520", "subject": "hi\nBcc: x@evil"}),
    ]:
        r = await client.post(path, headers=auth(admin_key), json=payload)
        assert (r.status_code, r.json()) == (403, {
            "saved": False, "name": "Could not send e-mail", "message": "Could not send e-mail",
            "url": path, "errors": {"subject": [
                "A subject is one line: it cannot hold a line break."]}}), r.text
    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(mail.c.id))).first() is None


async def test_non_ascii_subjects_and_organisation_names_are_encoded(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine,
        sink: Sink) -> None:
    """RFC 2047: the headers are ASCII on the wire and read back as they were written."""
    await set_setting(mailer_engine, "MISP.org", "Zürich CERT Ω")
    user = await add_user(mailer_engine, user_id=521)

    r = await client.post("/admin/users/quickEmail/521", headers=auth(admin_key),
                          json={"subject": "Grüße, 東京", "body": "Ünïcode body"})

    assert r.status_code == 200, r.text
    await wait_for(lambda: len(sink.received) == 1)
    raw = sink.received[0].content
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["To"] == user.email
    assert message["Subject"] == "Grüße, 東京"
    assert "Zürich CERT Ω" in str(message["From"])


async def test_contacting_an_events_reporter_finds_no_event_and_sends_nothing(
        client: httpx.AsyncClient, admin_key: str, org_admin_key: str,
        mailer_engine: AsyncEngine) -> None:
    # This product holds no events: every call gets MISP's answer for an event it cannot find,
    # which MISP gives before it looks at the message (so an empty one is no 405 here).
    for key, body in ((admin_key, {"message": "About your event"}),
                      (org_admin_key, {"message": "About your event", "person": True}),
                      (admin_key, {"message": ""})):
        r = await client.post("/events/contact/5", headers=auth(key), json=body)
        assert r.status_code == 404, r.text
        assert r.json() == {"name": "Invalid event", "message": "Invalid event",
                            "url": "/events/contact/5"}
    assert (await client.get("/events/contact/5", headers=auth(admin_key))).status_code == 404
    refused = await client.post("/events/contact/5", headers={"Accept": "application/json"},
                                json={"message": "m"})
    assert refused.status_code == 403
    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(mail.c.id))).first() is None
