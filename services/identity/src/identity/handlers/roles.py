"""Role commands and reads: index, view, add, edit, delete, set the default role."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.store import record, write
from identity.domain.errors import InvalidFieldsError, NotFoundError
from identity.domain.roles import ROLE_IN_USE, apply_role_fields, role_fields
from identity.handlers.authkeys import next_id
from misp_contracts.envelope import Actor
from misp_contracts.events.base import changes_between
from misp_contracts.events.identity import (
    DefaultRoleChanged,
    RoleCreated,
    RoleDeleted,
    RoleState,
    RoleUpdated,
)
from misp_platform.eventstore import Append

STREAM = "role"
INVALID_ROLE = "Invalid Role."
ROLE_NAMESPACE = uuid.UUID("6f1c1b4e-3c55-4a4f-9a53-2f0b8e1d7a10")
# The AdminSetting `default_role` is a stream of its own.
DEFAULT_ROLE_STREAM = str(uuid.uuid5(ROLE_NAMESPACE, "admin-setting:default_role"))


def role_stream(role_id: int) -> str:
    """A role's stream id, derived from its integer id (seeding is idempotent through it)."""
    return str(uuid.uuid5(ROLE_NAMESPACE, f"role:{role_id}"))


async def index(engine: AsyncEngine, named: dict[str, str]) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        roles = await queries.all_roles(conn)
        default = await queries.default_role_id(conn)
    wanted = (named.get("name") or named.get("quickFilter") or "").lower()
    return [{"Role": role_fields(r, default_role_id=default, include_full=False)}
            for r in roles if not wanted or wanted in r.name.lower()]


async def view(engine: AsyncEngine, role_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        loaded = await queries.get_role(conn, role_id)
        default = await queries.default_role_id(conn)
    if loaded is None:
        raise NotFoundError(INVALID_ROLE)
    return {"Role": role_fields(loaded.state, default_role_id=default)}


async def _clear_other_defaults(conn: AsyncConnection, keep: int, actor: Actor) -> list[Append]:
    """`roles.default_role` is held by one role at most."""
    appends = []
    for other in await queries.all_roles(conn):
        if other.id != keep and other.default_role:
            loaded = await queries.get_role(conn, other.id)
            assert loaded is not None
            new = other.model_copy(update={"default_role": False})
            appends.append(Append(stream_id=loaded.stream_id, stream_type=STREAM,
                                  expected_version=loaded.version,
                                  events=(RoleUpdated(role=new, changes={
                                      "default_role": (True, False)}),), actor=actor))
    return appends


async def add(engine: AsyncEngine, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        role_id = await next_id(conn, "role_id_seq")
        state = apply_role_fields(None, body, role_id=role_id, now=now)
        await _unique_name(conn, state)
        appends = [Append(stream_id=role_stream(role_id), stream_type=STREAM,
                          expected_version=0, events=(RoleCreated(role=state),), actor=actor)]
        if state.default_role:
            appends += await _clear_other_defaults(conn, role_id, actor)
        await record(conn, appends)
        return {"Role": role_fields(state, default_role_id=await queries.default_role_id(conn))}

    return await write(engine, work)


async def _unique_name(conn: AsyncConnection, state: RoleState) -> None:
    for other in await queries.all_roles(conn):
        if other.id != state.id and other.name.lower() == state.name.lower():
            raise InvalidFieldsError({"name": ["A role with this name already exists."]})


async def edit(engine: AsyncEngine, actor: Actor, role_id: int,
               body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {k: v for k, v in body.items() if k not in ("id", "created", "modified")}

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        loaded = await queries.get_role(conn, role_id)
        if loaded is None:
            raise NotFoundError(INVALID_ROLE)
        new = apply_role_fields(loaded.state, body, role_id=role_id, now=now)
        await _unique_name(conn, new)
        changes = changes_between(loaded.state.model_dump(mode="json", exclude={"modified"}),
                                  new.model_dump(mode="json", exclude={"modified"}))
        if changes:
            appends = [Append(stream_id=loaded.stream_id, stream_type=STREAM,
                              expected_version=loaded.version,
                              events=(RoleUpdated(role=new, changes=changes),), actor=actor)]
            if new.default_role and not loaded.state.default_role:
                appends += await _clear_other_defaults(conn, role_id, actor)
            await record(conn, appends)
        else:
            new = loaded.state
        return {"Role": role_fields(new, default_role_id=await queries.default_role_id(conn))}

    return await write(engine, work)


async def delete(engine: AsyncEngine, actor: Actor, role_id: int) -> None:
    async def work(conn: AsyncConnection) -> None:
        loaded = await queries.get_role(conn, role_id)
        if loaded is None:
            raise NotFoundError(INVALID_ROLE)
        if await queries.role_in_use(conn, role_id):
            raise InvalidFieldsError(ROLE_IN_USE)
        appends = [Append(stream_id=loaded.stream_id, stream_type=STREAM,
                          expected_version=loaded.version,
                          events=(RoleDeleted(role_id=role_id, name=loaded.state.name),),
                          actor=actor)]
        if await queries.default_role_id(conn) == role_id:
            appends.append(await _default_append(conn, None, actor))
        await record(conn, appends)

    await write(engine, work)


async def _default_append(conn: AsyncConnection, role_id: int | None, actor: Actor) -> Append:
    from sqlalchemy import func, select

    from misp_platform.db import event

    version = (await conn.execute(select(func.coalesce(func.max(event.c.version), 0)).where(
        event.c.stream_id == DEFAULT_ROLE_STREAM))).scalar_one()
    return Append(stream_id=DEFAULT_ROLE_STREAM, stream_type="admin_setting",
                  expected_version=int(version),
                  events=(DefaultRoleChanged(role_id=role_id,
                                             previous_role_id=await queries.default_role_id(
                                                 conn)),), actor=actor)


async def set_default(engine: AsyncEngine, actor: Actor, role_id: int | None) -> None:
    """`admin/roles/set_default/{id}` (`None`: unset)."""
    async def work(conn: AsyncConnection) -> None:
        if role_id is not None and await queries.get_role(conn, role_id) is None:
            raise InvalidFieldsError(INVALID_ROLE, message=INVALID_ROLE)
        await record(conn, [await _default_append(conn, role_id, actor)])

    await write(engine, work)
