"""User settings: index, setSetting, getSetting, delete (MISP's UserSettingsController).

Whose setting: a site admin may name any user, an org admin a user of their org (not a site
admin); anyone else, or a name they may not use, falls back to the caller, as MISP does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.store import next_id, record, write
from identity.adapters.tables import user_account, user_setting
from identity.domain import user_settings as rules
from identity.domain.access import can_see_user
from identity.domain.errors import InvalidFieldsError, NotAllowedError, NotFoundError
from identity.domain.values import to_int
from misp_contracts.events.base import changes_between
from misp_contracts.events.identity import (
    UserSettingDeleted,
    UserSettingSet,
    UserSettingState,
    UserState,
)
from misp_platform.auth import Principal
from misp_platform.eventstore import Append

STREAM = "user-setting"


def setting_fields(state: UserSettingState) -> dict[str, Any]:
    """A `UserSetting` row as MISP shows it: ints as strings, the value decoded."""
    stamp = int(state.timestamp.timestamp()) if state.timestamp else 0
    return {"id": str(state.id), "user_id": str(state.user_id), "setting": state.setting,
            "value": state.value, "timestamp": str(stamp)}


def _state(row: Any) -> UserSettingState:
    return UserSettingState(id=row.id, user_id=row.user_id, setting=row.setting, value=row.value,
                            timestamp=row.timestamp)


async def _may_manage(conn: AsyncConnection, caller: Principal, user_id: int) -> bool:
    if user_id == caller.user_id:
        return True
    if not caller.is_admin:
        return False
    loaded = await queries.get_user(conn, user_id)
    if loaded is None:
        return False
    role = await queries.get_role(conn, loaded.state.role_id)
    return can_see_user(caller, loaded.state, role.state if role else None)


async def _whose(conn: AsyncConnection, caller: Principal, wanted: Any) -> int:
    """The user a request names (`user_id`), if the caller may act for them; else the caller."""
    user_id = to_int(wanted) if wanted not in (None, "", False) else None
    if user_id is not None and await _may_manage(conn, caller, user_id):
        return user_id
    return caller.user_id


def _check_name(caller: Principal, name: Any) -> str:
    if not rules.is_valid(name):
        raise NotAllowedError(rules.INVALID_SETTING)
    lacking = rules.missing_permission(name, is_site_admin=caller.is_site_admin,
                                       flags={"perm_admin": caller.role.perm_admin})
    if lacking:
        raise NotAllowedError(rules.restricted_message(lacking))
    return str(name)


async def index(engine: AsyncEngine, caller: Principal,
                named: dict[str, str]) -> list[dict[str, Any]]:
    """`userSettings/index`: site admins see all, org admins their org's, users their own."""
    stmt = (select(user_setting, user_account.c.email, user_account.c.state.label("user_state"))
            .select_from(user_setting.join(user_account,
                                           user_account.c.user_id == user_setting.c.user_id))
            .order_by(user_setting.c.id))
    for name, column in (("id", user_setting.c.id), ("user_id", user_setting.c.user_id)):
        if name in named:
            number = to_int(named[name])
            stmt = stmt.where(column == (number if number is not None else -1))
    if "setting" in named:
        stmt = stmt.where(user_setting.c.setting == named["setting"])
    if not caller.is_site_admin:
        stmt = stmt.where(user_account.c.org_id == caller.org_id) if caller.is_org_admin \
            else stmt.where(user_setting.c.user_id == caller.user_id)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
        roles = {r.id: r for r in await queries.all_roles(conn)}
    out = []
    for row in rows:
        owner = UserState.model_validate(row.user_state)
        if row.user_id != caller.user_id and not can_see_user(caller, owner,
                                                              roles.get(owner.role_id)):
            continue
        out.append({"UserSetting": setting_fields(_state(row)),
                    "User": {"id": str(row.user_id), "email": row.email}})
    return out


async def set_setting(engine: AsyncEngine, caller: Principal,
                      body: dict[str, Any]) -> dict[str, Any]:
    """`userSettings/setSetting[/{user_id}/{setting}]`: the saved row `{"UserSetting": ...}`."""
    name = body.get("setting")
    if name in (None, "") or "value" not in body:
        raise NotAllowedError(rules.NEEDS_SETTING_AND_VALUE)
    name = _check_name(caller, name)
    value, problem = rules.parse_value(body["value"])
    if problem:
        raise InvalidFieldsError({"value": [problem]}, message="Could not setSetting UserSettings")
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        user_id = await _whose(conn, caller, body.get("user_id"))
        if await queries.get_user(conn, user_id) is None:
            raise NotFoundError("Invalid user.")
        row = (await conn.execute(select(user_setting).where(
            user_setting.c.user_id == user_id, user_setting.c.setting == name))).first()
        if row is None:
            new = UserSettingState(id=await next_setting_id(conn), user_id=user_id,
                                   setting=name, value=value, timestamp=now)
            changes = {"setting": (None, name), "value": (None, value)}
            stream_id, version = str(uuid.uuid4()), 0
        else:
            current = _state(row)
            new = current.model_copy(update={"value": value, "timestamp": now})
            changes = changes_between({"value": current.value}, {"value": value})
            stream_id, version = str(row.stream_id), row.version
        await record(conn, [Append(
            stream_id=stream_id, stream_type=STREAM, expected_version=version,
            events=(UserSettingSet(user_setting=new, changes=changes),), actor=caller.actor())])
        return {"UserSetting": setting_fields(new)}

    return await write(engine, work)


async def next_setting_id(conn: AsyncConnection) -> int:
    return await next_id(conn, "user_setting_id_seq")


async def get_setting(engine: AsyncEngine, caller: Principal,
                      body: dict[str, Any]) -> dict[str, Any]:
    """`userSettings/getSetting[/{user_id}/{setting}]`: the row, unwrapped."""
    name = body.get("setting")
    if not rules.is_valid(name):
        raise NotAllowedError(rules.INVALID_SETTING)
    async with engine.connect() as conn:
        user_id = await _whose(conn, caller, body.get("user_id"))
        row = (await conn.execute(select(user_setting).where(
            user_setting.c.user_id == user_id, user_setting.c.setting == name))).first()
    if row is None:
        raise NotFoundError(rules.INVALID_SETTING)
    return setting_fields(_state(row))


async def delete_setting(engine: AsyncEngine, caller: Principal, setting_id: int | None,
                         body: dict[str, Any]) -> int:
    """`userSettings/delete[/{id}]` (or a body naming `setting` and `user_id`): the deleted id."""

    async def work(conn: AsyncConnection) -> int:
        stmt = select(user_setting)
        if setting_id is not None:
            stmt = stmt.where(user_setting.c.id == setting_id)
        else:
            name = body.get("setting")
            if not rules.is_valid(name):
                raise NotFoundError(rules.INVALID_USER_SETTING)
            user_id = await _whose(conn, caller, body.get("user_id"))
            stmt = stmt.where(user_setting.c.user_id == user_id, user_setting.c.setting == name)
        row = (await conn.execute(stmt)).first()
        if row is None or not await _may_manage(conn, caller, int(row.user_id)):
            raise NotFoundError(rules.INVALID_USER_SETTING)
        _check_name(caller, row.setting)
        await record(conn, [Append(
            stream_id=str(row.stream_id), stream_type=STREAM, expected_version=row.version,
            events=(UserSettingDeleted(id=row.id, user_id=row.user_id, setting=row.setting),),
            actor=caller.actor())])
        return int(row.id)

    return await write(engine, work)
