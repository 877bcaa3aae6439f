"""Roles: MISP's "List Roles" (every permission flag, the default role marked), add, edit,
delete and set the default role. Identity owns them; its answers are shown as they come."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from starlette.responses import Response

from console.forms import Form
from console.gateway import ApiError
from console.pages.answers import record_of, refusal, refused_form, shown_as_flash
from console.pages.common import api, posted_form, records, viewer_of
from console.pages.orgs import NOT_ALLOWED
from console.viewer import Viewer
from console.web import redirect, render

router = APIRouter(include_in_schema=False)

# Role::PERMISSION_CONSTANTS
PERMISSION_LEVELS = (("0", "Read Only"), ("1", "Manage Own Events"),
                     ("2", "Manage Organisation Events"),
                     ("3", "Manage and Publish Organisation Events"))
# Role::generatePermFlags, in MISP's order and with its labels.
PERM_FLAGS: tuple[tuple[str, str], ...] = (
    ("perm_site_admin", "Site Admin"),
    ("perm_admin", "Org Admin"),
    ("perm_sync", "Sync Actions"),
    ("perm_audit", "Audit Actions"),
    ("perm_auth", "Auth key access"),
    ("perm_regexp_access", "Regex Actions"),
    ("perm_tagger", "Tagger"),
    ("perm_tag_editor", "Tag Editor"),
    ("perm_template", "Template Editor"),
    ("perm_sharing_group", "Sharing Group Editor"),
    ("perm_delegate", "Delegations Access"),
    ("perm_sighting", "Sighting Creator"),
    ("perm_object_template", "Object Template Editor"),
    ("perm_galaxy_editor", "Galaxy Editor"),
    ("perm_decaying", "Decaying Model Editor"),
    ("perm_publish_zmq", "ZMQ publisher"),
    ("perm_publish_kafka", "Kafka publisher"),
    ("perm_warninglist", "Warninglist Editor"),
    ("perm_view_feed_correlations", "View Feed Correlations"),
    ("perm_analyst_data", "Analyst Data Creator"),
    ("perm_skip_otp", "Skip OTP"),
)
OTHER_FLAGS = (("restricted_to_site_admin", "Restricted to site admins (only they may give it)"),
               ("enforce_rate_limit", "Enforce the search rate limit"))


def role_body(form: Form) -> dict[str, Any]:
    """The role as MISP's add/edit take it: every flag given (an unchecked box is false), the
    level, the limits as typed (the API checks them)."""
    body: dict[str, Any] = {"name": form.text("name"), "permission": form.text("permission")}
    for flag, _ in (*PERM_FLAGS, *OTHER_FLAGS):
        body[flag] = form.flag(flag)
    for name in ("rate_limit_count", "memory_limit", "max_execution_time"):
        body[name] = form.text(name)
    if not body["rate_limit_count"]:
        body["rate_limit_count"] = "0"
    return body


def role_of(body: Any) -> dict[str, Any]:
    return record_of(body, "Role")


def _site_admin(viewer: Viewer) -> None:
    if not viewer.is_site_admin:
        raise ApiError(403, NOT_ALLOWED)


async def _admin_and_role(request: Request, role_id: int) -> tuple[Viewer, dict[str, Any]]:
    """A site admin's page about one role: the viewer and the role."""
    viewer = await viewer_of(request)
    _site_admin(viewer)
    return viewer, role_of(await api(request, viewer, "GET", f"/roles/view/{role_id}"))


@router.get("/roles/index")
@router.get("/roles")
async def index(request: Request) -> Response:
    viewer = await viewer_of(request)
    roles = [row["Role"] for row in records(await api(request, viewer, "GET", "/roles/index"),
                                            "Role")]
    return render(request, "roles/index.html", viewer=viewer, roles=roles, flags=PERM_FLAGS,
                  levels=dict(PERMISSION_LEVELS), title="Roles")


@router.get("/roles/view/{role_id}")
async def view(request: Request, role_id: int) -> Response:
    viewer = await viewer_of(request)
    role = role_of(await api(request, viewer, "GET", f"/roles/view/{role_id}"))
    return render(request, "roles/view.html", viewer=viewer, role=role, flags=PERM_FLAGS,
                  other_flags=OTHER_FLAGS, levels=dict(PERMISSION_LEVELS),
                  title=f"Role {role.get('name', '')}")


async def _form(request: Request, viewer: Viewer, role: dict[str, Any], *, creating: bool,
                errors: dict[str, str] | None = None, message: str | None = None,
                status_code: int = 200) -> Response:
    return render(request, "roles/form.html", viewer=viewer, role=role, creating=creating,
                  flags=PERM_FLAGS, other_flags=OTHER_FLAGS, levels=PERMISSION_LEVELS,
                  errors=errors or {}, message=message, status_code=status_code,
                  title="Add role" if creating else f"Edit role {role.get('name', '')}")


@router.get("/admin/roles/add")
async def add_form(request: Request) -> Response:
    viewer = await viewer_of(request)
    _site_admin(viewer)
    return await _form(request, viewer, {"permission": "0"}, creating=True)


@router.post("/admin/roles/add")
async def add(request: Request) -> Response:
    viewer = await viewer_of(request)
    body = role_body(await posted_form(request, viewer))
    try:
        role = role_of(await api(request, viewer, "POST", "/admin/roles/add",
                                 json={"Role": body}))
    except ApiError as exc:
        if not refused_form(exc):
            raise
        return await _form(request, viewer, body, creating=True, errors=exc.field_errors,
                           message=exc.message, status_code=exc.status)
    return redirect("/roles/index", flash=f"The role {role.get('name', '')} has been saved.")


@router.get("/admin/roles/edit/{role_id}")
async def edit_form(request: Request, role_id: int) -> Response:
    viewer, role = await _admin_and_role(request, role_id)
    return await _form(request, viewer, role, creating=False)


@router.post("/admin/roles/edit/{role_id}")
async def edit(request: Request, role_id: int) -> Response:
    viewer = await viewer_of(request)
    body = role_body(await posted_form(request, viewer))
    try:
        role = role_of(await api(request, viewer, "POST", f"/admin/roles/edit/{role_id}",
                                 json={"Role": body}))
    except ApiError as exc:
        if not refused_form(exc):
            raise
        return await _form(request, viewer, {**body, "id": role_id}, creating=False,
                           errors=exc.field_errors, message=exc.message,
                           status_code=exc.status)
    return redirect("/roles/index", flash=f"The role {role.get('name', '')} has been saved.")


@router.get("/admin/roles/delete/{role_id}")
async def delete_form(request: Request, role_id: int) -> Response:
    viewer, role = await _admin_and_role(request, role_id)
    return render(request, "orgs/confirm.html", viewer=viewer, title="Delete role",
                  question=f"Delete the role {role.get('name', '')}?",
                  detail="A role that users still have cannot be deleted: give them another "
                         "role first.",
                  action=f"/admin/roles/delete/{role_id}", button="Delete", danger=True,
                  back="/roles/index")


@router.post("/admin/roles/delete/{role_id}")
async def delete(request: Request, role_id: int) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    try:
        answer = await api(request, viewer, "POST", f"/admin/roles/delete/{role_id}")
    except ApiError as exc:
        if not shown_as_flash(exc):
            raise
        return redirect("/roles/index", flash=refusal(exc), kind="error")
    message = answer.get("message") if isinstance(answer, dict) else None
    return redirect("/roles/index", flash=str(message or "Role deleted."))


@router.post("/admin/roles/set_default/{role_id}")
async def set_default(request: Request, role_id: str) -> Response:
    viewer = await viewer_of(request)
    await posted_form(request, viewer)
    answer = await api(request, viewer, "POST",
                       f"/admin/roles/set_default/{quote(role_id, safe='')}")
    message = answer.get("message") if isinstance(answer, dict) else None
    return redirect("/roles/index", flash=str(message or "Default role set."))
