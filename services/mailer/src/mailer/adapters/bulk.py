"""Reads and writes of `bulk_request`, the bulk sends waiting for or done by their `bulk_email`
job (in the caller's transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mailer.adapters.tables import bulk_request
from mailer.domain.model import ContactRequest
from misp_contracts.envelope import Actor

OPEN = ("pending", "queued")  # statuses a job's outcome may still change


async def insert(conn: AsyncConnection, request: ContactRequest, *, request_id: str,
                 actor: Actor, scope_org_id: int | None, recipients: int) -> None:
    await conn.execute(bulk_request.insert().values(
        id=request_id, action=request.action, subject=request.subject, body=request.body,
        custom_message=request.custom_message, scope_org_id=scope_org_id,
        actor=actor.model_dump(mode="json", exclude_none=True), recipients=recipients))


async def load(conn: AsyncConnection, request_id: str, *, lock: bool = False) -> Any:
    stmt = select(bulk_request).where(bulk_request.c.id == request_id)
    return (await conn.execute(stmt.with_for_update() if lock else stmt)).first()


def contact_request(row: Any) -> ContactRequest:
    """The validated request as it was asked for (all users)."""
    return ContactRequest(action=row.action, recipients="all", subject=row.subject,
                          body=row.body, custom_message=row.custom_message)


async def job_queued(conn: AsyncConnection, request_id: str, job_id: int) -> bool:
    """The jobs service's answer; False when the request is not one of ours."""
    done = await conn.execute(
        bulk_request.update().where(bulk_request.c.id == request_id)
        .values(job_id=job_id, status=case((bulk_request.c.status == "pending", "queued"),
                                           else_=bulk_request.c.status))
        .returning(bulk_request.c.id))
    return done.first() is not None


async def close(conn: AsyncConnection, *, status: str, error: str,
                request_id: str | None = None, job_id: int | None = None) -> bool:
    """An outcome decided outside the job's own run (rejected, dead, cancelled)."""
    where = (bulk_request.c.id == request_id if request_id is not None
             else bulk_request.c.job_id == job_id)
    done = await conn.execute(
        bulk_request.update().where(where, bulk_request.c.status.in_(OPEN))
        .values(status=status, error=error[:2000], finished_at=func.now())
        .returning(bulk_request.c.id))
    return done.first() is not None


async def finish(conn: AsyncConnection, request_id: str, *, job_id: int, mails: int,
                 skipped: list[dict[str, Any]]) -> None:
    await conn.execute(bulk_request.update().where(bulk_request.c.id == request_id).values(
        status="done", job_id=job_id, mails=mails, skipped=skipped, error=None,
        finished_at=func.now()))
