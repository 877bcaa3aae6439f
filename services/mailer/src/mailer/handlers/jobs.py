"""The mailer's background jobs (`python -m mailer worker email`): `bulk_email` queues a bulk
send (handlers/bulk.py), and `authkey_expiry_warnings` mails each user whose authkey expires
within N days (job input, default 7), once per key and expiration, through the same
compose/queue path as every other mail (signed, encrypted where the user has a key, delivered
by the delivery loop).

The keys come from the principals projection (`principal_authkey`, fed by identity's authkey
events). "Already warned" is the mail request `authkey_expiry:<key id>:<expiration>`, claimed in
the job's transaction: a retried or re-run job warns nobody twice, and a new expiration set on
the key gets its own warning."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from mailer.adapters import store
from mailer.domain.model import authkey_expiry_body, authkey_expiry_subject
from mailer.handlers.bulk import run_bulk_email
from mailer.handlers.compose import Draft, Mailer, mailer_for, queue
from mailer.settings import MailerSettings
from misp_contracts.envelope import Actor
from misp_platform.config import ServiceSettings
from misp_platform.worker import JobContext, JobHandler

log = structlog.get_logger(__name__)

DEFAULT_DAYS = 7
KIND = "authkey_expiry"


def days_of(job_input: str, data: Mapping[str, object]) -> int:
    """The look-ahead: `data["days"]`, else the job input, else 7; at least 1."""
    raw = data.get("days", job_input.strip() or DEFAULT_DAYS)
    try:
        days = int(str(raw))
    except ValueError as exc:
        raise ValueError(f"job input must be a number of days, not {raw!r}") from exc
    return max(1, days)


def request_id_of(authkey_id: int, expiration: int) -> str:
    return f"{KIND}:{authkey_id}:{expiration}"


async def warn_expiring_authkeys(conn: AsyncConnection, mailer: Mailer, *, days: int,
                                 now: float | None = None) -> tuple[int, int]:
    """Queue a warning for every enabled user's key that expires within `days` and was not
    warned about for its current expiration; `(keys warned, mails queued)`."""
    settings = await store.load_settings(conn)
    if settings.flag("MISP.disable_emailing"):
        return 0, 0
    now = time.time() if now is None else now
    rows = await store.expiring_authkeys(conn, after=int(now), until=int(now + days * 86400),
                                         kind=KIND)
    warned = mails = 0
    for row in rows:
        recipient = await store.user(conn, row.user_id)
        if recipient is None:
            continue
        expires = datetime.fromtimestamp(row.expiration, UTC)
        draft = Draft(recipient=recipient, subject=authkey_expiry_subject(settings),
                      body=authkey_expiry_body(recipient.email, row.authkey_start,
                                               row.authkey_end, expires, settings))
        result = await queue(conn, mailer, [draft],
                             request_id=request_id_of(row.authkey_id, row.expiration),
                             kind=KIND, action="email", actor=Actor.system(), settings=settings)
        if not result.replay:
            warned += 1
            mails += len(result.mails)
    if mails:
        mailer.wake()
    return warned, mails


def job_handlers(settings: ServiceSettings,
                 mailer: Mailer | None = None) -> Mapping[str, JobHandler]:
    if mailer is None:
        assert isinstance(settings, MailerSettings)
        mailer = mailer_for(settings)

    async def authkey_expiry_warnings(conn: AsyncConnection, ctx: JobContext) -> str:
        days = days_of(ctx.job.job_input, ctx.job.data)
        warned, mails = await warn_expiring_authkeys(conn, mailer, days=days)
        log.info("mailer.authkey_expiry_warned", job_id=ctx.job.job_id, keys=warned,
                 mails=mails, days=days)
        return (f"Warned about {warned} authkey(s) expiring within {days} days "
                f"({mails} mail(s) queued).")

    async def bulk_email(conn: AsyncConnection, ctx: JobContext) -> str:
        request_id = str(ctx.job.data.get("request_id") or ctx.job.job_input).strip()
        if not request_id:
            raise ValueError("bulk_email runs a request of admin/users/email: data.request_id")
        return await run_bulk_email(conn, mailer, request_id, job_id=ctx.job.job_id,
                                    progress=ctx.progress)

    return {"authkey_expiry_warnings": authkey_expiry_warnings, "bulk_email": bulk_email}
