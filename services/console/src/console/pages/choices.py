"""What the user screens share: the organisations and roles a form offers (from the API, as the
viewer sees them), and how a refused form is told from a refused page."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from console.pages.common import api, records
from console.viewer import Viewer

Options = list[tuple[str, str]]
# The flags of a role an org admin may not hand out (MISP's UsersController: "You are not
# authorised to assign that role to a user.").
SITE_ADMIN_ONLY_ROLE_FLAGS = ("perm_site_admin", "perm_regexp_access", "perm_sync",
                              "restricted_to_site_admin")


def org_choices(body: Any) -> Options:
    """`organisations/index` as (id, name) options, by name."""
    found = [(str(row["Organisation"].get("id", "")), str(row["Organisation"].get("name", "")))
             for row in records(body, "Organisation")]
    return sorted((o for o in found if o[0]), key=lambda o: (o[1].lower(), o[0]))


def role_choices(body: Any, *, site_admin: bool, keep: Any = None) -> Options:
    """`roles/index` as (id, name) options: for an org admin only the roles they may assign
    (and `keep`, the user's current role, which MISP lets stay)."""
    out: Options = []
    for row in records(body, "Role"):
        role = row["Role"]
        role_id = str(role.get("id", ""))
        if not role_id:
            continue
        allowed = site_admin or not any(role.get(f) in (True, 1, "1")
                                        for f in SITE_ADMIN_ONLY_ROLE_FLAGS)
        if allowed or (keep is not None and role_id == str(keep)):
            out.append((role_id, str(role.get("name", ""))))
    return out


def default_role(body: Any) -> str | None:
    """The id of the role marked `default_role`, if any."""
    for row in records(body, "Role"):
        if row["Role"].get("default_role") in (True, 1, "1"):
            return str(row["Role"].get("id"))
    return None


async def org_options(request: Request, viewer: Viewer) -> Options:
    """The local organisations a site admin may put a user in; an org admin's own only (the API
    forces it)."""
    if not viewer.is_site_admin:
        return [(str(viewer.org_id), str(viewer.organisation.get("name") or viewer.org_id))]
    return org_choices(await api(request, viewer, "GET", "/organisations/index/scope:local"))


async def role_options(request: Request, viewer: Viewer, keep: Any = None) -> Options:
    return role_choices(await api(request, viewer, "GET", "/roles/index"),
                        site_admin=viewer.is_site_admin, keep=keep)


def loose_errors(errors: Any) -> list[str]:
    """MISP's errors that name no field (`["Invalid organisation"]`, a string)."""
    if isinstance(errors, str):
        return [errors]
    if isinstance(errors, list | tuple):
        return [str(e) for e in errors if isinstance(e, str | int | float)]
    return []
