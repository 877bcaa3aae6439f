"""Reads of identity's read models (one query each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.tables import (
    admin_setting,
    authkey,
    org,
    role,
    user_account,
    user_credential,
    user_setting,
)
from misp_contracts.events.identity import AuthKeyState, RoleState, UserState
from misp_contracts.events.orgs import OrganisationState


@dataclass(frozen=True)
class Loaded:
    """An aggregate's state as its read model holds it, with the stream position."""

    stream_id: str
    version: int


@dataclass(frozen=True)
class LoadedUser(Loaded):
    state: UserState


@dataclass(frozen=True)
class LoadedRole(Loaded):
    state: RoleState


@dataclass(frozen=True)
class LoadedKey(Loaded):
    state: AuthKeyState


async def get_user(conn: AsyncConnection, user_id: int) -> LoadedUser | None:
    row = (await conn.execute(select(user_account).where(
        user_account.c.user_id == user_id))).first()
    return None if row is None else LoadedUser(str(row.stream_id), row.version,
                                               UserState.model_validate(row.state))


async def get_user_by_email(conn: AsyncConnection, email: str) -> LoadedUser | None:
    row = (await conn.execute(select(user_account).where(
        func.lower(user_account.c.email) == email.strip().lower()))).first()
    return None if row is None else LoadedUser(str(row.stream_id), row.version,
                                               UserState.model_validate(row.state))


async def email_taken(conn: AsyncConnection, email: str, *, except_id: int | None = None) -> bool:
    stmt = select(user_account.c.user_id).where(
        func.lower(user_account.c.email) == email.strip().lower())
    if except_id is not None:
        stmt = stmt.where(user_account.c.user_id != except_id)
    return (await conn.execute(stmt.limit(1))).first() is not None


async def password_hash(conn: AsyncConnection, user_id: int) -> str | None:
    return (await conn.execute(select(user_credential.c.password_hash).where(
        user_credential.c.user_id == user_id))).scalar()


async def get_role(conn: AsyncConnection, role_id: int) -> LoadedRole | None:
    row = (await conn.execute(select(role).where(role.c.role_id == role_id))).first()
    return None if row is None else LoadedRole(str(row.stream_id), row.version,
                                               RoleState.model_validate(row.state))


async def all_roles(conn: AsyncConnection) -> list[RoleState]:
    rows = await conn.execute(select(role.c.state).order_by(role.c.role_id))
    return [RoleState.model_validate(r.state) for r in rows]


async def role_in_use(conn: AsyncConnection, role_id: int) -> bool:
    return (await conn.execute(select(user_account.c.user_id).where(
        user_account.c.role_id == role_id).limit(1))).first() is not None


async def default_role_id(conn: AsyncConnection) -> int | None:
    value = (await conn.execute(select(admin_setting.c.value).where(
        admin_setting.c.name == "default_role"))).scalar()
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


async def get_org(conn: AsyncConnection, org_id: int) -> OrganisationState | None:
    row = (await conn.execute(select(org.c.state).where(org.c.org_id == org_id,
                                                        org.c.deleted.is_(False)))).first()
    return None if row is None else OrganisationState.model_validate(row.state)


async def org_open_for_users(conn: AsyncConnection, org_id: int) -> OrganisationState | None:
    """The organisation if it may take users (not deleted, not being merged), else None.

    The row is share-locked until the caller's transaction ends, so a merge start (which
    updates the row) is ordered before or after this user's arrival: never across it.
    """
    row = (await conn.execute(select(org.c.state, org.c.deleted, org.c.merging_into)
                              .where(org.c.org_id == org_id).with_for_update(read=True))).first()
    if row is None or row.deleted or row.merging_into is not None:
        return None
    return OrganisationState.model_validate(row.state)


async def get_key(conn: AsyncConnection, key_id: int) -> LoadedKey | None:
    row = (await conn.execute(select(authkey).where(authkey.c.authkey_id == key_id))).first()
    return None if row is None else LoadedKey(str(row.stream_id), row.version,
                                              AuthKeyState.model_validate(row.state))


async def keys_of(conn: AsyncConnection, user_id: int) -> list[LoadedKey]:
    rows = await conn.execute(select(authkey).where(authkey.c.user_id == user_id)
                              .order_by(authkey.c.authkey_id))
    return [LoadedKey(str(r.stream_id), r.version, AuthKeyState.model_validate(r.state))
            for r in rows]


@dataclass(frozen=True)
class UserViewParts:
    """What a user's MISP view shows beside the user."""

    role: RoleState | None
    default_role_id: int | None
    settings: dict[str, Any]
    org: OrganisationState | None


async def user_view_parts(conn: AsyncConnection, user: UserState) -> UserViewParts:
    """The user's role, the default role id, the user's settings and org: one round trip."""
    settings = (select(func.coalesce(func.json_object_agg(
        user_setting.c.setting, literal_column("value ORDER BY setting")),
        literal_column("'{}'::json")))
        .where(user_setting.c.user_id == user.id).scalar_subquery())
    row = (await conn.execute(select(
        select(role.c.state).where(role.c.role_id == user.role_id)
        .scalar_subquery().label("role"),
        select(admin_setting.c.value).where(admin_setting.c.name == "default_role")
        .scalar_subquery().label("default_role"),
        settings.label("settings"),
        select(org.c.state).where(org.c.org_id == user.org_id, org.c.deleted.is_(False))
        .scalar_subquery().label("org")))).one()
    default = row.default_role
    return UserViewParts(
        role=RoleState.model_validate(row.role) if row.role is not None else None,
        default_role_id=(int(default) if isinstance(default, int | str)
                         and str(default).isdigit() else None),
        settings=dict(row.settings or {}),
        org=OrganisationState.model_validate(row.org) if row.org is not None else None)


async def user_settings_of(conn: AsyncConnection, user_id: int) -> dict[str, Any]:
    rows = await conn.execute(select(user_setting.c.setting, user_setting.c.value).where(
        user_setting.c.user_id == user_id).order_by(user_setting.c.setting))
    return {r.setting: r.value for r in rows}
