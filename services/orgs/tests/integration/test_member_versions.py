"""Orgs' projection of users never goes back in time: a replayed creation of a deleted user
does not count them in their organisation again (which would refuse its deletion for good), and
a replayed older move does not move a user back."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import UserCreated, UserDeleted, UserUpdated
from orgs.consumer import handlers
from orgs.settings import OrgsSettings

from ..support import auth, new_user
from .test_merge_saga import add


async def apply(engine: AsyncEngine, settings: OrgsSettings, event: DomainEvent,
                version: int, subject: str) -> None:
    envelope = Envelope(source="/identity", type=event.type, subject=subject,
                        streamversion=version, data=event.model_dump(mode="json"))
    async with engine.begin() as conn:
        await handlers(settings)[event.type](conn, envelope)


async def count(client: httpx.AsyncClient, admin: str, org_id: Any) -> int:
    view = await client.get(f"/organisations/view/{org_id}", headers=auth(admin))
    return int(view.json()["Organisation"]["user_count"])


async def test_a_replayed_creation_does_not_bring_a_deleted_user_back(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine,
        orgs_settings: OrgsSettings) -> None:
    admin = keys["site_admin"]
    org = await add(client, admin)
    user = new_user(int(org["id"]))
    await apply(orgs_engine, orgs_settings, UserCreated(user=user), 1, user.uuid)
    assert await count(client, admin, org["id"]) == 1
    await apply(orgs_engine, orgs_settings, UserDeleted(
        user_id=user.id, uuid=user.uuid, email=user.email, org_id=user.org_id), 2, user.uuid)
    await apply(orgs_engine, orgs_settings, UserCreated(user=user), 1, user.uuid)  # a replay
    assert await count(client, admin, org["id"]) == 0
    deleted = await client.post(f"/admin/organisations/delete/{org['id']}", headers=auth(admin))
    assert deleted.status_code == 200, deleted.text


async def test_a_replayed_older_move_does_not_move_a_user_back(
        client: httpx.AsyncClient, keys: dict[str, str], orgs_engine: AsyncEngine,
        orgs_settings: OrgsSettings) -> None:
    admin = keys["site_admin"]
    first, second = await add(client, admin), await add(client, admin)
    user = new_user(int(first["id"]))
    moved = user.model_copy(update={"org_id": int(second["id"])})
    await apply(orgs_engine, orgs_settings, UserCreated(user=user), 1, user.uuid)
    await apply(orgs_engine, orgs_settings, UserUpdated(user=moved, changes={}), 3, user.uuid)
    await apply(orgs_engine, orgs_settings, UserUpdated(user=user, changes={}), 2, user.uuid)
    assert (await count(client, admin, first["id"]), await count(client, admin, second["id"])) \
        == (0, 1)
