"""Login, logout and the forced password change (MISP's users/login, users/logout,
users/change_pw, as pages).

The login form is protected against login CSRF by a double-submit token: a random value in a
short-lived cookie and in the form, which a foreign site can neither read nor set. Once logged in,
every form carries the session's own token (viewer.py).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import CSRF_FIELD, read_form
from console.gateway import SESSION_COOKIE, ApiError
from console.pages.common import api, gateway_of, posted_form, shown_on_the_form, viewer_of
from console.viewer import load_viewer
from console.web import redirect, render, safe_target

router = APIRouter(include_in_schema=False)

LOGIN_CSRF_COOKIE = "MISP-console-login"
SESSION_MAX_AGE_S = 8 * 3600  # identity.handlers.login.SESSION_TTL


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
    session = answer.cookies.get(SESSION_COOKIE)
    if answer.status != 200 or not session:
        message = answer.body.get("message") if isinstance(answer.body, dict) else None
        return _login_page(request, token=token, email=email,
                           status_code=answer.status if answer.status >= 400 else 403,
                           message=str(message or "Login failed."))
    user = (answer.body or {}).get("User", {}) if isinstance(answer.body, dict) else {}
    target = safe_target(form.get("next"))
    if user.get("change_pw") in (True, 1, "1"):
        target = "/users/change_pw"
    response = redirect(target)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", max_age=SESSION_MAX_AGE_S, path="/")
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/users/login")
    return response


@router.post("/users/logout")
async def logout(request: Request) -> Response:
    viewer = await viewer_of(request, allow_change_pw=True)
    await posted_form(request, viewer)
    await api(request, viewer, "POST", "/users/logout")
    response = redirect("/users/login", flash="You have been logged out.", kind="info")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/users/change_pw")
async def change_pw_form(request: Request) -> Response:
    viewer = await viewer_of(request, allow_change_pw=True)
    return render(request, "change_pw.html", viewer=viewer, errors={})


@router.post("/users/change_pw")
async def change_pw(request: Request) -> Response:
    viewer = await viewer_of(request, allow_change_pw=True)
    form = await posted_form(request, viewer)
    try:
        await api(request, viewer, "POST", "/users/change_pw", json={
            "password": form["password"], "confirm_password": form["confirm_password"]})
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        return render(request, "change_pw.html", viewer=viewer, status_code=exc.status,
                      message=exc.message, errors=exc.field_errors)
    return redirect("/", flash="Password changed.")
