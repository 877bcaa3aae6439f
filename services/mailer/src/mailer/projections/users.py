"""The mailer's projection of users (address, org, alert flags, GnuPG key) from identity's
events; server settings are the platform's read model (misp_platform.server_settings)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from mailer.adapters import store
from misp_contracts.envelope import Envelope
from misp_contracts.events.identity import UserCreated, UserDeleted, UserUpdated


async def when_user_saved_project(conn: AsyncConnection, envelope: Envelope) -> None:
    model = UserCreated if envelope.type == UserCreated.type else UserUpdated
    event = model.model_validate(envelope.data)
    await store.save_user(conn, event.user, envelope.streamversion)


async def when_user_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    event = UserDeleted.model_validate(envelope.data)
    await store.delete_user(conn, event.user_id, email=event.email, org_id=event.org_id,
                            version=envelope.streamversion)
