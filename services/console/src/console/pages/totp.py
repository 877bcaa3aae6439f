"""TOTP two-factor login as pages: the code step of a login (MISP's users/otp), enrolment with a
QR code (users/totp_new: by a signed-in user, or by a login OTP requires), the user's own page
with its TOTP status (users/view/me) and an admin's removal (users/totp_delete/<id>).

A login that waits for its second step holds identity's pending-login cookie (SameSite=Strict,
path /users), forwarded to the API by these pages only; it is no session. The page the login was
for (`next`) goes through the step's form, and the user lands there once the step is done."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import read_form
from console.gateway import SESSION_COOKIE, Answer, ApiError
from console.pages.auth import OTP_COOKIE, logged_in
from console.pages.common import api, gateway_of, posted_form, viewer_of
from console.viewer import Viewer, load_viewer
from console.web import redirect, render, safe_target

router = APIRouter(include_in_schema=False)

EXPIRED = "Your login has expired. Please log in again."


def _message(answer: Answer, default: str) -> str:
    body = answer.body
    return str(body.get("message") or default) if isinstance(body, dict) else default


def _pending(request: Request) -> dict[str, str] | None:
    """The pending login's cookie, to forward, when the browser has no session."""
    token = request.cookies.get(OTP_COOKIE)
    if not token or request.cookies.get(SESSION_COOKIE):
        return None
    return {OTP_COOKIE: token}


def _start_again(message: str = EXPIRED) -> Response:
    response = redirect("/users/login", flash=message, kind="error")
    response.delete_cookie(OTP_COOKIE, path="/users")
    return response


async def _second_step(request: Request, path: str, code: str, then: str) -> Response | None:
    """POST the code of a pending login: logged in (the session cookie), back to the login when
    the pending login is gone, else None (a wrong code)."""
    pending = _pending(request)
    if pending is None:
        return _start_again()
    answer = await gateway_of(request).send(request, "POST", path, json={"otp": code},
                                            session="", cookies=pending)
    session = answer.cookies.get(SESSION_COOKIE)
    if answer.status == 200 and session:
        return logged_in(request, answer, session, then,
                         flash="The OTP is correct and now active for your account."
                         if path.endswith("totp_new") else None)
    if "log in again" in _message(answer, "") or answer.status == 429:
        return _start_again(_message(answer, EXPIRED))
    return None


@router.get("/users/otp")
async def otp_form(request: Request) -> Response:
    if _pending(request) is None:
        return _start_again()
    return render(request, "users/otp.html", next=safe_target(request.query_params.get("next")))


@router.post("/users/otp")
async def otp(request: Request) -> Response:
    form = await read_form(request)
    target = safe_target(form.get("next"))
    done = await _second_step(request, "/users/otp", form.text("otp"), target)
    if done is not None:
        return done
    return render(request, "users/otp.html", status_code=403, next=target,
                  message="The OTP is incorrect or has expired")


async def _enrolment(request: Request, viewer: Viewer | None) -> dict[str, Any] | Response:
    """A new secret to enrol, or where to go when there is none to give."""
    if viewer is not None:
        try:
            body: dict[str, Any] = await api(request, viewer, "GET", "/users/totp_new")
        except ApiError as exc:
            if exc.status != 403:
                raise
            return redirect("/users/view/me", flash=exc.message, kind="error")
        return body
    pending = _pending(request)
    if pending is None:
        return _start_again()
    answer = await gateway_of(request).send(request, "GET", "/users/totp_new", session="",
                                            cookies=pending)
    if answer.status != 200 or not isinstance(answer.body, dict):
        return _start_again(_message(answer, EXPIRED))
    return answer.body


@router.get("/users/totp_new")
async def totp_new_form(request: Request) -> Response:
    viewer = await load_viewer(request, gateway_of(request))
    enrolment = await _enrolment(request, viewer)
    if isinstance(enrolment, Response):
        return enrolment
    return render(request, "users/totp_new.html", viewer=viewer, enrolment=enrolment,
                  next=safe_target(request.query_params.get("next")))


@router.post("/users/totp_new")
async def totp_new(request: Request) -> Response:
    viewer = await load_viewer(request, gateway_of(request))
    if viewer is None:
        form = await read_form(request)
        target = safe_target(form.get("next"))
        done = await _second_step(request, "/users/totp_new", form.text("otp"), target)
        if done is not None:
            return done
        message = "The OTP is incorrect or has expired."
    else:
        form = await posted_form(request, viewer)
        try:
            answer = await api(request, viewer, "POST", "/users/totp_new",
                               json={"otp": form.text("otp")})
        except ApiError as exc:
            if exc.status not in (400, 403):
                raise
            message = exc.message
        else:
            return redirect("/users/view/me", flash=str(answer.get("message") or "TOTP set."))
    # The secret shown before stays the one to prove: its QR code is not shown again.
    return render(request, "users/totp_new.html", viewer=viewer, enrolment=None,
                  message=message, status_code=400, next=safe_target(form.get("next")))


@router.get("/users/view/me")
async def me(request: Request) -> Response:
    viewer = await viewer_of(request)
    body = await api(request, viewer, "GET", "/users/view/me")
    return render(request, "users/me.html", viewer=viewer, user=body.get("User") or {},
                  role=body.get("Role") or {}, org=body.get("Organisation") or {})


@router.post("/users/totp_delete/{user_id}")
async def totp_delete(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    answer = await api(request, viewer, "POST", f"/users/totp_delete/{user_id}")
    back = "/users/view/me" if user_id == viewer.id else f"/admin/users/view/{user_id}"
    return redirect(back, flash=str(answer.get("message") or "User TOTP deleted."))
