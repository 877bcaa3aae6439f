"""MISP's TOTP paths: users/otp (a pending login's code step), users/totp_new (enrolment, by a
signed-in user or by the pending login OTP requires) and users/totp_delete/<id> (an admin's
recovery of a user who lost their device)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from identity.adapters import queries
from identity.api.auth import client_ip_of, posted_fields, request_id_of, session_answer
from identity.api.deps import EngineDep, Pepper, as_misp, resolve_user_id
from identity.domain import totp as rules
from identity.handlers import totp as handlers
from identity.handlers.second_step import ENROL, OTP, OTP_COOKIE
from misp_contracts.envelope import Actor
from misp_contracts.events.identity import UserState
from misp_platform.auth import Admin, authenticate
from misp_platform.auth.abuse import check, failed
from misp_platform.client_address import client_address
from misp_platform.misp import Forbidden, MispJSONResponse, success
from misp_platform.misp.errors import request_url

router = APIRouter(tags=["login"])


def now_of(request: Request) -> float:
    """The time codes are checked at: the app's clock (a test's fake one), else the system's."""
    clock = getattr(request.app.state, "clock", None)
    return float(clock()) if callable(clock) else time.time()


def _code(fields: dict[str, Any]) -> object:
    return fields.get("otp", fields.get("code"))


@router.post("/users/otp")
async def otp(request: Request, engine: EngineDep, pepper: Pepper) -> Response:
    """The pending login's code: the session cookie as users/login sets it, or MISP's 403."""
    ip = client_address(request)
    check(request, ip)
    fields = await posted_fields(request)
    try:
        with as_misp(request, "otp", "User"):
            pending = await handlers.pending_login(
                engine, pepper, request.cookies.get(OTP_COOKIE), OTP, now=now_of(request))
            result = await handlers.log_in_with_code(
                engine, pending, _code(fields), ip=client_ip_of(request),
                user_agent=request.headers.get("user-agent"), pepper=pepper,
                now=now_of(request), request_id=request_id_of(request))
    except Forbidden:
        failed(request, ip)
        raise
    return await session_answer(request, engine, result)


def _pending_token(request: Request) -> str | None:
    """A pending login's cookie, when the request authenticates by nothing else."""
    headers = request.headers
    if headers.get("authorization") or headers.get("x-misp-auth"):
        return None
    if request.cookies.get("MISP-session"):
        return None
    return request.cookies.get(OTP_COOKIE)


async def _enroller(request: Request, engine: EngineDep,
                    pepper: str) -> tuple[UserState, handlers.Pending | None, Actor]:
    """Who enrols: the pending login OTP requires, else the request's principal."""
    token = _pending_token(request)
    if token is not None:
        pending = await handlers.pending_login(engine, pepper, token, ENROL,
                                               now=now_of(request))
        user = pending.user
        return user, pending, Actor(user_id=user.id, email=user.email, org_id=user.org_id,
                                    client_ip=client_address(request),
                                    request_id=request_id_of(request))
    principal = await authenticate(request)
    async with engine.connect() as conn:
        loaded = await queries.get_user(conn, principal.user_id)
    if loaded is None:
        raise Forbidden("Invalid user")
    return loaded.state, None, principal.actor()


@router.get("/users/totp_new")
async def totp_new(request: Request, engine: EngineDep, pepper: Pepper) -> dict[str, Any]:
    """A new secret to enrol (each GET makes another): the secret, its otpauth:// URI and the
    QR code of the URI (SVG). Shown to its owner only, once."""
    with as_misp(request, "totp_new", "User"):
        user, _pending, _actor = await _enroller(request, engine, pepper)
        enrolment = await handlers.new_enrolment(engine, user, pepper=pepper,
                                                 now=now_of(request))
    return {"User": {"id": str(user.id), "email": user.email}, "secret": enrolment.secret,
            "provisioning_uri": enrolment.provisioning_uri, "issuer": enrolment.issuer,
            "qrcode": enrolment.qrcode}


@router.post("/users/totp_new")
async def totp_confirm(request: Request, engine: EngineDep, pepper: Pepper) -> Response:
    """A code of the secret being enrolled makes it active; for the pending login OTP requires,
    the answer is the login's (the session cookie)."""
    fields = await posted_fields(request)
    with as_misp(request, "totp_new", "User"):
        user, pending, actor = await _enroller(request, engine, pepper)
        if pending is not None:
            result = await handlers.enrol_pending_login(
                engine, pending, _code(fields), ip=client_ip_of(request),
                user_agent=request.headers.get("user-agent"), pepper=pepper,
                now=now_of(request), request_id=request_id_of(request))
            return await session_answer(request, engine, result)
        await handlers.confirm_enrolment(engine, user, _code(fields), pepper=pepper,
                                         now=now_of(request), actor=actor)
    return MispJSONResponse(success("totp_new", "User", "/users/totp_new", id=user.id,
                                    message=rules.ENROLLED))


@router.api_route("/users/totp_delete/{user_id}", methods=["POST", "DELETE"])
async def totp_delete(user_id: str, request: Request, principal: Admin,
                      engine: EngineDep) -> dict[str, Any]:
    """An admin removes a user's TOTP (MISP: site admins; org admins for their org's users but
    site admins); the user's next login asks for no code, or for an enrolment when OTP is
    required."""
    target = resolve_user_id(user_id, principal)
    with as_misp(request, "totp_delete", "User", target):
        await handlers.remove_totp(engine, principal, principal.actor(), target)
    return success("totp_delete", "User", request_url(request), id=target,
                   message=rules.DELETED)
