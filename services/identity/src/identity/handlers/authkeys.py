"""Authkey commands and reads: add, index, view, edit, delete, reset (MISP's AuthKeysController),
through the unit of work (identity.adapters.ports)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from identity.adapters.ports import (
    IdentityQueries,
    IdentityStore,
    LoadedKey,
    LoadedUser,
    UnitOfWork,
)
from identity.domain.access import can_manage_keys_of, listing_scope
from identity.domain.authkeys import parse_key_fields
from identity.domain.errors import InvalidFieldsError, NotAllowedError, NotFoundError
from identity.domain.users import INVALID_USER
from identity.handlers.views import authkey_fields
from misp_contracts.envelope import Actor
from misp_contracts.events.base import changes_between
from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyDeleted,
    AuthKeyState,
    AuthKeyUpdated,
)
from misp_platform.auth import Principal, authkey_hmac, generate_authkey
from misp_platform.eventstore import Append
from misp_platform.misp.paging import Page, every_row

INVALID_KEY = "Invalid auth key"
STREAM = "authkey"
KEY_SETTINGS = ("Security.advanced_authkeys_validity",
                "Security.mandate_ip_allowlist_advanced_authkeys")


def new_key(pepper: str, *, key_id: int, user_id: int, now: datetime,
            **fields: Any) -> tuple[str, AuthKeyState]:
    """A fresh random key and its state (only its HMAC and first/last four characters)."""
    raw = generate_authkey()
    state = AuthKeyState(id=key_id, uuid=str(uuid.uuid4()), user_id=user_id,
                         key_hmac=authkey_hmac(pepper, raw), authkey_start=raw[:4],
                         authkey_end=raw[-4:], created=now, **fields)
    return raw, state


def created(state: AuthKeyState, actor: Actor) -> Append:
    return Append(stream_id=state.uuid, stream_type=STREAM, expected_version=0,
                  events=(AuthKeyCreated(authkey=state),), actor=actor)


def deleted(loaded: LoadedKey, actor: Actor) -> Append:
    key = loaded.state
    return Append(stream_id=loaded.stream_id, stream_type=STREAM,
                  expected_version=loaded.version,
                  events=(AuthKeyDeleted(authkey_id=key.id, user_id=key.user_id,
                                         key_hmac=key.key_hmac),), actor=actor)


async def _key_settings(q: IdentityQueries) -> tuple[int | None, bool]:
    values = await q.settings(KEY_SETTINGS)
    days = values["Security.advanced_authkeys_validity"]
    return (int(days) if isinstance(days, int | float) and days > 0 else None,
            bool(values["Security.mandate_ip_allowlist_advanced_authkeys"]))


async def _target_user(q: IdentityQueries, caller: Principal, user_id: int) -> LoadedUser:
    loaded = await q.user(user_id)
    if loaded is None:
        raise NotFoundError(INVALID_USER)
    role = await q.role(loaded.state.role_id)
    if not can_manage_keys_of(caller, loaded.state, role.state if role else None):
        raise NotFoundError(INVALID_USER)
    return loaded


async def add_key(uow: UnitOfWork, caller: Principal, user_id: int, body: dict[str, Any],
                  *, pepper: str) -> dict[str, Any]:
    """`auth_keys/add/{user|me}`: the new key's row with `authkey_raw` (shown once)."""
    now = datetime.now(UTC)

    async def work(tx: IdentityStore) -> dict[str, Any]:
        await _target_user(tx, caller, user_id)
        max_days, mandate_ips = await _key_settings(tx)
        fields, errors = parse_key_fields(body, now=now, max_days=max_days,
                                          mandate_ips=mandate_ips, creating=True)
        if errors:
            raise InvalidFieldsError(errors)
        raw, state = new_key(pepper, key_id=await tx.next_key_id(), user_id=user_id, now=now,
                             **fields)
        await tx.record([created(state, caller.actor())])
        await tx.commit()
        return {**authkey_fields(state), "authkey_raw": raw}

    return await uow.transaction(work)


async def _visible_key(q: IdentityQueries, caller: Principal,
                       key_id: int) -> tuple[LoadedKey, LoadedUser]:
    """The key and its owner when `caller` may manage the owner's keys; else NotFoundError."""
    loaded = await q.key(key_id)
    if loaded is None:
        raise NotFoundError(INVALID_KEY)
    owner = await q.user(loaded.state.user_id)
    if owner is None:
        raise NotFoundError(INVALID_KEY)
    role = await q.role(owner.state.role_id)
    if not can_manage_keys_of(caller, owner.state, role.state if role else None):
        raise NotFoundError(INVALID_KEY)
    return loaded, owner


async def view_key(uow: UnitOfWork, caller: Principal, key_id: int) -> dict[str, Any]:
    async with uow.reads() as q:
        loaded, owner = await _visible_key(q, caller, key_id)
    return {"AuthKey": authkey_fields(loaded.state),
            "User": {"id": owner.state.id, "email": owner.state.email}}


async def index_keys(uow: UnitOfWork, caller: Principal, user_id: int | None,
                     page: Page | None = None) -> list[dict[str, Any]]:
    """`auth_keys/index[/{user}]`: a site admin sees every key, an org admin their org's, a
    user their own. A page is a slice of the visible keys in id order: in SQL when every key
    the query finds is visible (a site admin's, or one's own), else after the check."""
    page = page or every_row()
    scope = listing_scope(caller, user_id)
    if scope is None:
        return []
    user_id, org_id = scope
    in_sql = caller.is_site_admin or user_id == caller.user_id
    async with uow.reads() as q:
        rows = await (q.keys(user_id=user_id, org_id=org_id, offset=page.offset,
                             limit=page.limit) if in_sql
                      else q.keys(user_id=user_id, org_id=org_id))
        roles = {r.id: r for r in await q.roles()}
    visible = [{"AuthKey": authkey_fields(row.key),
                "User": {"id": row.owner.id, "email": row.owner.email}}
               for row in rows
               if can_manage_keys_of(caller, row.owner, roles.get(row.owner.role_id))]
    return visible if in_sql else page.take(visible)


async def edit_key(uow: UnitOfWork, caller: Principal, key_id: int,
                   body: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)

    async def work(tx: IdentityStore) -> dict[str, Any]:
        loaded, _ = await _visible_key(tx, caller, key_id)
        max_days, mandate_ips = await _key_settings(tx)
        allowed = {k: v for k, v in body.items()
                   if k in ("comment", "allowed_ips", "expiration", "read_only")}
        fields, errors = parse_key_fields(allowed, now=now, max_days=max_days,
                                          mandate_ips=mandate_ips, creating=False)
        if errors:
            raise InvalidFieldsError(errors)
        new = loaded.state.model_copy(update=fields)
        changes = changes_between(loaded.state.model_dump(mode="json"), new.model_dump(mode="json"))
        if changes:
            await tx.record([Append(
                stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
                events=(AuthKeyUpdated(authkey=new, changes=changes),), actor=caller.actor())])
            await tx.commit()
        return {"AuthKey": authkey_fields(new)}

    return await uow.transaction(work)


async def delete_key(uow: UnitOfWork, caller: Principal, key_id: int) -> None:
    async def work(tx: IdentityStore) -> None:
        loaded, _ = await _visible_key(tx, caller, key_id)
        await tx.record([deleted(loaded, caller.actor())])
        await tx.commit()

    await uow.transaction(work)


async def reset_key(uow: UnitOfWork, caller: Principal, user_id: int, *, pepper: str,
                    comment: str = "") -> str:
    """`users/resetauthkey`: a new key; the user's previous keys are deleted. The raw key."""
    now = datetime.now(UTC)

    async def work(tx: IdentityStore) -> str:
        await _target_user(tx, caller, user_id)
        max_days, _ = await _key_settings(tx)
        fields, _errors = parse_key_fields({}, now=now, max_days=max_days, mandate_ips=False,
                                           creating=True)
        old = await tx.keys_of(user_id)
        raw, state = new_key(pepper, key_id=await tx.next_key_id(), user_id=user_id, now=now,
                             comment=comment, **fields)
        actor = caller.actor()
        await tx.record([*(deleted(k, actor) for k in old), created(state, actor)])
        await tx.commit()
        return raw

    return await uow.transaction(work)


SITE_ADMIN_SYNC = ("Site admin accounts cannot be used to create server sync configurations.")
NO_HOST_ORG = "Cannot create sync config - no host org ID configured for the instance."
HOST_ORG_NOT_FOUND = ("Configured host org not found. Please make sure that the setting is "
                      "current on the instance.")
SYNC_SETTINGS = ("MISP.external_baseurl", "MISP.baseurl", "MISP.uuid", "MISP.host_org_id")


async def create_sync(uow: UnitOfWork, caller: Principal, *, pepper: str,
                      request_base: str) -> dict[str, Any]:
    """`servers/createSync`: the configuration another instance needs to sync with this one as
    the caller (a sync user), with a new key of theirs. MISP returns the user's legacy key when
    advanced authkeys are off; this product keeps no key in clear, so it always makes one."""
    if caller.is_site_admin:
        raise NotAllowedError(SITE_ADMIN_SYNC)
    now = datetime.now(UTC)

    async def work(tx: IdentityStore) -> dict[str, Any]:
        values = await tx.settings(SYNC_SETTINGS)
        host_org_id = values["MISP.host_org_id"]
        if not host_org_id:
            raise NotAllowedError(NO_HOST_ORG)
        host = await tx.organisation(int(host_org_id))
        if host is None:
            raise NotAllowedError(HOST_ORG_NOT_FOUND)
        max_days, mandate_ips = await _key_settings(tx)
        comment = f"Auto generated sync key - {now:%Y-%m-%d %H:%M:%S}"
        fields, errors = parse_key_fields({"comment": comment}, now=now, max_days=max_days,
                                          mandate_ips=mandate_ips, creating=True)
        if errors:
            raise InvalidFieldsError(errors)
        raw, state = new_key(pepper, key_id=await tx.next_key_id(), user_id=caller.user_id,
                             now=now, **fields)
        await tx.record([created(state, caller.actor())])
        await tx.commit()
        url = values["MISP.external_baseurl"] or values["MISP.baseurl"] or request_base
        return {"Server": {"url": url, "uuid": values["MISP.uuid"], "authkey": raw,
                           "Organisation": {"name": host.name, "uuid": host.uuid}}}

    return await uow.transaction(work)
