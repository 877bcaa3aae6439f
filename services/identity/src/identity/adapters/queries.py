"""Reads of identity's read models (one query each), and `SqlQueries`, the SQL form of the
handlers' reading port (identity.adapters.ports.IdentityQueries) on one connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, cast, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.ports import (
    Counted,
    Figures,
    IdentityQueries,
    KeyRow,
    LoadedKey,
    LoadedRegistration,
    LoadedRole,
    LoadedSetting,
    LoadedUser,
    SettingRow,
    UserRow,
    UserViewParts,
)
from identity.adapters.tables import (
    admin_setting,
    authkey,
    login_attempt,
    login_session,
    org,
    registration,
    role,
    user_account,
    user_credential,
    user_setting,
)
from misp_contracts.events.identity import (
    AuthKeyState,
    RegistrationState,
    RoleState,
    UserSettingState,
    UserState,
)
from misp_contracts.events.orgs import OrganisationState
from misp_contracts.numbers import whole_number
from misp_platform.db import event
from misp_platform.server_settings import read_settings


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


async def all_roles(conn: AsyncConnection, *, name_contains: str | None = None,
                    offset: int = 0, limit: int | None = None) -> list[RoleState]:
    stmt = select(role.c.state).order_by(role.c.role_id).offset(offset).limit(limit)
    if name_contains:
        escaped = (name_contains.replace("\\", "\\\\").replace("%", "\\%")
                   .replace("_", "\\_"))
        stmt = stmt.where(role.c.state["name"].astext.ilike(f"%{escaped}%"))
    return [RoleState.model_validate(r.state) for r in await conn.execute(stmt)]


async def role_in_use(conn: AsyncConnection, role_id: int) -> bool:
    return (await conn.execute(select(user_account.c.user_id).where(
        user_account.c.role_id == role_id).limit(1))).first() is not None


async def default_role_id(conn: AsyncConnection) -> int | None:
    value = (await conn.execute(select(admin_setting.c.value).where(
        admin_setting.c.name == "default_role"))).scalar()
    return whole_number(value)


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
        default_role_id=whole_number(default),
        settings=dict(row.settings or {}),
        org=OrganisationState.model_validate(row.org) if row.org is not None else None)


async def user_rows(conn: AsyncConnection, org_ids: Sequence[int] | None = None, *,
                    offset: int = 0, limit: int | None = None) -> list[UserRow]:
    stmt = (select(user_account.c.state, role.c.state.label("role_state"),
                   org.c.name.label("org_name"))
            .select_from(user_account
                         .outerjoin(role, role.c.role_id == user_account.c.role_id)
                         .outerjoin(org, org.c.org_id == user_account.c.org_id))
            .order_by(user_account.c.user_id).offset(offset).limit(limit))
    if org_ids is not None:
        stmt = stmt.where(user_account.c.org_id.in_(list(org_ids)))
    return [UserRow(user=UserState.model_validate(r.state),
                    role=RoleState.model_validate(r.role_state) if r.role_state else None,
                    org_name=r.org_name)
            for r in await conn.execute(stmt)]


async def org_admins(conn: AsyncConnection, org_id: int) -> dict[str, str]:
    rows = await conn.execute(
        select(user_account.c.user_id, user_account.c.email)
        .select_from(user_account.join(role, role.c.role_id == user_account.c.role_id))
        .where(user_account.c.org_id == org_id,
               role.c.state["perm_admin"].as_boolean().is_(True)))
    return {str(r.user_id): r.email for r in rows}


async def key_rows(conn: AsyncConnection, *, user_id: int | None = None,
                   org_id: int | None = None, offset: int = 0,
                   limit: int | None = None) -> list[KeyRow]:
    stmt = (select(authkey.c.state, user_account.c.state.label("user_state"))
            .select_from(authkey.join(user_account,
                                      user_account.c.user_id == authkey.c.user_id))
            .order_by(authkey.c.authkey_id).offset(offset).limit(limit))
    if user_id is not None:
        stmt = stmt.where(authkey.c.user_id == user_id)
    if org_id is not None:
        stmt = stmt.where(user_account.c.org_id == org_id)
    return [KeyRow(key=AuthKeyState.model_validate(r.state),
                   owner=UserState.model_validate(r.user_state))
            for r in await conn.execute(stmt)]


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    return int((await conn.execute(select(func.coalesce(func.max(event.c.version), 0)).where(
        event.c.stream_id == stream_id))).scalar_one())


async def organisation_id(conn: AsyncConnection, uuid: str) -> int | None:
    found = (await conn.execute(select(org.c.org_id).where(org.c.uuid == uuid))).scalar()
    return None if found is None else int(found)


async def open_registrations(conn: AsyncConnection, *, offset: int = 0,
                             limit: int | None = None) -> list[RegistrationState]:
    rows = await conn.execute(select(registration.c.state)
                              .where(registration.c.deleted.is_(False))
                              .order_by(registration.c.id).offset(offset).limit(limit))
    return [RegistrationState.model_validate(r.state) for r in rows]


async def open_registration(conn: AsyncConnection, key: int | str) -> LoadedRegistration | None:
    match = (registration.c.id == key if isinstance(key, int)
             else registration.c.state["uuid"].astext == key)
    row = (await conn.execute(select(registration).where(
        match, registration.c.deleted.is_(False)).with_for_update())).first()
    return None if row is None else LoadedRegistration(
        str(row.stream_id), row.version, RegistrationState.model_validate(row.state))


def _setting_state(row: Any) -> UserSettingState:
    return UserSettingState(id=row.id, user_id=row.user_id, setting=row.setting, value=row.value,
                            timestamp=row.timestamp)


def _setting_filters(stmt: Any, setting_id: int | None, user_id: int | None,
                     name: str | None) -> Any:
    if setting_id is not None:
        stmt = stmt.where(user_setting.c.id == setting_id)
    if user_id is not None:
        stmt = stmt.where(user_setting.c.user_id == user_id)
    if name is not None:
        stmt = stmt.where(user_setting.c.setting == name)
    return stmt


async def get_user_setting(conn: AsyncConnection, *, setting_id: int | None = None,
                           user_id: int | None = None,
                           name: str | None = None) -> LoadedSetting | None:
    row = (await conn.execute(_setting_filters(select(user_setting), setting_id, user_id,
                                               name))).first()
    return None if row is None else LoadedSetting(str(row.stream_id), row.version,
                                                  _setting_state(row))


async def setting_rows(conn: AsyncConnection, *, setting_id: int | None = None,
                       user_id: int | None = None, name: str | None = None,
                       org_id: int | None = None, offset: int = 0,
                       limit: int | None = None) -> list[SettingRow]:
    stmt = (select(user_setting, user_account.c.state.label("user_state"))
            .select_from(user_setting.join(user_account,
                                           user_account.c.user_id == user_setting.c.user_id))
            .order_by(user_setting.c.id).offset(offset).limit(limit))
    stmt = _setting_filters(stmt, setting_id, user_id, name)
    if org_id is not None:
        stmt = stmt.where(user_account.c.org_id == org_id)
    return [SettingRow(setting=_setting_state(r), owner=UserState.model_validate(r.user_state))
            for r in await conn.execute(stmt)]


# ---- reads on a connection of their own (login, first run, merge, the consumer) ----------------


async def login_attempts(conn: AsyncConnection, *, ip: str, username: str,
                         now: datetime) -> int:
    """How many attempts of (ip, username) are still counted (not expired at `now`)."""
    return int((await conn.execute(select(func.count()).select_from(login_attempt).where(
        login_attempt.c.ip == ip, login_attempt.c.username == username,
        login_attempt.c.expires_at > now))).scalar_one())


async def session_user_id(conn: AsyncConnection, session_hmac: str,
                          now: datetime) -> int | None:
    """The user of the session of this HMAC, unless it expired by `now`."""
    user_id = (await conn.execute(select(login_session.c.user_id).where(
        login_session.c.session_hmac == session_hmac,
        login_session.c.expires_at > now))).scalar()
    return None if user_id is None else int(user_id)


async def stream_started(conn: AsyncConnection, stream_id: str) -> bool:
    """Whether the event stream has an event (one row looked at)."""
    return (await conn.execute(select(event.c.event_id).where(
        event.c.stream_id == stream_id).limit(1))).first() is not None


async def own_event_ids(conn: AsyncConnection, event_ids: Sequence[str]) -> set[str]:
    """Which of these event ids are in identity's event store."""
    return {str(r.event_id) for r in await conn.execute(select(event.c.event_id).where(
        event.c.event_id.in_(list(event_ids))))}


async def users_of_org(conn: AsyncConnection, org_id: int) -> list[LoadedUser]:
    """The users of the organisation, by id."""
    rows = (await conn.execute(
        select(user_account.c.stream_id, user_account.c.version, user_account.c.state)
        .where(user_account.c.org_id == org_id).order_by(user_account.c.user_id))).all()
    return [LoadedUser(str(row.stream_id), row.version, UserState.model_validate(row.state))
            for row in rows]


def _created_since(state: Any, since: datetime) -> Any:
    return cast(state["date_created"].astext, DateTime(timezone=True)) >= since


async def figures(conn: AsyncConnection, *, month: datetime, year: datetime) -> Figures:
    """MISP's statistics counts in two queries: users (every one, disabled too, as MISP counts
    them) and the organisations that are not deleted, local and external."""
    state = user_account.c.state
    users = (await conn.execute(select(
        func.count(),
        func.count().filter(_created_since(state, month)),
        func.count().filter(_created_since(state, year)),
        func.count().filter(func.coalesce(state["gpgkey"].astext, "") != "")))).one()
    orgs = {row.local: Counted(row.total, row.month, row.year) for row in await conn.execute(
        select(org.c.local, func.count().label("total"),
               func.count().filter(_created_since(org.c.state, month)).label("month"),
               func.count().filter(_created_since(org.c.state, year)).label("year"))
        .where(org.c.deleted.is_(False)).group_by(org.c.local))}
    none = Counted(0, 0, 0)
    return Figures(users=Counted(users[0], users[1], users[2]), users_with_gpgkey=users[3],
                   local_orgs=orgs.get(True, none), external_orgs=orgs.get(False, none))


async def organisations_with_user_counts(
        conn: AsyncConnection, *, local: bool | None) -> list[tuple[OrganisationState, int]]:
    stmt = (select(org.c.state, func.count(user_account.c.user_id).label("users"))
            .select_from(org.outerjoin(user_account, user_account.c.org_id == org.c.org_id))
            .where(org.c.deleted.is_(False))
            .group_by(org.c.org_id, org.c.state).order_by(org.c.org_id))
    if local is not None:
        stmt = stmt.where(org.c.local.is_(local))
    return [(OrganisationState.model_validate(row.state), row.users)
            for row in await conn.execute(stmt)]


class SqlQueries(IdentityQueries):
    """The handlers' reads on one connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def user(self, user_id: int) -> LoadedUser | None:
        return await get_user(self.conn, user_id)

    async def users(self, *, org_ids: Sequence[int] | None = None, offset: int = 0,
                    limit: int | None = None) -> list[UserRow]:
        return await user_rows(self.conn, org_ids, offset=offset, limit=limit)

    async def email_taken(self, email: str, *, except_id: int | None = None) -> bool:
        return await email_taken(self.conn, email, except_id=except_id)

    async def password_hash(self, user_id: int) -> str | None:
        return await password_hash(self.conn, user_id)

    async def view_parts(self, user: UserState) -> UserViewParts:
        return await user_view_parts(self.conn, user)

    async def org_admins(self, org_id: int) -> dict[str, str]:
        return await org_admins(self.conn, org_id)

    async def role(self, role_id: int) -> LoadedRole | None:
        return await get_role(self.conn, role_id)

    async def roles(self, *, name_contains: str | None = None, offset: int = 0,
                    limit: int | None = None) -> list[RoleState]:
        return await all_roles(self.conn, name_contains=name_contains, offset=offset,
                               limit=limit)

    async def role_in_use(self, role_id: int) -> bool:
        return await role_in_use(self.conn, role_id)

    async def default_role_id(self) -> int | None:
        return await default_role_id(self.conn)

    async def organisation(self, org_id: int) -> OrganisationState | None:
        return await get_org(self.conn, org_id)

    async def organisation_id(self, uuid: str) -> int | None:
        return await organisation_id(self.conn, uuid)

    async def organisation_open_for_users(self, org_id: int) -> OrganisationState | None:
        return await org_open_for_users(self.conn, org_id)

    async def key(self, key_id: int) -> LoadedKey | None:
        return await get_key(self.conn, key_id)

    async def keys_of(self, user_id: int) -> list[LoadedKey]:
        return await keys_of(self.conn, user_id)

    async def keys(self, *, user_id: int | None = None, org_id: int | None = None,
                   offset: int = 0, limit: int | None = None) -> list[KeyRow]:
        return await key_rows(self.conn, user_id=user_id, org_id=org_id, offset=offset,
                              limit=limit)

    async def user_setting(self, *, setting_id: int | None = None, user_id: int | None = None,
                           name: str | None = None) -> LoadedSetting | None:
        return await get_user_setting(self.conn, setting_id=setting_id, user_id=user_id,
                                      name=name)

    async def user_settings(self, *, setting_id: int | None = None, user_id: int | None = None,
                            name: str | None = None, org_id: int | None = None,
                            offset: int = 0, limit: int | None = None) -> list[SettingRow]:
        return await setting_rows(self.conn, setting_id=setting_id, user_id=user_id, name=name,
                                  org_id=org_id, offset=offset, limit=limit)

    async def open_registrations(self, *, offset: int = 0,
                                 limit: int | None = None) -> list[RegistrationState]:
        return await open_registrations(self.conn, offset=offset, limit=limit)

    async def open_registration(self, key: int | str) -> LoadedRegistration | None:
        return await open_registration(self.conn, key)

    async def organisations_with_user_counts(
            self, *, local: bool | None) -> list[tuple[OrganisationState, int]]:
        return await organisations_with_user_counts(self.conn, local=local)

    async def figures(self, *, month: datetime, year: datetime) -> Figures:
        return await figures(self.conn, month=month, year=year)

    async def settings(self, names: Sequence[str]) -> dict[str, Any]:
        return await read_settings(self.conn, names)

    async def stream_version(self, stream_id: str) -> int:
        return await stream_version(self.conn, stream_id)
