"""`project_principals` on the real PostgreSQL: a batch of principal events ends in the same
projection as applying them one by one (runs of saves folded into one upsert, the last state
of each id winning, a delete in the middle honoured), with one NOTIFY for the batch."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import UserCreated, UserDeleted, UserState, UserUpdated
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform.auth.cache import PRINCIPALS_CHANNEL
from misp_platform.auth.principals import (
    PRINCIPAL_HANDLERS,
    principal_org,
    principal_user,
    project_principals,
)


def env(event: DomainEvent) -> Envelope:
    return Envelope(source="/test", type=event.type, subject="s", actor=Actor.system(),
                    data=event.model_dump(mode="json"))


def user(uid: int, email: str, **kw: Any) -> UserState:
    return UserState(id=uid, uuid=str(uuid.uuid4()), email=email, org_id=1, role_id=3, **kw)


def events() -> list[Envelope]:
    return [
        env(UserCreated(user=user(1, "a@x.test"))),
        env(UserCreated(user=user(2, "b@x.test"))),
        env(UserUpdated(user=user(1, "a2@x.test", disabled=True), changes={})),
        env(OrganisationCreated(organisation=OrganisationState(
            id=9, uuid=str(uuid.uuid4()), name="Nine"))),
        env(UserUpdated(user=user(2, "b2@x.test"), changes={})),
        env(UserDeleted(user_id=1, uuid=str(uuid.uuid4()), email="a2@x.test", org_id=1)),
        env(UserCreated(user=user(3, "c@x.test"))),
        env(UserUpdated(user=user(3, "c2@x.test"), changes={})),
    ]


async def snapshot(conn: AsyncConnection) -> tuple[list[Any], list[Any]]:
    users = (await conn.execute(select(principal_user.c.user_id, principal_user.c.email,
                                       principal_user.c.disabled)
                                .where(principal_user.c.deleted.is_(False))
                                .order_by(principal_user.c.user_id))).all()
    orgs = (await conn.execute(select(principal_org.c.org_id, principal_org.c.name))).all()
    return [tuple(u) for u in users], [tuple(o) for o in orgs]


async def test_a_batch_ends_where_one_by_one_ends(platform_db: str) -> None:
    engine = create_async_engine(platform_db)
    try:
        batch = events()
        async with engine.begin() as conn:
            await project_principals(conn, batch)
            batched = await snapshot(conn)
            await conn.rollback()
        async with engine.begin() as conn:
            for e in batch:
                await PRINCIPAL_HANDLERS[e.type](conn, e)
            one_by_one = await snapshot(conn)
            await conn.rollback()
    finally:
        await engine.dispose()
    assert batched == one_by_one
    assert batched == ([(2, "b2@x.test", False), (3, "c2@x.test", False)], [(9, "Nine")])


async def test_a_batch_notifies_the_caches_once(platform_db: str) -> None:
    import psycopg

    dsn = platform_db.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as listener:
        await listener.execute(f"LISTEN {PRINCIPALS_CHANNEL}")
        engine = create_async_engine(platform_db)
        try:
            async with engine.begin() as conn:
                await project_principals(conn, events())
        finally:
            await engine.dispose()
        got = 0
        async for _ in listener.notifies(timeout=1.0):
            got += 1
    assert got == 1
