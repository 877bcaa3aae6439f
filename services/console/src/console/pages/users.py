"""Users: MISP's "List Users" (admin/users/index, with its filters and search), a user's page
(admin/users/view), "Add User" (admin/users/add), edit, delete, and the reset of a user's
authkey (users/resetauthkey). A new key is shown once, on the page that answers the form: it is
never kept (no cookie, no redirect carries it)."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import Form
from console.gateway import ApiError
from console.pages.choices import default_role, loose_errors, org_options, role_choices
from console.pages.common import (
    api,
    page_number,
    posted_form,
    records,
    shown_on_the_form,
    viewer_of,
)
from console.viewer import Viewer
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
# The index's filters, as MISP names them (named parameters of admin/users/index).
USER_FILTERS = ("value", "searchemail", "searchorg", "searchrole", "disabled", "searchinactive")
# The user's flags on the add and edit forms (MISP's checkboxes), with their labels.
USER_FLAGS = (
    ("autoalert", "Receive alerts when events are published"),
    ("contactalert", "Receive alerts from \"contact reporter\" requests"),
    ("termsaccepted", "Terms accepted"),
    ("change_pw", "Must change the password at the next login"),
    ("disabled", "Disable this user account"),
)
CONFIRM_MISMATCH = "Password confirmation does not match."  # identity.domain.passwords
AUTHKEY_UPDATED = "Authkey updated: "


def named(values: dict[str, str]) -> str:
    """`/value:foo/searchorg:2` from the filters that are set (MISP's named parameters)."""
    parts = []
    for key, value in values.items():
        text = value.strip()
        if text:
            parts.append(f"/{key}:{text.replace('/', ' ')}")
    return "".join(parts)


def user_body(form: Form, *, creating: bool, site_admin: bool) -> tuple[dict[str, Any],
                                                                      dict[str, str]]:
    """The JSON of admin/users/add or edit from the form, and the errors the console finds
    itself (a password confirmation that differs: MISP checks it on its own form only)."""
    body: dict[str, Any] = {"email": form.text("email")}
    if (site_admin or creating) and form.text("org_id"):
        body["org_id"] = form.text("org_id")
    if form.text("role_id"):
        body["role_id"] = form.text("role_id")
    if form.text("nids_sid"):
        body["nids_sid"] = form.text("nids_sid")
    gpgkey = form["gpgkey"].strip()
    if gpgkey or not creating:
        body["gpgkey"] = gpgkey
    for name, _ in USER_FLAGS:
        body[name] = form.flag(name)
    errors: dict[str, str] = {}
    password = form["password"]
    if password:
        if password != form["confirm_password"]:
            errors["confirm_password"] = CONFIRM_MISMATCH
        body["password"] = password
    return body, errors


def key_of_reset(message: Any) -> str | None:
    """The new key in users/resetauthkey's answer (`Authkey updated: <key>`)."""
    text = str(message or "")
    if not text.startswith(AUTHKEY_UPDATED):
        return None
    key = text[len(AUTHKEY_UPDATED):].strip()
    return key or None


@router.get("/admin/users/index")
@router.get("/admin/users")
async def index(request: Request) -> Response:
    viewer = await viewer_of(request)
    filters = {key: request.query_params.get(key, "") for key in USER_FILTERS}
    page = page_number(request)
    # The organisation filter is an id (a link from an organisation's page fills it): a list
    # of every organisation would cost the page a megabyte on an instance with thousands.
    body, roles_body = await asyncio.gather(
        api(request, viewer, "GET",
            f"/admin/users/index{named(filters)}/page:{page}/limit:{PAGE_SIZE}"),
        api(request, viewer, "GET", "/roles/index"))
    users = records(body, "User")
    roles = role_choices(roles_body, site_admin=True)
    return render(request, "users/index.html", viewer=viewer, users=users, filters=filters,
                  page=page, has_next=len(users) == PAGE_SIZE, roles=roles)


async def _keys_of(request: Request, viewer: Viewer, user_id: int) -> list[dict[str, Any]] | None:
    """The user's keys, or None when the viewer may not list them."""
    try:
        return records(await api(request, viewer, "GET", f"/auth_keys/index/{user_id}"),
                       "AuthKey")
    except ApiError as exc:
        if exc.status not in (403, 404):
            raise
        return None


@router.get("/admin/users/view/{user_id}")
async def view(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    body, keys = await asyncio.gather(api(request, viewer, "GET", f"/admin/users/view/{user_id}"),
                                      _keys_of(request, viewer, user_id))
    return render(request, "users/view.html", viewer=viewer, user=body.get("User") or {},
                  role=body.get("Role") or {}, org=body.get("Organisation") or {}, keys=keys)


async def _user_form(request: Request, viewer: Viewer, *, user: dict[str, Any],
                     creating: bool, errors: dict[str, str] | None = None,
                     message: str | None = None, status_code: int = 200,
                     roles_body: Any = None, notice: str | None = None) -> Response:
    keep = None if creating else user.get("role_id")
    if roles_body is None:
        roles_body, orgs = await asyncio.gather(api(request, viewer, "GET", "/roles/index"),
                                                org_options(request, viewer))
    else:
        orgs = await org_options(request, viewer)
    roles = role_choices(roles_body, site_admin=viewer.is_site_admin, keep=keep)
    return render(request, "users/form.html", viewer=viewer, user=user, creating=creating,
                  orgs=orgs, roles=roles, flags=USER_FLAGS,
                  errors=errors or {}, message=message, status_code=status_code,
                  notice=notice)


def _as_shown(body: dict[str, Any], form: Form) -> dict[str, Any]:
    """What the form shows again after a refusal: what was sent, never the password."""
    shown = {k: v for k, v in body.items() if k != "password"}
    shown["notify"] = form.flag("notify")
    return shown


@router.get("/admin/users/add")
async def add_form(request: Request) -> Response:
    viewer = await viewer_of(request)
    roles_body = await api(request, viewer, "GET", "/roles/index")
    user = {"org_id": str(viewer.org_id), "role_id": default_role(roles_body),
            "change_pw": True, "autoalert": False}
    return await _user_form(request, viewer, user=user, creating=True, roles_body=roles_body)


@router.post("/admin/users/add")
async def add(request: Request) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    body, errors = user_body(form, creating=True, site_admin=viewer.is_site_admin)
    if errors:
        return await _user_form(request, viewer, user=_as_shown(body, form), creating=True,
                                errors=errors, message="Could not add User", status_code=400)
    try:
        answer = await api(request, viewer, "POST", "/admin/users/add", json=body)
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        return await _user_form(request, viewer, user=_as_shown(body, form), creating=True,
                                errors=exc.field_errors, status_code=exc.status,
                                message="; ".join([exc.message, *loose_errors(exc.errors)]))
    user = answer.get("User") or {}
    notice = None
    if form.flag("notify"):
        notice = await _welcome(request, viewer, user)
    return render(request, "users/added.html", viewer=viewer, user=user,
                  authkey=user.get("authkey"), notice=notice)


async def _welcome(request: Request, viewer: Viewer, user: dict[str, Any]) -> str:
    """MISP's "Send credentials automatically": the mailer's welcome mail, with a temporary
    password, to the new user."""
    try:
        answer = await api(request, viewer, "POST", "/admin/users/email", json={
            "action": "welcome", "recipient": "one", "recipientEmailList": str(user.get("id"))})
    except ApiError as exc:
        return f"The welcome e-mail was not sent: {exc.message}"
    return f"Welcome e-mail: {answer.get('message') or 'sent.'}"


@router.get("/admin/users/edit/{user_id}")
async def edit_form(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    body = await api(request, viewer, "GET", f"/admin/users/view/{user_id}")
    return await _user_form(request, viewer, user=body.get("User") or {}, creating=False)


@router.post("/admin/users/edit/{user_id}")
async def edit(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    body, errors = user_body(form, creating=False, site_admin=viewer.is_site_admin)
    shown = {**_as_shown(body, form), "id": str(user_id)}
    if errors:
        return await _user_form(request, viewer, user=shown, creating=False, errors=errors,
                                message="Could not edit User", status_code=400)
    try:
        await api(request, viewer, "POST", f"/admin/users/edit/{user_id}", json=body)
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        return await _user_form(request, viewer, user=shown, creating=False,
                                errors=exc.field_errors, status_code=exc.status,
                                message="; ".join([exc.message, *loose_errors(exc.errors)]))
    return redirect(f"/admin/users/view/{user_id}", flash="User saved.")


@router.get("/admin/users/edit/{user_id}/gpgkey")
async def gpgkey_candidates(request: Request, user_id: int) -> Response:
    """MISP's "Fetch GnuPG key": the key server's keys for the user's address."""
    viewer = await viewer_of(request)
    user = (await api(request, viewer, "GET", f"/admin/users/view/{user_id}")).get("User") or {}
    address = str(user.get("email") or "")
    keys: list[dict[str, Any]] = []
    message = None
    try:
        found = await api(request, viewer, "GET", f"/users/searchGpgKey/{quote(address)}")
        keys = [k for k in found if isinstance(k, dict)] if isinstance(found, list) else []
    except ApiError as exc:
        message = exc.message
    return render(request, "users/gpgkeys.html", viewer=viewer, user_id=user_id, email=address,
                  keys=keys, message=message)


@router.post("/admin/users/edit/{user_id}/gpgkey")
async def gpgkey_fetch(request: Request, user_id: int) -> Response:
    """The chosen key, checked by identity, filled into the edit form (saved with the form)."""
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    user = (await api(request, viewer, "GET", f"/admin/users/view/{user_id}")).get("User") or {}
    address = str(user.get("email") or "")
    fingerprint = form.text("fingerprint")
    try:
        key = await api(request, viewer, "GET",
                        f"/users/fetchPGPKey/{quote(address)}/{quote(fingerprint)}")
    except ApiError as exc:
        return render(request, "users/gpgkeys.html", viewer=viewer, user_id=user_id,
                      email=address, keys=[], message=exc.message, status_code=exc.status)
    return await _user_form(request, viewer, user={**user, "gpgkey": str(key)}, creating=False,
                            notice=f"GnuPG key {fingerprint} fetched: save to keep it.")


@router.post("/admin/users/delete/{user_id}")
async def delete(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    answer = await api(request, viewer, "POST", f"/admin/users/delete/{user_id}")
    return redirect("/admin/users/index", flash=str(answer.get("message") or "User deleted."))


@router.post("/users/resetauthkey/{user_id}")
async def reset_authkey(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    answer = await api(request, viewer, "POST", f"/users/resetauthkey/{user_id}")
    return render(request, "authkeys/shown.html", viewer=viewer,
                  authkey=key_of_reset(answer.get("message")), title="New authkey",
                  user_id=user_id,
                  intro="The user's earlier keys no longer work. This is the new key.")
