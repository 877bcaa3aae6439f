"""users/login (form or JSON) and users/logout, with a server-side session cookie that every
service accepts (misp_platform.auth.sessions), or a pending login when OTP applies (api/totp.py
takes its second step); users/forgot and the reset links it mails
(users/password_reset/<token>)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.responses import Response

from identity.adapters.store import SqlUnitOfWork
from identity.api.deps import EngineDep, Pepper, as_misp, fresh_reset_link
from identity.handlers import login as handlers
from identity.handlers import password_reset, totp
from identity.handlers.second_step import CHALLENGE_TTL, OTP_COOKIE, PATHS, SecondStep
from identity.handlers.users import view_of
from misp_platform.auth import abuse
from misp_platform.auth.dependency import TITLE_CSRF, AuthFailure, record_failure, session_key
from misp_platform.auth.sessions import (
    CSRF_HEADER,
    CSRF_REFUSED,
    csrf_token,
    csrf_valid,
    session_hmac,
)
from misp_platform.client_address import client_address
from misp_platform.misp import (
    BadRequest,
    Forbidden,
    InvalidJSON,
    MispJSONResponse,
    message_body,
    unwrap,
)

router = APIRouter(tags=["login"])

MAX_BODY = 64 * 1024


async def posted_fields(request: Request) -> dict[str, Any]:
    """The fields of a login form (`data[User][...]`) or a JSON body (bare or under "User"),
    bounded; bad JSON is MISP's 4xx."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise BadRequest("Request too large.")
    fields: Any
    if "application/x-www-form-urlencoded" in request.headers.get("content-type", ""):
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        fields = {k.removeprefix("data[User][").rstrip("]"): v for k, v in form.items()}
    else:
        try:
            fields = unwrap(json.loads(raw) if raw.strip() else {}, "User")
        except ValueError as exc:
            raise InvalidJSON() from exc
    return fields if isinstance(fields, dict) else {}


async def _credentials(request: Request) -> tuple[str, str]:
    fields = await posted_fields(request)
    email = fields.get("email", fields.get("username"))
    password = fields.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        raise Forbidden(handlers.BAD_CREDENTIALS)
    return email, password


def client_ip_of(request: Request) -> str:
    """The caller's address (behind the trusted proxies: misp_platform.client_address), or
    "unknown"."""
    return client_address(request) or "unknown"


def request_id_of(request: Request) -> str | None:
    """The request id the platform's middleware set on this request, if any."""
    value = (request.scope.get("state") or {}).get("request_id")
    return value if isinstance(value, str) else None


@router.post("/users/login")
async def login(request: Request, engine: EngineDep, pepper: Pepper) -> Response:
    """A blocked address, or one past its failure budget, gets a 429 before its password costs
    an argon2 check or its failure a write (misp_platform.auth.abuse)."""
    abuse.check(request, client_address(request))
    email, password = await _credentials(request)
    try:
        with as_misp(request, "login", "User"):
            result = await handlers.login(engine, username=email, password=password,
                                          ip=client_ip_of(request),
                                          user_agent=request.headers.get("user-agent"),
                                          pepper=pepper, request_id=request_id_of(request))
    except Forbidden:
        abuse.failed(request, client_address(request))
        raise
    if isinstance(result, SecondStep):
        return pending_login_answer(request, result)
    return await session_answer(request, engine, result)


def pending_login_answer(request: Request, step: SecondStep) -> Response:
    """The password was right and OTP applies: no session, but MISP's redirect to its second
    step (users/otp or users/totp_new) with the pending login's HttpOnly cookie."""
    url = PATHS[step.purpose]
    response = MispJSONResponse({"name": step.message, "message": step.message, "url": url},
                                status_code=302, headers={"Location": url})
    response.set_cookie(OTP_COOKIE, step.token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https",
                        max_age=int(CHALLENGE_TTL[step.purpose].total_seconds()), path="/users")
    return response


async def session_answer(request: Request, engine: AsyncEngine,
                         result: handlers.LoggedIn) -> Response:
    """A login's answer: the user's view and the session cookie (a pending login's cookie
    cleared)."""
    body = await view_of(SqlUnitOfWork(engine), result.user)
    response = MispJSONResponse(body)
    # Secure over HTTPS: the scheme is the gateway's X-Forwarded-Proto when the peer is a
    # trusted proxy (misp_platform.client_address.ForwardedProtoMiddleware), else the peer's own
    response.set_cookie(handlers.SESSION_COOKIE, result.token, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https",
                        max_age=int(handlers.SESSION_TTL.total_seconds()), path="/")
    if OTP_COOKIE in request.cookies:
        response.delete_cookie(OTP_COOKIE, path="/users")
    return response


@router.post("/users/logout")
async def logout(request: Request, engine: EngineDep, pepper: Pepper) -> Response:
    """POST only: a GET that logs out can be fired by any page the user visits (an image, a
    link); GET answers 405 in MISP's shape. (PyMISP never calls users/logout.) Ending a live
    session takes its CSRF token too, or any site could log the user out; without a cookie, or
    with one of no live session, it answers as it always did."""
    token = request.cookies.get(handlers.SESSION_COOKIE)
    if token and not csrf_valid(pepper, token, request.headers.get(CSRF_HEADER)):
        user = await handlers.session_user(engine, pepper, token)
        if user is not None:
            ip = client_address(request)
            abuse.failed(request, ip)
            await record_failure(engine, request.app.state.settings.service, AuthFailure(
                "csrf", CSRF_REFUSED, TITLE_CSRF, key=session_key(session_hmac(pepper, token)),
                user_id=user.id, email=user.email), request, ip)
            raise Forbidden(CSRF_REFUSED)
    await handlers.logout(engine, pepper, token, ip=client_ip_of(request),
                          request_id=request_id_of(request))
    response = MispJSONResponse(message_body("Logged out."))
    response.delete_cookie(handlers.SESSION_COOKIE, path="/")
    if OTP_COOKIE in request.cookies:
        await totp.cancel_pending(engine, pepper, request.cookies.get(OTP_COOKIE))
        response.delete_cookie(OTP_COOKIE, path="/users")
    return response


@router.get("/api/v1/identity/session")
async def session(request: Request, engine: EngineDep, pepper: Pepper) -> dict[str, Any]:
    """Who the session cookie belongs to, and the CSRF token its unsafe requests must send
    (`X-CSRF-Token`) to any service: the web console holds no pepper to derive it."""
    token = request.cookies.get(handlers.SESSION_COOKIE)
    user = await handlers.session_user(engine, pepper, token)
    if user is None or token is None:
        raise Forbidden("Not logged in.")
    return {**await view_of(SqlUnitOfWork(engine), user), "csrf_token": csrf_token(pepper, token)}


@router.post("/users/forgot")
async def forgot(request: Request, engine: EngineDep) -> Response:
    """MISP's "forgot password" (`Security.allow_password_forgotten`): the same answer whether
    the address has an account or not."""
    abuse.check(request, client_address(request))
    email = (await posted_fields(request)).get("email")
    with as_misp(request, "reset", "password"):
        message = await password_reset.forgot_password(
            engine, email=email, ip=client_ip_of(request), request_id=request_id_of(request))
    return MispJSONResponse(message_body(message))


@router.get("/users/password_reset/{token}")
async def password_reset_link(token: str, request: Request, engine: EngineDep) -> Response:
    """Whether a reset link may still set a password (an unknown, used, replaced or expired link
    gets one and the same 404): `{"valid": true, "email": "a***@example.test"}`."""
    with as_misp(request, "password_reset", "User"):
        status = await fresh_reset_link(
            request, lambda: password_reset.reset_link_status(engine, token))
    return MispJSONResponse(status)


@router.post("/users/password_reset/{token}")
async def password_reset_by_link(token: str, request: Request, engine: EngineDep) -> Response:
    """The link's owner sets a new password (`password`, `confirm_password`) under the policy;
    the link is used up and the user's sessions end."""
    body = await posted_fields(request)
    with as_misp(request, "password_reset", "User"):
        await fresh_reset_link(request, lambda: password_reset.reset_link_status(engine, token))
        await password_reset.reset_password_by_link(
            engine, token, body, ip=client_ip_of(request), request_id=request_id_of(request))
    return MispJSONResponse(message_body("Password changed. You can log in with it now."))
