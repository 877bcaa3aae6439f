"""User settings: index, setSetting, getSetting, delete (MISP's UserSettingsController).

Whose setting: a site admin may name any user, an org admin a user of their org (not a site
admin); anyone else, or a name they may not use, falls back to the caller, as MISP does.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from identity.adapters.ports import IdentityQueries, IdentityStore, UnitOfWork
from identity.domain import user_settings as rules
from identity.domain.access import can_see_user, listing_scope
from identity.domain.errors import InvalidFieldsError, NotAllowedError, NotFoundError
from identity.domain.values import to_int
from misp_contracts.events.base import changes_between
from misp_contracts.events.identity import (
    UserSettingDeleted,
    UserSettingSet,
    UserSettingState,
)
from misp_platform.auth import Principal
from misp_platform.eventstore import Append
from misp_platform.misp.paging import Page, every_row

STREAM = "user-setting"


def setting_fields(state: UserSettingState) -> dict[str, Any]:
    """A `UserSetting` row as MISP shows it: ints as strings, the value decoded."""
    stamp = int(state.timestamp.timestamp()) if state.timestamp else 0
    return {"id": str(state.id), "user_id": str(state.user_id), "setting": state.setting,
            "value": state.value, "timestamp": str(stamp)}


async def _may_manage(q: IdentityQueries, caller: Principal, user_id: int) -> bool:
    if user_id == caller.user_id:
        return True
    if not caller.is_admin:
        return False
    loaded = await q.user(user_id)
    if loaded is None:
        return False
    role = await q.role(loaded.state.role_id)
    return can_see_user(caller, loaded.state, role.state if role else None)


async def _whose(q: IdentityQueries, caller: Principal, wanted: Any) -> int:
    """The user a request names (`user_id`), if the caller may act for them; else the caller."""
    user_id = to_int(wanted) if wanted not in (None, "", False) else None
    if user_id is not None and await _may_manage(q, caller, user_id):
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


def _number(value: str) -> int:
    """A named filter's id (one that is not a number matches nothing)."""
    number = to_int(value)
    return number if number is not None else -1


async def index(uow: UnitOfWork, caller: Principal, named: dict[str, str],
                page: Page | None = None) -> list[dict[str, Any]]:
    """`userSettings/index`: site admins see all, org admins their org's, users their own. A
    page is a slice of the visible settings in id order: in SQL when every row the query finds
    is visible (a site admin's, or one's own), else after the check."""
    page = page or every_row()
    setting_id = _number(named["id"]) if "id" in named else None
    user_id = _number(named["user_id"]) if "user_id" in named else None
    scope = listing_scope(caller, user_id)
    if scope is None:
        return []
    user_id, org_id = scope
    in_sql = caller.is_site_admin or user_id == caller.user_id
    window = {"offset": page.offset, "limit": page.limit} if in_sql else {}
    async with uow.reads() as q:
        rows = await q.user_settings(setting_id=setting_id, user_id=user_id,
                                     name=named.get("setting"), org_id=org_id, **window)
        roles = {r.id: r for r in await q.roles()}
    visible = [{"UserSetting": setting_fields(row.setting),
                "User": {"id": str(row.owner.id), "email": row.owner.email}}
               for row in rows
               if row.owner.id == caller.user_id
               or can_see_user(caller, row.owner, roles.get(row.owner.role_id))]
    return visible if in_sql else page.take(visible)


async def set_setting(uow: UnitOfWork, caller: Principal,
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

    async def work(tx: IdentityStore) -> dict[str, Any]:
        user_id = await _whose(tx, caller, body.get("user_id"))
        if await tx.user(user_id) is None:
            raise NotFoundError("Invalid user.")
        loaded = await tx.user_setting(user_id=user_id, name=name)
        if loaded is None:
            new = UserSettingState(id=await tx.next_setting_id(), user_id=user_id,
                                   setting=name, value=value, timestamp=now)
            changes = {"setting": (None, name), "value": (None, value)}
            stream_id, version = str(uuid.uuid4()), 0
        else:
            current = loaded.state
            new = current.model_copy(update={"value": value, "timestamp": now})
            changes = changes_between({"value": current.value}, {"value": value})
            stream_id, version = loaded.stream_id, loaded.version
        await tx.record([Append(
            stream_id=stream_id, stream_type=STREAM, expected_version=version,
            events=(UserSettingSet(user_setting=new, changes=changes),), actor=caller.actor())])
        await tx.commit()
        return {"UserSetting": setting_fields(new)}

    return await uow.transaction(work)


async def get_setting(uow: UnitOfWork, caller: Principal,
                      body: dict[str, Any]) -> dict[str, Any]:
    """`userSettings/getSetting[/{user_id}/{setting}]`: the row, unwrapped."""
    name = body.get("setting")
    if not rules.is_valid(name):
        raise NotAllowedError(rules.INVALID_SETTING)
    async with uow.reads() as q:
        user_id = await _whose(q, caller, body.get("user_id"))
        loaded = await q.user_setting(user_id=user_id, name=str(name))
    if loaded is None:
        raise NotFoundError(rules.INVALID_SETTING)
    return setting_fields(loaded.state)


async def delete_setting(uow: UnitOfWork, caller: Principal, setting_id: int | None,
                         body: dict[str, Any]) -> int:
    """`userSettings/delete[/{id}]` (or a body naming `setting` and `user_id`): the deleted id."""

    async def work(tx: IdentityStore) -> int:
        if setting_id is not None:
            loaded = await tx.user_setting(setting_id=setting_id)
        else:
            name = body.get("setting")
            if not rules.is_valid(name):
                raise NotFoundError(rules.INVALID_USER_SETTING)
            user_id = await _whose(tx, caller, body.get("user_id"))
            loaded = await tx.user_setting(user_id=user_id, name=str(name))
        if loaded is None or not await _may_manage(tx, caller, loaded.state.user_id):
            raise NotFoundError(rules.INVALID_USER_SETTING)
        row = loaded.state
        _check_name(caller, row.setting)
        await tx.record([Append(
            stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
            events=(UserSettingDeleted(id=row.id, user_id=row.user_id, setting=row.setting),),
            actor=caller.actor())])
        await tx.commit()
        return row.id

    return await uow.transaction(work)
