"""The delivery loop: claim due mails (a lease, `SKIP LOCKED`: several loops may run), send each
over SMTP, and record the outcomes with their events: each SMTP session records the mails it
sent in one transaction every `record_batch` mails (or sooner, when no mail is left for it), so a
crash can at worst repeat the mails a session sent since its last record, at most `record_batch`
per session (same Message-ID), and never lose one.

Within a burst, each session keeps its SMTP connection and a database connection of its own for
its records: no new SMTP session per batch, no pool checkout (and its ping) per mail. The loop
closes its sessions when it runs out of due mail."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailer.adapters import store
from mailer.adapters.smtp import Connection, Result, SmtpConfig
from misp_contracts.envelope import Actor
from misp_contracts.events.mailer import MailFailed, MailSent
from misp_platform import failpoints
from misp_platform.eventstore import Append

log = structlog.get_logger(__name__)

# Mails a session sends before it records them (one transaction, one UPDATE, one append of
# their events and outbox rows): the most a crash can make it send twice (`MAILER_RECORD_BATCH`).
# The default keeps that bound at one mail per session. Recording each mail on its own costs
# four round trips per mail (BEGIN, UPDATE, append, COMMIT), most of the delivery: 400 mails
# over 2 sessions to a local sink went out at 202/s recorded one by one, 440/s by 4, 513/s by 8
# (alternating runs, loaded 2-core machine, 2026-12-05); the whole signed+encrypted path was
# 0.94-0.99 of raw gpg recorded by 1, 1.20-1.24 by 8 (quiet machine, bench/mailer.py).
RECORD_BATCH = 1


class Deliverer:
    def __init__(self, engine: AsyncEngine, smtp: SmtpConfig, *, max_attempts: int = 6,
                 backoff_base_s: float = 5.0, backoff_max_s: float = 3600.0,
                 lease_s: float = 120.0, batch: int = 20, poll_interval_s: float = 1.0,
                 connections: int = 2, record_batch: int = RECORD_BATCH) -> None:
        self.engine = engine
        self.smtp = smtp
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.lease_s = lease_s
        self.batch = batch
        self.poll_interval_s = poll_interval_s
        # SMTP sessions used at once; a crash repeats at most `record_batch` mails per session.
        self.connections = max(1, connections)
        # Mails a session sends before recording them; a crash repeats at most these.
        self.record_batch = max(1, record_batch)
        self.woken = asyncio.Event()
        self._sessions: list[Connection] = []

    def wake(self) -> None:
        self.woken.set()

    def backoff_s(self, attempts: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempts - 1)))

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    sent = await self._deliver_pass()
                except Exception:  # the database or SMTP went away: try again on the next tick
                    log.exception("mailer.delivery_pass_failed")
                    sent = 0
                if sent:
                    continue
                await self._close_sessions()  # idle: hold no SMTP session open until more mail
                self.woken.clear()
                waiters = [asyncio.ensure_future(stop.wait()),
                           asyncio.ensure_future(self.woken.wait())]
                await asyncio.wait(waiters, timeout=self.poll_interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
                for w in waiters:
                    w.cancel()
        finally:
            await self._close_sessions()

    async def deliver_due(self) -> int:
        """One pass: send what is due, then close the SMTP sessions; the number of mails
        handled."""
        try:
            return await self._deliver_pass()
        finally:
            await self._close_sessions()

    async def _deliver_pass(self) -> int:
        """Claim a batch and send it over the sessions (kept open for the next pass)."""
        async with self.engine.begin() as conn:
            rows = await store.claim_due(conn, limit=self.batch, lease_s=self.lease_s)
        if not rows:
            return 0
        while len(self._sessions) < self.connections:
            self._sessions.append(Connection(self.smtp))
        # The sessions take the batch's mails in turn from one queue: a slow send on one does
        # not leave the other idle at the end of the batch.
        due = deque(rows)
        # Every lane runs to its end (or its own failure) before the pass fails: no session is
        # left sending while the loop closes it.
        outcomes = await asyncio.gather(*(self._send_lane(session, due)
                                          for session in self._sessions[:len(rows)]),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return len(rows)

    async def _send_lane(self, session: Connection, due: deque[Any]) -> None:
        """One SMTP session, one mail at a time; the outcomes recorded (on the lane's own
        database connection) every `record_batch` mails, and when the queue is empty."""
        async with self.engine.connect() as conn:
            sent: list[tuple[Any, Result]] = []
            while due:
                row = due.popleft()
                try:
                    result = await asyncio.to_thread(session.send, row.sender, row.recipient,
                                                     bytes(row.raw or b""))
                except Exception:
                    if sent:  # what went out before the failure is recorded, not resent
                        await self._record(conn, sent)
                    raise
                sent.append((row, result))
                failpoints.hit("mailer.after_send")  # sent, not yet recorded: the crash window
                if len(sent) >= self.record_batch or not due:
                    await self._record(conn, sent)
                    sent = []

    async def _close_sessions(self) -> None:
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await asyncio.to_thread(session.close)

    async def _record(self, conn: AsyncConnection, outcomes: list[tuple[Any, Result]]) -> None:
        """The outcomes of these sends in one transaction: the sent mails in one UPDATE, the
        events (MailSent / MailFailed, never the body) and their outbox rows in one append."""
        sent: list[str] = []
        appends: list[Append] = []
        async with conn.begin():
            for row, result in outcomes:
                event = await self._outcome(conn, row, result)
                if result.outcome == "sent":
                    sent.append(str(row.id))
                if event is not None:
                    actor = Actor(**row.actor) if row.actor else Actor.system()
                    appends.append(Append(stream_id=str(row.id), stream_type="mail",
                                          expected_version=0, events=(event,), actor=actor,
                                          correlation_id=row.request_id))
            await store.mark_sent(conn, sent)
            await store.store.append_many(conn, appends)
        for row, result in outcomes:
            log.info("mailer.delivery", mail_id=str(row.id), outcome=result.outcome,
                     attempts=row.attempts, error=result.error)

    async def _outcome(self, conn: AsyncConnection, row: Any,
                       result: Result) -> MailSent | MailFailed | None:
        """The event of one send (None for a retry, recorded here with its backoff); a sent
        mail's row is marked by the caller, with the others of its batch."""
        fields = {"mail_id": str(row.id), "message_id": row.message_id,
                  "request_id": row.request_id, "kind": row.kind, "action": row.action,
                  "email": row.recipient, "user_id": row.user_id, "subject": row.subject,
                  "encrypted": row.encrypted, "signed": row.signed, "attempts": row.attempts}
        if result.outcome == "sent":
            return MailSent(**fields)
        if result.outcome == "retry" and row.attempts < self.max_attempts:
            await store.mark_retry(conn, str(row.id), self.backoff_s(row.attempts),
                                   result.error or "")
            return None
        error = result.error or "failed"
        if result.outcome == "retry":
            error = f"gave up after {row.attempts} attempts: {error}"
        await store.mark_failed(conn, str(row.id), error)
        return MailFailed(**fields, error=error, permanent=result.outcome == "failed")
