"""A bulk send (`admin/users/email` to all users) as a `bulk_email` job on the `email` queue.

The request stores its text in `bulk_request` and asks the jobs service for the job through the
outbox, in one transaction; the job's data carries only the request id (no text on Kafka). The
job resolves the recipients when it runs, checks their keys, signs and encrypts with progress,
and queues the mails under the request id: a retried or re-run job queues nothing twice. The
jobs service's answers (`JobQueued`, `JobRejected`, a dead or cancelled job) are recorded on the
request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from mailer.adapters import bulk, store
from mailer.domain.errors import EmailingDisabledError
from mailer.domain.model import ContactRequest, Recipient, Skipped
from mailer.handlers.compose import Mailer, Progress, prepare, queue
from mailer.handlers.contact import by_rule, drafts_for, sender_rights
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.jobs import (
    BULK_EMAIL,
    EnqueueJob,
    JobAttemptFailed,
    JobCancelled,
    JobQueued,
    JobRejected,
)
from misp_platform.outbox import enqueue

log = structlog.get_logger(__name__)

ACTION = "admin_email"
SKIPPED_SHOWN = 20  # recipients named in the job's final message; the rest are counted
# The job's progress: key checks up to CHECKED, signing and encrypting up to RENDERED; the jobs
# service sets 100 once the job's transaction (the mails, the events) committed.
CHECKED, RENDERED = 20, 90


async def request_bulk_email(engine: AsyncEngine, request: ContactRequest, *, request_id: str,
                             actor: Actor, scope_org_id: int | None) -> int:
    """Store the request and ask for its job, in one transaction; the number of enabled users
    in scope the sender may mail now (the job resolves them again when it runs)."""
    async with engine.begin() as conn:
        settings = await store.load_settings(conn)
        if settings.flag("MISP.disable_emailing"):
            raise EmailingDisabledError()
        recipients, _ = await _recipients(conn, request, actor, scope_org_id)
        await bulk.insert(conn, request, request_id=request_id, actor=actor,
                          scope_org_id=scope_org_id, recipients=len(recipients))
        command = EnqueueJob(request_id=request_id, job_type=BULK_EMAIL.name,
                             queue=BULK_EMAIL.default_queue, job_input=request_id,
                             data={"request_id": request_id}, org_id=actor.org_id or 0)
        await enqueue(conn, Envelope(source="/mailer", type=command.type, subject=request_id,
                                     correlationid=request_id, actor=actor,
                                     data=command.model_dump(mode="json")),
                      topic=command.topic, key=request_id)
    log.info("mailer.bulk_requested", request_id=request_id, recipients=len(recipients),
             action=request.action)
    return len(recipients)


async def _recipients(conn: AsyncConnection, request: ContactRequest, actor: Actor,
                      scope_org_id: int | None) -> tuple[list[Recipient], list[Skipped]]:
    """The enabled users in scope the sender may mail, and those they may see but not manage
    (handlers.contact.by_rule)."""
    org_ids = None if scope_org_id is None else [scope_org_id]
    users = await store.users(conn, org_ids=org_ids)
    if scope_org_id is None:  # a site admin may mail anyone
        return users, []
    roles = await store.role_flags(conn, org_ids=org_ids)
    return by_rule(sender_rights(actor, scope_org_id), users, roles, request)


def summary(mails: int, skipped: Sequence[dict[str, Any]]) -> str:
    """The job's final message: how many mails, and who got none and why."""
    text = f"Queued {mails} e-mail(s)."
    if skipped:
        named = "; ".join(f"{s['email']} ({s['reason']})" for s in skipped[:SKIPPED_SHOWN])
        more = len(skipped) - SKIPPED_SHOWN
        text += f" Not sent to: {named}" + (f"; and {more} more" if more > 0 else "") + "."
    return text


def _scaled(progress: Callable[[int, str], Awaitable[None]], low: int, high: int,
            what: str) -> Progress:
    async def report(done: int, total: int) -> None:
        await progress(low + (high - low) * done // max(total, 1), f"{what} {done}/{total}")

    return report


async def run_bulk_email(conn: AsyncConnection, mailer: Mailer, request_id: str, *,
                         job_id: int, progress: Callable[[int, str], Awaitable[None]]) -> str:
    """The job's work, in its transaction: queue one mail per eligible user in scope."""
    row = await bulk.load(conn, request_id)
    if row is None:
        raise LookupError(f"no bulk request {request_id}")
    if row.status == "done":
        return summary(row.mails or 0, row.skipped or [])
    settings = await store.load_settings(conn)
    if settings.flag("MISP.disable_emailing"):
        raise EmailingDisabledError("Emailing is currently disabled on this instance.")
    request = bulk.contact_request(row)
    actor = Actor.model_validate(row.actor)
    recipients, refused = await _recipients(conn, request, actor, row.scope_org_id)
    drafts = drafts_for(request, settings, recipients)
    keep, skipped = await prepare(mailer, drafts, settings, request_id=request_id,
                                  progress=_scaled(progress, 0, CHECKED, "Checked keys:"))
    prepared = keep, [*refused, *skipped]
    result = await queue(conn, mailer, drafts, request_id=request_id, kind=request.action,
                         action=ACTION, actor=actor,
                         settings=settings, prepared=prepared,
                         progress=_scaled(progress, CHECKED, RENDERED, "Signed:"))
    not_sent: list[dict[str, Any]]
    if result.replay:  # queued by an earlier run whose bulk_request update was lost: unlikely
        done = await store.request_row(conn, request_id)
        mails, not_sent = done.mails, list(done.skipped)
    else:
        mails, not_sent = len(result.mails), [s.as_dict() for s in result.skipped]
    await bulk.finish(conn, request_id, job_id=job_id, mails=mails, skipped=not_sent)
    mailer.wake()
    log.info("mailer.bulk_queued", request_id=request_id, job_id=job_id, mails=mails,
             skipped=len(not_sent))
    return summary(mails, not_sent)


# ---- the jobs service's answers (misp.jobs.job.v1) ---------------------------------------------


async def when_job_queued_record(conn: AsyncConnection, envelope: Envelope) -> None:
    job = JobQueued.model_validate(envelope.data).job
    if job.job_type == BULK_EMAIL.name and job.request_id is not None:
        await bulk.job_queued(conn, job.request_id, job.id)


async def when_job_rejected_record(conn: AsyncConnection, envelope: Envelope) -> None:
    rejected = JobRejected.model_validate(envelope.data)
    if rejected.job_type == BULK_EMAIL.name:
        await bulk.close(conn, status="rejected", error=rejected.reason,
                         request_id=rejected.request_id)


async def when_job_failed_record(conn: AsyncConnection, envelope: Envelope) -> None:
    failed = JobAttemptFailed.model_validate(envelope.data)
    if failed.dead:
        await bulk.close(conn, status="failed", error=failed.error, job_id=failed.job_id)


async def when_job_cancelled_record(conn: AsyncConnection, envelope: Envelope) -> None:
    cancelled = JobCancelled.model_validate(envelope.data)
    await bulk.close(conn, status="cancelled", error=cancelled.reason, job_id=cancelled.job_id)
