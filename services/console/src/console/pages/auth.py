"""Login, logout and the forced password change (MISP's users/login, users/logout,
users/change_pw, as pages); a login that owes a TOTP code or enrolment goes on in pages/totp.py.

The login form is protected against login CSRF by a double-submit token: a random value in a
short-lived cookie and in the form, which a foreign site can neither read nor set. Once logged in,
every form carries the session's own token (viewer.py).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import CSRF_FIELD, read_form
from console.gateway import SESSION_COOKIE, Answer, ApiError
from console.pages.common import api, gateway_of, posted_form, shown_on_the_form, viewer_of
from console.viewer import load_viewer
from console.web import redirect, render, safe_target

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "MISP-console-login"
SESSION_MAX_AGE_S = 8 * 3600  # identity.handlers.login.SESSION_TTL
# A login whose password was right and that waits for a TOTP code or enrolment
# (identity.handlers.second_step: its cookie and the longest life of a pending login).
OTP_COOKIE = "MISP-otp"
PENDING_MAX_AGE_S = 15 * 60
OTP_PAGE = "/users/otp"
ENROL_PAGE = "/users/totp_new"
CHANGE_PW_PAGE = "/users/change_pw"


def _login_page(request: Request, *, token: str, message: str | None = None,
                email: str = "", status_code: int = 200) -> Response:
    response = render(request, "login.html", login_token=token, message=message, email=email,
                      next=safe_target(request.query_params.get("next")),
                      status_code=status_code)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=3600, path="/users/login")
    return response


@router.get("/users/login")
async def login_form(request: Request) -> Response:
    if await load_viewer(request, gateway_of(request)) is not None:
        return redirect(safe_target(request.query_params.get("next")))
    return _login_page(request, token=secrets.token_urlsafe(24))


@router.post("/users/login")
async def login(request: Request) -> Response:
    form = await read_form(request)
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    token = secrets.token_urlsafe(24)
    presented = form.get(CSRF_FIELD) or ""
    email = form.text("email")
    if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
        return _login_page(request, token=token, email=email, status_code=403,
                           message="The login form expired. Please try again.")
    answer = await gateway_of(request).send(
        request, "POST", "/users/login", json={"email": email, "password": form["password"]},
        session="")
    pending = answer.cookies.get(OTP_COOKIE)
    target = safe_target(form.get("next"))
    if answer.status == 302 and pending:
        # The password was right; MISP's second step: a TOTP code, or the enrolment OTP requires
        # (the page asked for goes along, for after the step).
        step = redirect(with_next(ENROL_PAGE if answer.headers.get("location") == ENROL_PAGE
                                  else OTP_PAGE, target))
        keep_pending(request, step, pending)
        step.delete_cookie(LOGIN_CSRF_COOKIE, path="/users/login")
        return step
    session = answer.cookies.get(SESSION_COOKIE)
    if answer.status != 200 or not session:
        message = answer.body.get("message") if isinstance(answer.body, dict) else None
        return _login_page(request, token=token, email=email,
                           status_code=answer.status if answer.status >= 400 else 403,
                           message=str(message or "Login failed."))
    response = logged_in(request, answer, session, target)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/users/login")
    return response


def with_next(page: str, target: str) -> str:
    """`page`, carrying where the user goes once it is done (unless that is the home page)."""
    return page if target == "/" else f"{page}?{urlencode({'next': target})}"


def logged_in(request: Request, answer: Answer, session: str, target: str,
              flash: str | None = None) -> Response:
    """The browser holds the new session (a pending login's cookie dropped) and goes on to
    `target`, or to the password change the user owes first (and to `target` after it)."""
    user = (answer.body or {}).get("User", {}) if isinstance(answer.body, dict) else {}
    if user.get("change_pw") in (True, 1, "1"):
        target = with_next(CHANGE_PW_PAGE, target)
    response = redirect(target, flash=flash)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", max_age=SESSION_MAX_AGE_S, path="/")
    response.delete_cookie(OTP_COOKIE, path="/users")
    return response


def keep_pending(request: Request, response: Response, token: str) -> None:
    """The pending login's cookie, for the console's second-step pages only (SameSite=Strict:
    no other site's form can post it, so those forms need no CSRF token)."""
    response.set_cookie(OTP_COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=PENDING_MAX_AGE_S,
                        path="/users")


@router.post("/users/logout")
async def logout(request: Request) -> Response:
    viewer = await viewer_of(request, allow_change_pw=True)
    await posted_form(request, viewer)
    await api(request, viewer, "POST", "/users/logout")
    response = redirect("/users/login", flash="You have been logged out.", kind="info")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get(CHANGE_PW_PAGE)
async def change_pw_form(request: Request) -> Response:
    viewer = await viewer_of(request, allow_change_pw=True)
    return render(request, "change_pw.html", viewer=viewer, errors={},
                  next=safe_target(request.query_params.get("next")))


@router.post(CHANGE_PW_PAGE)
async def change_pw(request: Request) -> Response:
    viewer = await viewer_of(request, allow_change_pw=True)
    form = await posted_form(request, viewer)
    target = safe_target(form.get("next"))
    try:
        await api(request, viewer, "POST", "/users/change_pw", json={
            "password": form["password"], "confirm_password": form["confirm_password"]})
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        return render(request, "change_pw.html", viewer=viewer, status_code=exc.status,
                      message=exc.message, errors=exc.field_errors, next=target)
    return redirect(target, flash="Password changed.")
