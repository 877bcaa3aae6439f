"""The mailer's projection of users never goes back in time: a replayed creation of a deleted
user does not make them a recipient again, and an older update does not undo a newer one."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters import store
from mailer.projections.users import when_user_deleted_project, when_user_saved_project
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import UserCreated, UserDeleted, UserState, UserUpdated


async def apply(engine: AsyncEngine, event: DomainEvent, version: int) -> None:
    envelope = Envelope(source="/identity", type=event.type, subject="s", streamversion=version,
                        actor=Actor.system(), data=event.model_dump(mode="json"))
    handler = when_user_deleted_project if isinstance(event, UserDeleted) \
        else when_user_saved_project
    async with engine.begin() as conn:
        await handler(conn, envelope)


def user(email: str) -> UserState:
    return UserState(id=4242, uuid=str(uuid.uuid4()), email=email, org_id=7, role_id=3)


async def emails(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return [r.email for r in await store.users(conn, org_ids=[7])]


async def test_a_replayed_creation_does_not_make_a_deleted_user_a_recipient_again(
        mailer_engine: AsyncEngine) -> None:
    created = UserCreated(user=user("gone@example.test"))
    await apply(mailer_engine, created, 1)
    assert await emails(mailer_engine) == ["gone@example.test"]
    await apply(mailer_engine, UserDeleted(user_id=4242, uuid=created.user.uuid,
                                           email="gone@example.test", org_id=7), 2)
    await apply(mailer_engine, created, 1)  # a DLQ replay, or a redelivery
    assert await emails(mailer_engine) == []
    async with mailer_engine.connect() as conn:
        assert await store.user(conn, 4242) is None


async def test_an_older_update_does_not_undo_a_newer_one(mailer_engine: AsyncEngine) -> None:
    await apply(mailer_engine, UserCreated(user=user("v1@example.test")), 1)
    await apply(mailer_engine, UserUpdated(user=user("v3@example.test"), changes={}), 3)
    await apply(mailer_engine, UserUpdated(user=user("v2@example.test"), changes={}), 2)
    assert await emails(mailer_engine) == ["v3@example.test"]
