"""Auth keys: MISP's advanced authkeys (auth_keys/index[/{user_id}], add/{user_id}, view,
edit, delete). The raw key of a new one is in the API's answer only: the page that answers the
form shows it once, with a "copy it now"; it is never kept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import Form
from console.gateway import ApiError
from console.pages.choices import loose_errors
from console.pages.common import (
    api,
    page_number,
    posted_form,
    records,
    shown_on_the_form,
    viewer_of,
)
from console.viewer import Viewer
from console.web import redirect, render, when

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50


def allowed_ips(text: str) -> list[str]:
    """The form's "one per line" (commas too, as MISP takes them) as a list."""
    return [part.strip() for line in text.splitlines() for part in line.split(",")
            if part.strip()]


def key_body(form: Form) -> dict[str, Any]:
    """The JSON of auth_keys/add or edit: an empty expiration is "never" (0)."""
    return {"comment": form.text("comment"), "expiration": form.text("expiration"),
            "allowed_ips": allowed_ips(form["allowed_ips"]), "read_only": form.flag("read_only")}


def expiration_day(value: Any) -> str:
    """A key's expiration (a unix time, 0 = never) as the form's date (YYYY-MM-DD)."""
    text = when(value)
    return text[:10] if text else ""


def _shown(key: dict[str, Any]) -> dict[str, Any]:
    return {**key, "expiration": expiration_day(key.get("expiration")),
            "allowed_ips": "\n".join(key.get("allowed_ips") or [])}


@router.get("/auth_keys/index")
@router.get("/auth_keys/index/{user_id}")
async def index(request: Request, user_id: int | None = None) -> Response:
    viewer = await viewer_of(request)
    page = page_number(request)
    scope = f"/{user_id}" if user_id is not None else ""
    keys = records(await api(request, viewer, "GET",
                             f"/auth_keys/index{scope}/page:{page}/limit:{PAGE_SIZE}"), "AuthKey")
    return render(request, "authkeys/index.html", viewer=viewer, keys=keys, user_id=user_id,
                  page=page, has_next=len(keys) == PAGE_SIZE, show_user=True)


async def _key_form(request: Request, viewer: Viewer, *, key: dict[str, Any], action: str,
                    user_id: Any, errors: dict[str, str] | None = None,
                    message: str | None = None, status_code: int = 200) -> Response:
    return render(request, "authkeys/form.html", viewer=viewer, key=key, action=action,
                  user_id=user_id, errors=errors or {}, message=message,
                  status_code=status_code)


async def _refused(request: Request, viewer: Viewer, exc: ApiError, form: Form, *,
                   action: str, user_id: Any) -> Response:
    """The form again with MISP's messages, or the refusal as a page."""
    if not shown_on_the_form(exc):
        raise exc
    key: dict[str, Any] = {name: form[name] for name in ("comment", "expiration", "allowed_ips")}
    key["read_only"] = form.flag("read_only")
    return await _key_form(request, viewer, key=key, action=action, user_id=user_id,
                     errors=exc.field_errors, status_code=exc.status,
                     message="; ".join([exc.message, *loose_errors(exc.errors)]))


@router.get("/auth_keys/add/{user_id}")
async def add_form(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    return await _key_form(request, viewer, key={}, action=f"/auth_keys/add/{user_id}",
                           user_id=user_id)


@router.post("/auth_keys/add/{user_id}")
async def add(request: Request, user_id: int) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    try:
        answer = await api(request, viewer, "POST", f"/auth_keys/add/{user_id}",
                           json=key_body(form))
    except ApiError as exc:
        return await _refused(request, viewer, exc, form, action=f"/auth_keys/add/{user_id}",
                              user_id=user_id)
    key = answer.get("AuthKey") or {}
    return render(request, "authkeys/shown.html", viewer=viewer, title="Auth key added",
                  authkey=key.get("authkey_raw"), user_id=user_id,
                  intro="The new key works at once.")


@router.get("/auth_keys/view/{key_id}")
async def view(request: Request, key_id: int) -> Response:
    viewer = await viewer_of(request)
    body = await api(request, viewer, "GET", f"/auth_keys/view/{key_id}")
    return render(request, "authkeys/view.html", viewer=viewer, key=body.get("AuthKey") or {},
                  user=body.get("User") or {})


@router.get("/auth_keys/edit/{key_id}")
async def edit_form(request: Request, key_id: int) -> Response:
    viewer = await viewer_of(request)
    body = await api(request, viewer, "GET", f"/auth_keys/view/{key_id}")
    key = body.get("AuthKey") or {}
    return await _key_form(request, viewer, key=_shown(key), action=f"/auth_keys/edit/{key_id}",
                           user_id=key.get("user_id"))


@router.post("/auth_keys/edit/{key_id}")
async def edit(request: Request, key_id: int) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    try:
        await api(request, viewer, "POST", f"/auth_keys/edit/{key_id}", json=key_body(form))
    except ApiError as exc:
        return await _refused(request, viewer, exc, form, action=f"/auth_keys/edit/{key_id}",
                              user_id=None)
    return redirect(f"/auth_keys/view/{key_id}", flash="AuthKey saved.")


@router.post("/auth_keys/delete/{key_id}")
async def delete(request: Request, key_id: int) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    body = await api(request, viewer, "GET", f"/auth_keys/view/{key_id}")
    user_id = str((body.get("AuthKey") or {}).get("user_id") or "")
    answer = await api(request, viewer, "POST", f"/auth_keys/delete/{key_id}")
    back = f"/auth_keys/index/{user_id}" if user_id.isdigit() else "/auth_keys/index"
    return redirect(back, flash=str(answer.get("message") or "AuthKey deleted."))
