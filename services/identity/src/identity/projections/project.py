"""Evolve identity's read models from its own events, in the transaction of the append.

The same functions rebuild the read models from the event store; secrets (password hashes) are
not events and live in `user_credential`, written by the handlers beside the append.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import delete, select, update
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
from misp_contracts.envelope import Envelope
from misp_contracts.events import identity as ev
from misp_contracts.events.orgs import (
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationUpdated,
)
from misp_platform.auth.principals import PRINCIPAL_HANDLERS
from misp_platform.versions import is_newer

Projector = Callable[[AsyncConnection, Envelope], Awaitable[None]]


async def _upsert(conn: AsyncConnection, table: Any, key: str, values: dict[str, Any]) -> None:
    stmt = pg_insert(table).values(**values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[key], set_={k: stmt.excluded[k] for k in values if k != key}))


def _stream(envelope: Envelope) -> dict[str, Any]:
    return {"stream_id": envelope.subject, "version": envelope.streamversion or 0}


async def _user_saved(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.UserCreated if envelope.type == ev.UserCreated.type else ev.UserUpdated
    user = model.model_validate(envelope.data).user
    await _upsert(conn, user_account, "user_id", {
        "user_id": user.id, **_stream(envelope), "email": user.email, "org_id": user.org_id,
        "role_id": user.role_id, "disabled": user.disabled,
        "state": user.model_dump(mode="json")})


async def _user_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.UserDeleted.model_validate(envelope.data)
    await conn.execute(delete(user_account).where(user_account.c.user_id == event.user_id))
    await conn.execute(delete(authkey).where(authkey.c.user_id == event.user_id))
    await conn.execute(delete(user_setting).where(user_setting.c.user_id == event.user_id))


async def _user_logged_in(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.UserLoggedIn.model_validate(envelope.data)
    row = (await conn.execute(select(user_account.c.state).where(
        user_account.c.user_id == event.user_id))).first()
    if row is None:
        return
    state = dict(row.state)
    # MISP: the previous login becomes last_login.
    state["last_login"] = state.get("current_login")
    state["current_login"] = (event.at or envelope.time).isoformat()
    await conn.execute(update(user_account).where(user_account.c.user_id == event.user_id)
                       .values(state=state, version=envelope.streamversion))


async def _stream_only(conn: AsyncConnection, envelope: Envelope) -> None:
    """An event of the user stream that changes no column (password changed or reset)."""
    await conn.execute(update(user_account).where(
        user_account.c.stream_id == envelope.subject).values(version=envelope.streamversion))


async def _role_saved(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.RoleCreated if envelope.type == ev.RoleCreated.type else ev.RoleUpdated
    state = model.model_validate(envelope.data).role
    await _upsert(conn, role, "role_id", {"role_id": state.id, **_stream(envelope),
                                          "name": state.name,
                                          "state": state.model_dump(mode="json")})


async def _role_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.RoleDeleted.model_validate(envelope.data)
    await conn.execute(delete(role).where(role.c.role_id == event.role_id))


async def _default_role_changed(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.DefaultRoleChanged.model_validate(envelope.data)
    await _upsert(conn, admin_setting, "name", {"name": "default_role", "value": event.role_id})


async def _authkey_saved(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.AuthKeyCreated if envelope.type == ev.AuthKeyCreated.type else ev.AuthKeyUpdated
    state = model.model_validate(envelope.data).authkey
    await _upsert(conn, authkey, "authkey_id", {
        "authkey_id": state.id, **_stream(envelope), "user_id": state.user_id,
        "key_hmac": state.key_hmac.lower(), "state": state.model_dump(mode="json")})


async def _authkey_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.AuthKeyDeleted.model_validate(envelope.data)
    await conn.execute(delete(authkey).where(authkey.c.authkey_id == event.authkey_id))


async def _setting_set(conn: AsyncConnection, envelope: Envelope) -> None:
    state = ev.UserSettingSet.model_validate(envelope.data).user_setting
    await _upsert(conn, user_setting, "id", {
        "id": state.id, **_stream(envelope), "user_id": state.user_id, "setting": state.setting,
        "value": state.value, "timestamp": state.timestamp})


async def _setting_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.UserSettingDeleted.model_validate(envelope.data)
    await conn.execute(delete(user_setting).where(user_setting.c.id == event.id))


async def _registration_submitted(conn: AsyncConnection, envelope: Envelope) -> None:
    state = ev.RegistrationSubmitted.model_validate(envelope.data).registration
    await _upsert(conn, registration, "id", {"id": state.id, **_stream(envelope),
                                             "state": state.model_dump(mode="json"),
                                             "deleted": False})


async def _registration_closed(conn: AsyncConnection, envelope: Envelope) -> None:
    registration_id = int(envelope.data["registration_id"])
    await conn.execute(update(registration).where(registration.c.id == registration_id).values(
        deleted=True, version=envelope.streamversion))


PROJECTORS: dict[str, Projector] = {
    ev.UserCreated.type: _user_saved,
    ev.UserUpdated.type: _user_saved,
    ev.UserDeleted.type: _user_deleted,
    ev.UserLoggedIn.type: _user_logged_in,
    ev.UserPasswordChanged.type: _stream_only,
    ev.UserPasswordReset.type: _stream_only,
    ev.RoleCreated.type: _role_saved,
    ev.RoleUpdated.type: _role_saved,
    ev.RoleDeleted.type: _role_deleted,
    ev.DefaultRoleChanged.type: _default_role_changed,
    ev.AuthKeyCreated.type: _authkey_saved,
    ev.AuthKeyUpdated.type: _authkey_saved,
    ev.AuthKeyDeleted.type: _authkey_deleted,
    ev.UserSettingSet.type: _setting_set,
    ev.UserSettingDeleted.type: _setting_deleted,
    ev.RegistrationSubmitted.type: _registration_submitted,
    ev.RegistrationAccepted.type: _registration_closed,
    ev.RegistrationDiscarded.type: _registration_closed,
}


async def project(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """Apply identity's own events to its read models and to its principals projection."""
    for envelope in envelopes:
        projector = PROJECTORS.get(envelope.type)
        if projector is not None:
            await projector(conn, envelope)
        principal = PRINCIPAL_HANDLERS.get(envelope.type)
        if principal is not None:
            await principal(conn, envelope)


# ---- organisations, from orgs' topic -------------------------------------------------------


async def when_organisation_saved_project(conn: AsyncConnection, envelope: Envelope) -> None:
    model = (OrganisationCreated if envelope.type == OrganisationCreated.type
             else OrganisationUpdated)
    state = model.model_validate(envelope.data).organisation
    values = {"org_id": state.id, "uuid": state.uuid, "name": state.name, "local": state.local,
              "deleted": False, "state": state.model_dump(mode="json"),
              "version": envelope.streamversion}
    if model is OrganisationCreated:  # a (re)created organisation is not being merged
        values.update(merging_into=None, merge_id=None)
    await _upsert_newer(conn, values)


async def _upsert_newer(conn: AsyncConnection, values: dict[str, Any]) -> None:
    """Insert or update an organisation row unless it reflects a newer version already."""
    stmt = pg_insert(org).values(**values)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[org.c.org_id], set_={k: stmt.excluded[k] for k in values
                                             if k != "org_id"}, where=is_newer(stmt, org)))


async def when_organisation_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    """A tombstone, also for an organisation identity never saw: a replayed creation (an older
    version) cannot bring it back."""
    event = OrganisationDeleted.model_validate(envelope.data)
    stmt = pg_insert(org).values(org_id=event.org_id, uuid=event.uuid, name=event.name,
                                 local=True, deleted=True,
                                 state={"id": event.org_id, "uuid": event.uuid,
                                        "name": event.name},
                                 version=envelope.streamversion)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[org.c.org_id],
        set_={"deleted": True, "version": stmt.excluded.version}, where=is_newer(stmt, org)))
