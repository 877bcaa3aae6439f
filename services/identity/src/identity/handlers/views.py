"""MISP's record shapes of users, roles and keys, read from identity's read models."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters import queries
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


async def user_view(conn: AsyncConnection, user: UserState, *,
                    org_admins: bool = False) -> dict[str, Any]:
    """`users/view` (and `admin/users/view` with `orgAdmins`): User, Role, UserSetting, Org."""
    parts = await queries.user_view_parts(conn, user)
    role, default_role, settings, org = (parts.role, parts.default_role_id, parts.settings,
                                         parts.org)
    fields = user_fields(user)
    if org_admins:
        fields["orgAdmins"] = await _org_admins(conn, user.org_id)
    record = misp_record(
        "User", fields,
        Role=role_fields(role, default_role_id=default_role) if role else {"id": user.role_id},
        Organisation=org_fields(user.org_id, org))
    record["UserSetting"] = settings or []
    return record


async def _org_admins(conn: AsyncConnection, org_id: int) -> dict[str, str]:
    from sqlalchemy import select

    from identity.adapters.tables import role, user_account

    rows = await conn.execute(
        select(user_account.c.user_id, user_account.c.email)
        .select_from(user_account.join(role, role.c.role_id == user_account.c.role_id))
        .where(user_account.c.org_id == org_id,
               role.c.state["perm_admin"].as_boolean().is_(True)))
    return {str(r.user_id): r.email for r in rows}
