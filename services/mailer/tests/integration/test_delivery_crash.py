"""A real `python -m mailer deliver` process SIGKILLed between an SMTP send and its record
(`mailer.after_send`) and restarted: the mail in flight is sent again once, with the same
Message-ID, and recorded sent once; so are all the mails a session sent since its last record
(a session records its sends in batches of `MAILER_RECORD_BATCH`)."""

from __future__ import annotations

import asyncio
import email
import os
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.tables import mail
from mailer.handlers.compose import Mailer
from mailer.handlers.deliver import Deliverer
from misp_platform.testing import eventually, killed_at_failpoint

from ..support import PEPPER, Sink
from .test_delivery import drain, mail_events, queue_one, statuses


def deliver(db: str, sink: Sink, log: Path, failpoint: str, connections: int = 2,
            record_batch: int = 1) -> subprocess.Popen[bytes]:
    # A lease of 1 s: the restart takes the crashed process's mail over soon.
    env = {**os.environ, "MAILER_DATABASE_URL": db, "MAILER_PEPPER": PEPPER,
           "MAILER_SMTP_HOST": "127.0.0.1", "MAILER_SMTP_PORT": str(sink.port),
           "MAILER_SMTP_STARTTLS": "false", "MAILER_SMTP_IMPLICIT_TLS": "false",
           "MAILER_SMTP_USERNAME": "", "MAILER_LEASE_S": "1", "MAILER_POLL_INTERVAL_S": "0.05",
           "MAILER_SMTP_CONNECTIONS": str(connections), "MAILER_RECORD_BATCH": str(record_batch),
           "MISP_LOG_FORMAT": "json", "MISP_FAILPOINTS": failpoint}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "mailer", "deliver"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def message_ids(sink: Sink) -> list[str]:
    return [str(email.message_from_bytes(e.content)["Message-ID"]).strip("<>")
            for e in sink.received]


async def test_a_deliverer_killed_after_a_send_resends_that_mail_once_with_its_message_id(
        mailer_db: str, mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer,
        sink: Sink, tmp_path: Path) -> None:
    await queue_one(mailer_engine, mailer, str(uuid.uuid4()), to="crash@example.test")
    async with mailer_engine.connect() as conn:
        message_id = (await conn.execute(select(mail.c.message_id))).scalar_one()
    log = tmp_path / "deliver.log"

    crashed = deliver(mailer_db, sink, log, "mailer.after_send")
    await killed_at_failpoint(crashed, log)
    # At the crash: the mail went out, and nothing says so (its record died with the process).
    assert message_ids(sink) == [message_id.strip("<>")]
    assert await statuses(mailer_engine) == [("pending", 1)]
    assert await mail_events(mailer_engine) == []

    stop = asyncio.Event()  # the restart, in-process (the same loop, without the failpoint)
    restarted = asyncio.create_task(deliverer.run(stop))
    try:
        async def sent() -> bool:
            return await statuses(mailer_engine) == [("sent", 2)]

        await eventually(sent, 30, 0.05)
        # A marker mail queued after the resend: once it is out, a third copy would be too.
        await queue_one(mailer_engine, mailer, str(uuid.uuid4()), to="marker@example.test")

        async def marker_out() -> bool:
            return any(e.rcpt_tos == ["marker@example.test"] for e in sink.received)

        await eventually(marker_out, 30, 0.05)
    finally:
        stop.set()
        await restarted

    crash_copies = [e for e in sink.received if e.rcpt_tos == ["crash@example.test"]]
    assert len(crash_copies) == 2, len(crash_copies)  # the one in flight, resent once
    assert message_ids(sink)[:2] == [message_id.strip("<>")] * 2
    events = [(type_, data) for type_, data in await mail_events(mailer_engine)
              if data["message_id"] == message_id]
    assert [type_ for type_, _ in events] == ["misp.mailer.mail.emailed.v1"]  # one sent record
    assert events[0][1]["attempts"] == 2


async def test_a_deliverer_killed_before_recording_a_batch_resends_each_of_its_mails_once(
        mailer_db: str, mailer_engine: AsyncEngine, mailer: Mailer, deliverer: Deliverer,
        sink: Sink, tmp_path: Path) -> None:
    batch = 3  # MAILER_RECORD_BATCH=3: one session sends all three before recording any
    for i in range(batch):
        await queue_one(mailer_engine, mailer, str(uuid.uuid4()), to=f"batch{i}@example.test")
    log = tmp_path / "deliver.log"

    crashed = deliver(mailer_db, sink, log, f"mailer.after_send={batch}", connections=1,
                      record_batch=batch)
    await killed_at_failpoint(crashed, log)
    # At the crash: all three went out, and nothing says so.
    assert sorted(e.rcpt_tos[0] for e in sink.received) == [
        f"batch{i}@example.test" for i in range(batch)]
    assert await statuses(mailer_engine) == [("pending", 1)] * batch
    assert await mail_events(mailer_engine) == []

    await drain(deliverer, mailer_engine)  # the restart, once the crashed lease (1 s) is out

    assert sorted(e.rcpt_tos[0] for e in sink.received) == sorted(
        f"batch{i}@example.test" for i in range(batch) for _ in range(2))  # each resent once
    copies = message_ids(sink)
    assert all(copies.count(m) == 2 for m in copies)  # with its Message-ID
    assert await statuses(mailer_engine) == [("sent", 2)] * batch
    events = await mail_events(mailer_engine)
    assert sorted(type_ for type_, _ in events) == ["misp.mailer.mail.emailed.v1"] * batch
    assert len({data["message_id"] for _, data in events}) == batch  # one record per mail
