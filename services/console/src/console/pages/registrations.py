"""Registrations: MISP's inbox of self-registrations (users/registrations), with accept (an
organisation and a role for the new user) and discard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.gateway import ApiError
from console.pages.choices import Options, default_role, loose_errors, org_options, role_choices
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


def requested_org(orgs: Options, data: Any) -> str | None:
    """The organisation a request names (`org_name`), when one of that name exists."""
    name = data.get("org_name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        return None
    for value, text in orgs:
        if text.lower() == name.lower():
            return value
    return None


async def _inbox(request: Request, viewer: Viewer, page: int | None) -> list[dict[str, Any]]:
    paging = f"/page:{page}/limit:{PAGE_SIZE}" if page else ""
    return records(await api(request, viewer, "GET", f"/users/registrations/index{paging}"),
                   "Inbox")


@router.get("/users/registrations")
@router.get("/users/registrations/index")
async def index(request: Request) -> Response:
    viewer = await viewer_of(request)
    page = page_number(request)
    rows = await _inbox(request, viewer, page)
    return render(request, "registrations/index.html", viewer=viewer, rows=rows, page=page,
                  has_next=len(rows) == PAGE_SIZE)


async def _registration(request: Request, viewer: Viewer, registration_id: int) -> dict[str, Any]:
    """The request from the inbox (its page first, as the list's link tells, then all)."""
    for page in (page_number(request), None):
        for row in await _inbox(request, viewer, page):
            if str(row["Inbox"].get("id")) == str(registration_id):
                return dict(row["Inbox"])
    raise ApiError(404, "Invalid registration")


async def _accept_form(request: Request, viewer: Viewer, registration: dict[str, Any], *,
                       values: dict[str, Any] | None = None, errors: dict[str, str] | None = None,
                       message: str | None = None, status_code: int = 200) -> Response:
    orgs = await org_options(request, viewer)
    roles_body = await api(request, viewer, "GET", "/roles/index")
    chosen = values or {"org_id": requested_org(orgs, registration.get("data")),
                        "role_id": default_role(roles_body)}
    return render(request, "registrations/accept.html", viewer=viewer,
                  registration=registration, data=registration.get("data") or {}, orgs=orgs,
                  roles=role_choices(roles_body, site_admin=viewer.is_site_admin),
                  values=chosen, errors=errors or {}, message=message,
                  status_code=status_code)


@router.get("/users/acceptRegistrations/{registration_id}")
async def accept_form(request: Request, registration_id: int) -> Response:
    viewer = await viewer_of(request)
    registration = await _registration(request, viewer, registration_id)
    return await _accept_form(request, viewer, registration)


@router.post("/users/acceptRegistrations/{registration_id}")
async def accept(request: Request, registration_id: int) -> Response:
    viewer = await viewer_of(request)
    form = await posted_form(request, viewer)
    values = {"org_id": form.text("org_id"), "role_id": form.text("role_id")}
    try:
        answer = await api(request, viewer, "POST",
                           f"/users/acceptRegistrations/{registration_id}",
                           json={"User": {k: v for k, v in values.items() if v}})
    except ApiError as exc:
        if not shown_on_the_form(exc):
            raise
        registration = await _registration(request, viewer, registration_id)
        return await _accept_form(request, viewer, registration, values=values,
                                  errors=exc.field_errors, status_code=exc.status,
                                  message="; ".join([exc.message, *loose_errors(exc.errors)]))
    return redirect("/users/registrations", flash=str(answer.get("message") or "Accepted."))


@router.post("/users/discardRegistrations/{registration_id}")
async def discard(request: Request, registration_id: int) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    answer = await api(request, viewer, "POST", f"/users/discardRegistrations/{registration_id}")
    return redirect("/users/registrations", flash=str(answer.get("message") or "Discarded."))
