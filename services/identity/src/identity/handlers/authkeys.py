"""Authkey commands and reads: add, index, view, edit, delete, reset (MISP's AuthKeysController)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.store import record, write
from identity.adapters.tables import authkey, user_account
from identity.domain.access import can_manage_keys_of
from identity.domain.authkeys import parse_key_fields
from identity.domain.errors import InvalidFieldsError, NotFoundError
from identity.domain.users import INVALID_USER
from identity.handlers.views import authkey_fields
from misp_contracts.envelope import Actor
from misp_contracts.events.base import changes_between
from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyDeleted,
    AuthKeyState,
    AuthKeyUpdated,
    UserState,
)
from misp_platform.auth import Principal, authkey_hmac, generate_authkey
from misp_platform.eventstore import Append
from misp_platform.server_settings import read_settings

INVALID_KEY = "Invalid auth key"
STREAM = "authkey"


def new_key(pepper: str, *, key_id: int, user_id: int, now: datetime,
            **fields: Any) -> tuple[str, AuthKeyState]:
    """A fresh random key and its state (only its HMAC and first/last four characters)."""
    raw = generate_authkey()
    state = AuthKeyState(id=key_id, uuid=str(uuid.uuid4()), user_id=user_id,
                         key_hmac=authkey_hmac(pepper, raw), authkey_start=raw[:4],
                         authkey_end=raw[-4:], created=now, **fields)
    return raw, state


async def next_id(conn: AsyncConnection, sequence: str) -> int:
    return int((await conn.execute(text(f"SELECT nextval('{sequence}')"))).scalar_one())


def created(state: AuthKeyState, actor: Actor) -> Append:
    return Append(stream_id=state.uuid, stream_type=STREAM, expected_version=0,
                  events=(AuthKeyCreated(authkey=state),), actor=actor)


def deleted(loaded: queries.LoadedKey, actor: Actor) -> Append:
    key = loaded.state
    return Append(stream_id=loaded.stream_id, stream_type=STREAM,
                  expected_version=loaded.version,
                  events=(AuthKeyDeleted(authkey_id=key.id, user_id=key.user_id,
                                         key_hmac=key.key_hmac),), actor=actor)


async def _key_settings(conn: AsyncConnection) -> tuple[int | None, bool]:
    values = await read_settings(conn, ["Security.advanced_authkeys_validity",
                                        "Security.mandate_ip_allowlist_advanced_authkeys"])
    days = values["Security.advanced_authkeys_validity"]
    return (int(days) if isinstance(days, int | float) and days > 0 else None,
            bool(values["Security.mandate_ip_allowlist_advanced_authkeys"]))


async def _target_user(conn: AsyncConnection, caller: Principal,
                       user_id: int) -> queries.LoadedUser:
    loaded = await queries.get_user(conn, user_id)
    if loaded is None:
        raise NotFoundError(INVALID_USER)
    role = await queries.get_role(conn, loaded.state.role_id)
    if not can_manage_keys_of(caller, loaded.state, role.state if role else None):
        raise NotFoundError(INVALID_USER)
    return loaded


async def add_key(engine: AsyncEngine, caller: Principal, user_id: int, body: dict[str, Any],
                  *, pepper: str) -> dict[str, Any]:
    """`auth_keys/add/{user|me}`: the new key's row with `authkey_raw` (shown once)."""
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        await _target_user(conn, caller, user_id)
        max_days, mandate_ips = await _key_settings(conn)
        fields, errors = parse_key_fields(body, now=now, max_days=max_days,
                                          mandate_ips=mandate_ips, creating=True)
        if errors:
            raise InvalidFieldsError(errors)
        raw, state = new_key(pepper, key_id=await next_id(conn, "authkey_id_seq"),
                             user_id=user_id, now=now, **fields)
        await record(conn, [created(state, caller.actor())])
        return {**authkey_fields(state), "authkey_raw": raw}

    return await write(engine, work)


async def _visible_key(conn: AsyncConnection, caller: Principal,
                       key_id: int) -> queries.LoadedKey:
    loaded = await queries.get_key(conn, key_id)
    if loaded is None:
        raise NotFoundError(INVALID_KEY)
    owner = await queries.get_user(conn, loaded.state.user_id)
    if owner is None:
        raise NotFoundError(INVALID_KEY)
    role = await queries.get_role(conn, owner.state.role_id)
    if not can_manage_keys_of(caller, owner.state, role.state if role else None):
        raise NotFoundError(INVALID_KEY)
    return loaded


async def view_key(engine: AsyncEngine, caller: Principal, key_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        loaded = await _visible_key(conn, caller, key_id)
        owner = await queries.get_user(conn, loaded.state.user_id)
    assert owner is not None
    return {"AuthKey": authkey_fields(loaded.state),
            "User": {"id": owner.state.id, "email": owner.state.email}}


async def index_keys(engine: AsyncEngine, caller: Principal,
                     user_id: int | None) -> list[dict[str, Any]]:
    stmt = (select(authkey.c.state, user_account.c.state.label("user_state"))
            .select_from(authkey.join(user_account,
                                      user_account.c.user_id == authkey.c.user_id))
            .order_by(authkey.c.authkey_id))
    if user_id is not None:
        stmt = stmt.where(authkey.c.user_id == user_id)
    if not caller.is_site_admin:
        stmt = stmt.where(user_account.c.org_id == caller.org_id) if caller.is_org_admin \
            else stmt.where(authkey.c.user_id == caller.user_id)
    out: list[dict[str, Any]] = []
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
        roles = {r.id: r for r in await queries.all_roles(conn)}
    for row in rows:
        user = UserState.model_validate(row.user_state)
        if not can_manage_keys_of(caller, user, roles.get(user.role_id)):
            continue
        key = AuthKeyState.model_validate(row.state)
        out.append({"AuthKey": authkey_fields(key), "User": {"id": user.id, "email": user.email}})
    return out


async def edit_key(engine: AsyncEngine, caller: Principal, key_id: int,
                   body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> dict[str, Any]:
        loaded = await _visible_key(conn, caller, key_id)
        max_days, mandate_ips = await _key_settings(conn)
        allowed = {k: v for k, v in body.items()
                   if k in ("comment", "allowed_ips", "expiration", "read_only")}
        fields, errors = parse_key_fields(allowed, now=now, max_days=max_days,
                                          mandate_ips=mandate_ips, creating=False)
        if errors:
            raise InvalidFieldsError(errors)
        new = loaded.state.model_copy(update=fields)
        changes = changes_between(loaded.state.model_dump(mode="json"), new.model_dump(mode="json"))
        if changes:
            await record(conn, [Append(
                stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
                events=(AuthKeyUpdated(authkey=new, changes=changes),), actor=caller.actor())])
        return {"AuthKey": authkey_fields(new)}

    return await write(engine, work)


async def delete_key(engine: AsyncEngine, caller: Principal, key_id: int) -> None:
    async def work(conn: AsyncConnection) -> None:
        loaded = await _visible_key(conn, caller, key_id)
        await record(conn, [deleted(loaded, caller.actor())])

    await write(engine, work)


async def reset_key(engine: AsyncEngine, caller: Principal, user_id: int, *, pepper: str,
                    comment: str = "") -> str:
    """`users/resetauthkey`: a new key; the user's previous keys are deleted. The raw key."""
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> str:
        await _target_user(conn, caller, user_id)
        max_days, _ = await _key_settings(conn)
        fields, _errors = parse_key_fields({}, now=now, max_days=max_days, mandate_ips=False,
                                           creating=True)
        old = await queries.keys_of(conn, user_id)
        raw, state = new_key(pepper, key_id=await next_id(conn, "authkey_id_seq"),
                             user_id=user_id, now=now, comment=comment, **fields)
        actor = caller.actor()
        await record(conn, [*(deleted(k, actor) for k in old),
                            created(state, actor)])
        return raw

    return await write(engine, work)
