"""Through the gateway, against the running stack: a password reset mails a temporary password
(caught by a real SMTP server on the mailer's port), and no record published on any `misp.*`
topic meanwhile contains it; identity receives only its argon2id hash."""

from __future__ import annotations

import asyncio
import email
import os
import re
import secrets
import socket
import time
from email import policy
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller
from pymisp import MISPUser, PyMISP

from misp_contracts.events.audit import AuditLogRecorded
from misp_platform.kafka import client_options

from .support import GATEWAY, admin_key, delete_user, until

SMTP_PORT = int(os.environ.get("MAILER_SMTP_PORT", "1025"))
MAIL_DIR = Path(os.environ.get("MISP_STATE_DIR", ".local")) / "mail"
PASSWORD_RE = re.compile(r"Your temporary password: (\S+)")


class Catch:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def topic_ends(bootstrap: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith("misp."))
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    partitions = [TopicPartition(d["topic"], p["partition"]) for d in described
                  for p in d["partitions"]]
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def records_since(bootstrap: str, starts: dict[TopicPartition, int]) -> list[bytes]:
    """Every record published after `starts` (topics created since are read whole)."""
    now = await topic_ends(bootstrap)
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    out: list[bytes] = []
    try:
        consumer.assign(list(now))
        for tp in now:
            consumer.seek(tp, starts.get(tp, 0))
        pending = {tp for tp, end in now.items() if end > starts.get(tp, 0)}
        deadline = time.monotonic() + 60
        while pending:
            assert time.monotonic() < deadline, f"topics not read to their end: {pending}"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    out.append((r.key or b"") + (r.value or b"")
                               + b"".join(v or b"" for _, v in r.headers))
            for tp in list(pending):
                if await consumer.position(tp) >= now[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return out


def wait_for_mail(catch: Catch | None, to: str, timeout_s: float = 30) -> bytes:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        candidates = list(catch.messages) if catch is not None else [
            p.read_bytes() for p in sorted(MAIL_DIR.glob("*.eml"))[-50:]]
        for raw in candidates:
            if to.encode() in raw and b"temporary password" in raw:
                return raw
        time.sleep(0.2)
    raise AssertionError(f"no mail to {to} within {timeout_s}s")


def test_a_password_reset_puts_no_temporary_password_on_kafka() -> None:
    bootstrap = os.environ["MISP_KAFKA_BOOTSTRAP_SERVERS"]
    key = admin_key()
    catch: Catch | None = None
    controller: Controller | None = None
    if port_free(SMTP_PORT):  # no mail catcher running: be the mailer's SMTP server
        catch = Catch()
        controller = Controller(catch, hostname="127.0.0.1", port=SMTP_PORT)
        controller.start()
    user_id: int | None = None
    try:
        misp = PyMISP(GATEWAY, key, ssl=False, timeout=20)
        user = MISPUser()
        user.email = f"mail-{secrets.token_hex(4)}@example.test"
        user.org_id = 1
        user.role_id = 3
        created = misp.add_user(user, pythonify=True)
        user_id = int(created.id)  # type: ignore[union-attr]
        starts = asyncio.run(topic_ends(bootstrap))
        headers = {"Authorization": key, "Accept": "application/json"}
        deadline = time.monotonic() + 20
        with httpx.Client(timeout=30) as http:
            while True:  # until the mailer's projection knows the new user
                r = http.post(f"{GATEWAY}/admin/users/email", headers=headers,
                              json={"action": "2", "recipient": "1",
                                    "recipientEmailList": str(user_id)})
                if r.status_code != 404 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
        assert r.status_code == 200, r.text
        raw = wait_for_mail(catch, user.email)
        message = email.message_from_bytes(raw, policy=policy.default)
        assert message.get_content_type() == "multipart/signed"
        password = PASSWORD_RE.search(message.get_payload()[0].get_content())
        assert password is not None
        secret = password.group(1).encode()
        # Instead of a pause: every link of the chain is on Kafka, down to audit's record of
        # identity's reset (the last to be published), before nothing is said to hold the secret.
        chain = [(b"misp.mailer.mail.emailed.v1", user.email.encode()),
                 (b"misp.mailer.credential.issued.v1", user.email.encode()),
                 (b"misp.identity.auth.password-reset.v1", user.email.encode()),
                 (AuditLogRecorded.type.encode(), b"Password reset by e-mail",
                  user.email.encode())]

        def all_published() -> list[bytes] | None:
            records = asyncio.run(records_since(bootstrap, starts))
            return records if all(any(all(n in r for n in needles) for r in records)
                                   for needles in chain) else None

        records = until(all_published, "the reset's events and audit's record of them",
                        interval_s=0.5)
        assert not any(secret in r for r in records)
    finally:
        if controller is not None:
            controller.stop()
        if user_id is not None:  # the user this test made
            with httpx.Client(base_url=GATEWAY, timeout=30) as http:
                delete_user(http, {"Authorization": key, "Accept": "application/json"}, user_id)
