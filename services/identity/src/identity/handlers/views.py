"""MISP's record shapes of users, roles and keys, read from identity's read models."""

from __future__ import annotations

from typing import Any

from identity.adapters.ports import IdentityQueries
from identity.domain.roles import role_fields
from identity.domain.users import user_fields
from misp_contracts.events.identity import AuthKeyState, UserState
from misp_contracts.events.orgs import OrganisationState
from misp_platform.misp import misp_record


def org_fields(org_id: int, state: OrganisationState | None) -> dict[str, Any]:
    if state is None:
        return {"id": org_id, "name": None}
    data = state.model_dump()
    data.pop("logo_sha256", None)
    return data


def authkey_fields(key: AuthKeyState) -> dict[str, Any]:
    """An AuthKey row as MISP shows it: never the hash."""
    return {
        "id": key.id, "uuid": key.uuid, "authkey_start": key.authkey_start,
        "authkey_end": key.authkey_end,
        "created": int(key.created.timestamp()) if key.created else None,
        "expiration": key.expiration, "read_only": key.read_only, "user_id": key.user_id,
        "comment": key.comment, "allowed_ips": list(key.allowed_ips or []) or None,
        "unique_ips": [],
    }


async def user_view(q: IdentityQueries, user: UserState, *,
                    org_admins: bool = False) -> dict[str, Any]:
    """`users/view` (and `admin/users/view` with `orgAdmins`): User, Role, UserSetting, Org."""
    parts = await q.view_parts(user)
    role, default_role, settings, org = (parts.role, parts.default_role_id, parts.settings,
                                         parts.org)
    fields = user_fields(user)
    if org_admins:
        fields["orgAdmins"] = await q.org_admins(user.org_id)
    record = misp_record(
        "User", fields,
        Role=role_fields(role, default_role_id=default_role) if role else {"id": user.role_id},
        Organisation=org_fields(user.org_id, org))
    record["UserSetting"] = settings or []
    return record

