"""Writes of identity's read models, as its projections (identity.projections.project) make
them: one function per change, in the caller's transaction.

`stream_id` and `version` are the stream and position a row reflects (the envelope's subject
and stream version).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.tables import (
    admin_setting,
    authkey,
    org,
    registration,
    role,
    user_account,
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
from misp_platform.versions import is_newer


async def _upsert(conn: AsyncConnection, table: Table, key: str, values: dict[str, Any]) -> None:
    stmt = pg_insert(table).values(**values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[key], set_={k: stmt.excluded[k] for k in values if k != key}))


# ---- users -------------------------------------------------------------------------------------


async def save_user_view(conn: AsyncConnection, user: UserState, *, stream_id: str | None,
                         version: int) -> None:
    await _upsert(conn, user_account, "user_id", {
        "user_id": user.id, "stream_id": stream_id, "version": version, "email": user.email,
        "org_id": user.org_id, "role_id": user.role_id, "disabled": user.disabled,
        "state": user.model_dump(mode="json")})


async def delete_user_views(conn: AsyncConnection, user_id: int) -> None:
    """Delete the user's row, authkeys and settings."""
    await conn.execute(delete(user_account).where(user_account.c.user_id == user_id))
    await conn.execute(delete(authkey).where(authkey.c.user_id == user_id))
    await conn.execute(delete(user_setting).where(user_setting.c.user_id == user_id))


async def user_view_state(conn: AsyncConnection, user_id: int) -> dict[str, Any] | None:
    """The user's stored state as it is (not validated), or None for an unknown user."""
    row = (await conn.execute(select(user_account.c.state).where(
        user_account.c.user_id == user_id))).first()
    return None if row is None else dict(row.state)


async def save_user_view_state(conn: AsyncConnection, user_id: int, state: dict[str, Any],
                               version: int | None) -> None:
    """Replace the user's stored state (only: its columns stay)."""
    await conn.execute(update(user_account).where(user_account.c.user_id == user_id)
                       .values(state=state, version=version))


async def set_user_view_version(conn: AsyncConnection, stream_id: str | None,
                                version: int | None) -> None:
    """Move the user's row (by its stream) to `version`, nothing else changed."""
    await conn.execute(update(user_account).where(
        user_account.c.stream_id == stream_id).values(version=version))


# ---- roles, authkeys, user settings, registrations ---------------------------------------------


async def save_role_view(conn: AsyncConnection, state: RoleState, *, stream_id: str | None,
                         version: int) -> None:
    await _upsert(conn, role, "role_id", {"role_id": state.id, "stream_id": stream_id,
                                          "version": version, "name": state.name,
                                          "state": state.model_dump(mode="json")})


async def delete_role_view(conn: AsyncConnection, role_id: int) -> None:
    await conn.execute(delete(role).where(role.c.role_id == role_id))


async def save_default_role(conn: AsyncConnection, role_id: int | None) -> None:
    """The AdminSetting `default_role` (None: unset)."""
    await _upsert(conn, admin_setting, "name", {"name": "default_role", "value": role_id})


async def save_authkey_view(conn: AsyncConnection, state: AuthKeyState, *,
                            stream_id: str | None, version: int) -> None:
    """The key's row; its HMAC is stored in lower case (the lookups compare it so)."""
    await _upsert(conn, authkey, "authkey_id", {
        "authkey_id": state.id, "stream_id": stream_id, "version": version,
        "user_id": state.user_id, "key_hmac": state.key_hmac.lower(),
        "state": state.model_dump(mode="json")})


async def delete_authkey_view(conn: AsyncConnection, authkey_id: int) -> None:
    await conn.execute(delete(authkey).where(authkey.c.authkey_id == authkey_id))


async def save_user_setting_view(conn: AsyncConnection, state: UserSettingState, *,
                                 stream_id: str | None, version: int) -> None:
    await _upsert(conn, user_setting, "id", {
        "id": state.id, "stream_id": stream_id, "version": version, "user_id": state.user_id,
        "setting": state.setting, "value": state.value, "timestamp": state.timestamp})


async def delete_user_setting_view(conn: AsyncConnection, setting_id: int) -> None:
    await conn.execute(delete(user_setting).where(user_setting.c.id == setting_id))


async def save_registration_view(conn: AsyncConnection, state: RegistrationState, *,
                                 stream_id: str | None, version: int) -> None:
    """The registration's row, open (not deleted)."""
    await _upsert(conn, registration, "id", {"id": state.id, "stream_id": stream_id,
                                             "version": version,
                                             "state": state.model_dump(mode="json"),
                                             "deleted": False})


async def close_registration_view(conn: AsyncConnection, registration_id: int,
                                  version: int | None) -> None:
    """Mark the registration accepted or discarded (deleted)."""
    await conn.execute(update(registration).where(registration.c.id == registration_id).values(
        deleted=True, version=version))


# ---- organisations, from orgs' topic -----------------------------------------------------------


async def save_organisation_view(conn: AsyncConnection, state: OrganisationState, *,
                                 version: int | None, clear_merge: bool) -> None:
    """Insert or update the organisation's row (not deleted; `clear_merge`: nor being merged)
    unless it reflects a newer version already."""
    values: dict[str, Any] = {
        "org_id": state.id, "uuid": state.uuid, "name": state.name, "local": state.local,
        "deleted": False, "state": state.model_dump(mode="json"), "version": version}
    if clear_merge:
        values.update(merging_into=None, merge_id=None)
    stmt = pg_insert(org).values(**values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[org.c.org_id], set_={k: stmt.excluded[k] for k in values
                                             if k != "org_id"}, where=is_newer(stmt, org)))


async def tombstone_organisation_view(conn: AsyncConnection, *, org_id: int, uuid: str,
                                      name: str, version: int | None) -> None:
    """Mark the organisation deleted unless its row reflects a newer version; a row for an
    organisation never seen is inserted deleted."""
    stmt = pg_insert(org).values(org_id=org_id, uuid=uuid, name=name, local=True, deleted=True,
                                 state={"id": org_id, "uuid": uuid, "name": name},
                                 version=version)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[org.c.org_id],
        set_={"deleted": True, "version": stmt.excluded.version}, where=is_newer(stmt, org)))
