"""Evolve identity's read models from its own events, in the transaction of the append.

The same functions rebuild the read models from the event store; secrets (password hashes) are
not events and live in `user_credential`, written by the handlers beside the append. Here each
event is read and decided on; the SQL is identity.adapters.projection_store's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters import projection_store as views
from misp_contracts.envelope import Envelope
from misp_contracts.events import identity as ev
from misp_contracts.events.orgs import (
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationUpdated,
)
from misp_platform.auth.principals import PRINCIPAL_HANDLERS

Projector = Callable[[AsyncConnection, Envelope], Awaitable[None]]


def _stream(envelope: Envelope) -> dict[str, Any]:
    return {"stream_id": envelope.subject, "version": envelope.streamversion or 0}


async def _user_saved(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.UserCreated if envelope.type == ev.UserCreated.type else ev.UserUpdated
    await views.save_user_view(conn, model.model_validate(envelope.data).user,
                               **_stream(envelope))


async def _user_totp_changed(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.UserTotpSet if envelope.type == ev.UserTotpSet.type else ev.UserTotpRemoved
    await views.save_user_view(conn, model.model_validate(envelope.data).user,
                               **_stream(envelope))


async def _user_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    await views.delete_user_views(conn, ev.UserDeleted.model_validate(envelope.data).user_id)


async def _user_logged_in(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.UserLoggedIn.model_validate(envelope.data)
    state = await views.user_view_state(conn, event.user_id)
    if state is None:
        return
    # MISP: the previous login becomes last_login.
    state["last_login"] = state.get("current_login")
    state["current_login"] = (event.at or envelope.time).isoformat()
    await views.save_user_view_state(conn, event.user_id, state, envelope.streamversion)


async def _stream_only(conn: AsyncConnection, envelope: Envelope) -> None:
    """An event of the user stream that changes no column (password changed or reset)."""
    await views.set_user_view_version(conn, envelope.subject, envelope.streamversion)


async def _role_saved(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.RoleCreated if envelope.type == ev.RoleCreated.type else ev.RoleUpdated
    await views.save_role_view(conn, model.model_validate(envelope.data).role,
                               **_stream(envelope))


async def _role_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    await views.delete_role_view(conn, ev.RoleDeleted.model_validate(envelope.data).role_id)


async def _default_role_changed(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.DefaultRoleChanged.model_validate(envelope.data)
    await views.save_default_role(conn, event.role_id)


async def _authkey_saved(conn: AsyncConnection, envelope: Envelope) -> None:
    model = ev.AuthKeyCreated if envelope.type == ev.AuthKeyCreated.type else ev.AuthKeyUpdated
    await views.save_authkey_view(conn, model.model_validate(envelope.data).authkey,
                                  **_stream(envelope))


async def _authkey_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.AuthKeyDeleted.model_validate(envelope.data)
    await views.delete_authkey_view(conn, event.authkey_id)


async def _setting_set(conn: AsyncConnection, envelope: Envelope) -> None:
    state = ev.UserSettingSet.model_validate(envelope.data).user_setting
    await views.save_user_setting_view(conn, state, **_stream(envelope))


async def _setting_deleted(conn: AsyncConnection, envelope: Envelope) -> None:
    event = ev.UserSettingDeleted.model_validate(envelope.data)
    await views.delete_user_setting_view(conn, event.id)


async def _registration_submitted(conn: AsyncConnection, envelope: Envelope) -> None:
    state = ev.RegistrationSubmitted.model_validate(envelope.data).registration
    await views.save_registration_view(conn, state, **_stream(envelope))


async def _registration_closed(conn: AsyncConnection, envelope: Envelope) -> None:
    await views.close_registration_view(conn, int(envelope.data["registration_id"]),
                                        envelope.streamversion)


PROJECTORS: dict[str, Projector] = {
    ev.UserCreated.type: _user_saved,
    ev.UserUpdated.type: _user_saved,
    ev.UserDeleted.type: _user_deleted,
    ev.UserTotpSet.type: _user_totp_changed,
    ev.UserTotpRemoved.type: _user_totp_changed,
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
    """Save the organisation unless identity holds a newer version of it."""
    model = (OrganisationCreated if envelope.type == OrganisationCreated.type
             else OrganisationUpdated)
    state = model.model_validate(envelope.data).organisation
    # A (re)created organisation is not being merged.
    await views.save_organisation_view(conn, state, version=envelope.streamversion,
                                       clear_merge=model is OrganisationCreated)


async def when_organisation_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    """A tombstone, also for an organisation identity never saw: a replayed creation (an older
    version) cannot bring it back."""
    event = OrganisationDeleted.model_validate(envelope.data)
    await views.tombstone_organisation_view(conn, org_id=event.org_id, uuid=event.uuid,
                                            name=event.name, version=envelope.streamversion)
