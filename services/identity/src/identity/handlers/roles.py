"""Role commands and reads: index, view, add, edit, delete, set the default role (through the
unit of work, identity.adapters.ports)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from identity.adapters.ports import IdentityQueries, IdentityStore, UnitOfWork
from identity.domain.errors import InvalidFieldsError, NotFoundError
from identity.domain.roles import ROLE_IN_USE, apply_role_fields, role_fields
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
from misp_platform.misp.paging import Page, every_row

STREAM = "role"
INVALID_ROLE = "Invalid Role."
ROLE_NAMESPACE = uuid.UUID("6f1c1b4e-3c55-4a4f-9a53-2f0b8e1d7a10")
# The AdminSetting `default_role` is a stream of its own.
DEFAULT_ROLE_STREAM = str(uuid.uuid5(ROLE_NAMESPACE, "admin-setting:default_role"))


def role_stream(role_id: int) -> str:
    """A role's stream id, derived from its integer id (seeding is idempotent through it)."""
    return str(uuid.uuid5(ROLE_NAMESPACE, f"role:{role_id}"))


async def index(uow: UnitOfWork, named: dict[str, str],
                page: Page | None = None) -> list[dict[str, Any]]:
    """`roles/index`: by id, a name filter (`name` or `quickFilter`) and the page in SQL."""
    page = page or every_row()
    wanted = named.get("name") or named.get("quickFilter") or None
    async with uow.reads() as q:
        roles = await q.roles(name_contains=wanted, offset=page.offset, limit=page.limit)
        default = await q.default_role_id()
    return [{"Role": role_fields(r, default_role_id=default, include_full=False)}
            for r in roles]


async def view(uow: UnitOfWork, role_id: int) -> dict[str, Any]:
    async with uow.reads() as q:
        loaded = await q.role(role_id)
        default = await q.default_role_id()
    if loaded is None:
        raise NotFoundError(INVALID_ROLE)
    return {"Role": role_fields(loaded.state, default_role_id=default)}


async def _clear_other_defaults(q: IdentityQueries, keep: int, actor: Actor) -> list[Append]:
    """`roles.default_role` is held by one role at most."""
    appends = []
    for other in await q.roles():
        if other.id != keep and other.default_role:
            loaded = await q.role(other.id)
            assert loaded is not None
            new = other.model_copy(update={"default_role": False})
            appends.append(Append(stream_id=loaded.stream_id, stream_type=STREAM,
                                  expected_version=loaded.version,
                                  events=(RoleUpdated(role=new, changes={
                                      "default_role": (True, False)}),), actor=actor))
    return appends


async def add(uow: UnitOfWork, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)

    async def work(tx: IdentityStore) -> dict[str, Any]:
        role_id = await tx.next_role_id()
        state = apply_role_fields(None, body, role_id=role_id, now=now)
        await _unique_name(tx, state)
        appends = [Append(stream_id=role_stream(role_id), stream_type=STREAM,
                          expected_version=0, events=(RoleCreated(role=state),), actor=actor)]
        if state.default_role:
            appends += await _clear_other_defaults(tx, role_id, actor)
        await tx.record(appends)
        await tx.commit()
        return {"Role": role_fields(state, default_role_id=await tx.default_role_id())}

    return await uow.transaction(work)


async def _unique_name(q: IdentityQueries, state: RoleState) -> None:
    for other in await q.roles():
        if other.id != state.id and other.name.lower() == state.name.lower():
            raise InvalidFieldsError({"name": ["A role with this name already exists."]})


async def edit(uow: UnitOfWork, actor: Actor, role_id: int,
               body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {k: v for k, v in body.items() if k not in ("id", "created", "modified")}

    async def work(tx: IdentityStore) -> dict[str, Any]:
        loaded = await tx.role(role_id)
        if loaded is None:
            raise NotFoundError(INVALID_ROLE)
        new = apply_role_fields(loaded.state, body, role_id=role_id, now=now)
        await _unique_name(tx, new)
        changes = changes_between(loaded.state.model_dump(mode="json", exclude={"modified"}),
                                  new.model_dump(mode="json", exclude={"modified"}))
        if changes:
            appends = [Append(stream_id=loaded.stream_id, stream_type=STREAM,
                              expected_version=loaded.version,
                              events=(RoleUpdated(role=new, changes=changes),), actor=actor)]
            if new.default_role and not loaded.state.default_role:
                appends += await _clear_other_defaults(tx, role_id, actor)
            await tx.record(appends)
            await tx.commit()
        else:
            new = loaded.state
        return {"Role": role_fields(new, default_role_id=await tx.default_role_id())}

    return await uow.transaction(work)


async def delete(uow: UnitOfWork, actor: Actor, role_id: int) -> None:
    async def work(tx: IdentityStore) -> None:
        loaded = await tx.role(role_id)
        if loaded is None:
            raise NotFoundError(INVALID_ROLE)
        if await tx.role_in_use(role_id):
            raise InvalidFieldsError(ROLE_IN_USE)
        appends = [Append(stream_id=loaded.stream_id, stream_type=STREAM,
                          expected_version=loaded.version,
                          events=(RoleDeleted(role_id=role_id, name=loaded.state.name),),
                          actor=actor)]
        if await tx.default_role_id() == role_id:
            appends.append(await _default_append(tx, None, actor))
        await tx.record(appends)
        await tx.commit()

    await uow.transaction(work)


async def _default_append(q: IdentityQueries, role_id: int | None, actor: Actor) -> Append:
    return Append(stream_id=DEFAULT_ROLE_STREAM, stream_type="admin_setting",
                  expected_version=await q.stream_version(DEFAULT_ROLE_STREAM),
                  events=(DefaultRoleChanged(role_id=role_id,
                                             previous_role_id=await q.default_role_id()),),
                  actor=actor)


async def set_default(uow: UnitOfWork, actor: Actor, role_id: int | None) -> None:
    """`admin/roles/set_default/{id}` (`None`: unset)."""
    async def work(tx: IdentityStore) -> None:
        if role_id is not None and await tx.role(role_id) is None:
            raise InvalidFieldsError(INVALID_ROLE, message=INVALID_ROLE)
        await tx.record([await _default_append(tx, role_id, actor)])
        await tx.commit()

    await uow.transaction(work)
