"""Routes of the mailer service: MISP's `admin/users/email` (to all users: a `bulk_email` job),
`admin/users/quickEmail/{id}`, `events/contact/{id}` and `/gpg.asc`, the mail log under
`/api/v1/mailer/mails` and the bulk sends under `/api/v1/mailer/requests/{id}` (MISP has no REST
endpoint for either)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from mailer.adapters import bulk, store
from mailer.domain.model import parse_contact_request, parse_quick_email
from mailer.handlers.bulk import request_bulk_email
from mailer.handlers.compose import Mailer, Queued
from mailer.handlers.contact import contact_users
from misp_contracts.events.identity import USER_TOPIC
from misp_platform.app import EngineDep
from misp_platform.auth import Admin, CurrentPrincipal, Principal
from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.consistency import caught_up_all, consistency_of
from misp_platform.misp import MispId, NotFound, as_misp, read_body, success
from misp_platform.misp.errors import request_url
from misp_platform.misp.responses import MispJSONResponse, render_value

misp = APIRouter(tags=["mailer"])
router = APIRouter(prefix="/api/v1/mailer", tags=["mailer"])


def _mailer(request: Request) -> Mailer:
    mailer: Mailer = request.app.state.mailer
    return mailer


def _report(result: Queued) -> dict[str, Any]:
    return {"request_id": result.request_id,
            "mails": [{"id": m["id"], "message_id": m["message_id"], "email": m["recipient"],
                       "user_id": render_value(m["user_id"]), "encrypted": m["encrypted"],
                       "signed": m["signed"]} for m in result.mails],
            "skipped": [s.as_dict() for s in result.skipped]}


def _scope(principal: Principal) -> int | None:
    return None if principal.is_site_admin else principal.org_id


async def _recipients_caught_up(request: Request) -> None:
    """Wait (bounded) until what decides who a mail reaches has applied every change Kafka holds:
    the mailer's users (its main consumer) and their roles' flags (the principals projection).
    A user created, moved or promoted a moment ago in identity is then mailed, or refused, as
    identity has them now (one database, as far as a client can tell; a password must never go
    to a user the sender stopped being allowed to manage)."""
    settings = request.app.state.settings
    await caught_up_all(consistency_of(request.app),
                        [(settings.main_group, (USER_TOPIC,)),
                         (settings.principals_group, PRINCIPAL_TOPICS)])


@misp.post("/admin/users/email")
async def admin_email(request: Request, principal: Admin, engine: EngineDep) -> Response:
    url = request_url(request)
    data = await read_body(request, "User")
    request_id = str(uuid.uuid4())
    with as_misp(request, "send", "e-mail"):
        parsed = parse_contact_request(data)
        await _recipients_caught_up(request)
        if parsed.recipients == "all":
            recipients = await request_bulk_email(engine, parsed, request_id=request_id,
                                                  actor=principal.actor(),
                                                  scope_org_id=_scope(principal))
            # The job's id comes later (JobQueued): `/api/v1/mailer/requests/{id}` shows it.
            return MispJSONResponse({
                **success("send", "E-mail", url,
                          message=f"E-mail job queued for {recipients} recipient(s)."),
                "request_id": request_id, "job_id": None, "recipients": str(recipients),
                "status": "pending"})
        result = await contact_users(engine, _mailer(request), parsed, request_id=request_id,
                                     actor=principal.actor(), scope_org_id=_scope(principal))
    n = len(result.mails)
    message = f"E-mails sent to {n} recipient(s)."
    if result.skipped:
        message += (" Not sent to: " + "; ".join(f"{s.email} ({s.reason})"
                                                 for s in result.skipped) + ".")
    return MispJSONResponse({**success("send", "E-mail", url, message=message),
                             **_report(result)})


@misp.post("/admin/users/quickEmail/{user_id}")
async def quick_email(user_id: MispId, request: Request, principal: Admin,
                      engine: EngineDep) -> Response:
    url = request_url(request)
    data = await read_body(request, "User")
    with as_misp(request, "send", "e-mail"):
        parsed = parse_quick_email(data, user_id)
        await _recipients_caught_up(request)
        result = await contact_users(engine, _mailer(request), parsed,
                                     request_id=str(uuid.uuid4()), actor=principal.actor(),
                                     scope_org_id=_scope(principal))
    return MispJSONResponse({**success("send", "E-mail", url, id=user_id,
                                       message="Email sent."), **_report(result)})


# MISP's events/contact mails the reporter of an event the caller can see, after finding the
# event and before reading the message. This product holds no events, so every call meets the
# answer MISP gives for an event it does not find.
INVALID_EVENT = "Invalid event"


@misp.api_route("/events/contact/{event_id}", methods=["GET", "POST", "PUT"])
async def contact_event_reporter(event_id: str, _principal: CurrentPrincipal) -> Response:
    raise NotFound(INVALID_EVENT)


@misp.get("/gpg.asc")
async def instance_public_key(request: Request, engine: EngineDep) -> Response:
    """The instance's public key, so that users can verify the signed mail (no auth)."""
    mailer = _mailer(request)
    async with engine.connect() as conn:
        settings = await store.load_settings(conn)
    await mailer.instance_key(settings)
    armored = await asyncio.to_thread(mailer.keyring.public_key)
    if not armored:
        raise NotFound("No GnuPG key is configured on this instance.")
    return Response(armored, media_type="application/pgp-keys")


@router.get("/mails")
async def mails(request: Request, principal: Admin, engine: EngineDep,
                status: str | None = None, request_id: str | None = None,
                limit: int = 100) -> Response:
    """The mail log (never bodies): what was sent, what is pending, what failed and why."""
    async with engine.connect() as conn:
        rows = await store.mails_of(conn, request_id=request_id, status=status,
                                    limit=max(1, min(limit, 1000)))
    scope = _scope(principal)
    if scope is not None:
        allowed = {u.user_id for u in await _org_users(engine, scope)}
        rows = [r for r in rows if r.user_id in allowed]
    return MispJSONResponse([{"Mail": {
        "id": str(r.id), "request_id": r.request_id, "message_id": r.message_id,
        "kind": r.kind, "action": r.action, "email": r.recipient,
        "user_id": render_value(r.user_id), "subject": r.subject, "encrypted": r.encrypted,
        "signed": r.signed, "status": r.status, "attempts": str(r.attempts),
        "error": r.last_error, "created": render_value(r.created_at),
        "sent": render_value(r.sent_at) if r.sent_at else None}} for r in rows])


@router.get("/requests/{request_id}")
async def bulk_request(request_id: str, principal: Admin, engine: EngineDep) -> Response:
    """A bulk send (never its text): its job, status, and its mails by status."""
    async with engine.connect() as conn:
        row = await bulk.load(conn, request_id) if len(request_id) <= 64 else None
        scope = _scope(principal)
        if row is None or (scope is not None and row.scope_org_id != scope):
            raise NotFound("Invalid request")
        by_status = await store.mail_counts(conn, request_id)
    return MispJSONResponse({"BulkRequest": {
        "id": row.id, "action": row.action, "subject": row.subject, "status": row.status,
        "job_id": render_value(row.job_id) if row.job_id is not None else None,
        "org_id": render_value(row.scope_org_id) if row.scope_org_id is not None else None,
        "recipients": str(row.recipients),
        "mails": str(row.mails) if row.mails is not None else None,
        "skipped": row.skipped or [], "error": row.error,
        "created": render_value(row.created_at),
        "finished": render_value(row.finished_at) if row.finished_at else None,
        "mail_status": by_status}})


async def _org_users(engine: Any, org_id: int) -> list[Any]:
    async with engine.connect() as conn:
        return await store.users(conn, org_ids=[org_id], include_disabled=True)

