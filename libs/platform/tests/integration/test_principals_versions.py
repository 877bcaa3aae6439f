"""The principals projection never goes back in time: every row keeps the stream version it
reflects, an older event never overwrites a newer row, and a delete leaves a tombstone, so a
replayed creation cannot bring a deleted key or user back (one by one or in a batch)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import (
    AuthKeyCreated,
    AuthKeyDeleted,
    AuthKeyState,
    RoleCreated,
    RoleState,
    SessionEnded,
    SessionStarted,
    UserCreated,
    UserDeleted,
    UserState,
    UserUpdated,
)
from misp_platform.auth import authkey_hmac, generate_authkey
from misp_platform.auth.principals import (
    PRINCIPAL_HANDLERS,
    lookup_authkeys,
    lookup_sessions,
    principal_session,
    principal_user,
    project_principals,
)
from misp_platform.auth.sessions import session_hmac

PEPPER = "test-pepper"
Apply = Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[None]]


async def one_by_one(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    for envelope in envelopes:
        await PRINCIPAL_HANDLERS[envelope.type](conn, envelope)


async def in_one_batch(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    await project_principals(conn, envelopes)


async def each_its_own_batch(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    for envelope in envelopes:
        await project_principals(conn, [envelope])


WAYS = pytest.mark.parametrize("apply", [one_by_one, in_one_batch, each_its_own_batch])


def env(event: DomainEvent, version: int) -> Envelope:
    return Envelope(source="/identity", type=event.type, subject=str(uuid.uuid4()),
                    streamversion=version, actor=Actor.system(),
                    data=event.model_dump(mode="json"))


def user(uid: int, email: str, **kw: object) -> UserState:
    return UserState(id=uid, uuid=f"00000000-0000-4000-8000-{uid:012d}", email=email, org_id=1,
                     role_id=uid, **kw)  # type: ignore[arg-type]


async def seed_user_with_role(engine: AsyncEngine, uid: int) -> None:
    async with engine.begin() as conn:
        await one_by_one(conn, [
            env(RoleCreated(role=RoleState(id=uid, name=f"r{uid}", perm_auth=True)), 1),
            env(UserCreated(user=user(uid, f"u{uid}@x.test")), 1)])


async def apply_in_own_transactions(engine: AsyncEngine, apply: Apply,
                                    envelopes: Sequence[Envelope]) -> None:
    for envelope in envelopes:
        async with engine.begin() as conn:
            await apply(conn, [envelope])


@WAYS
async def test_a_replayed_key_creation_after_its_deletion_leaves_the_key_refused(
        engine: AsyncEngine, apply: Apply) -> None:
    await seed_user_with_role(engine, 7)
    key = generate_authkey()
    digest = authkey_hmac(PEPPER, key)
    state = AuthKeyState(id=70, uuid=str(uuid.uuid4()), user_id=7, key_hmac=digest,
                         authkey_start=key[:4], authkey_end=key[-4:])
    created = env(AuthKeyCreated(authkey=state), 1)
    deleted = env(AuthKeyDeleted(authkey_id=70, uuid=state.uuid, user_id=7, key_hmac=digest,
                                 authkey_start=key[:4], authkey_end=key[-4:]), 2)
    async with engine.begin() as conn:
        await apply(conn, [created])
        assert len(await lookup_authkeys(conn, [digest])) == 1  # the key worked
    async with engine.begin() as conn:
        await apply(conn, [deleted])
    # A DLQ replay or a redelivery of the creation, after the deletion:
    async with engine.begin() as conn:
        await apply(conn, [created])
        assert await lookup_authkeys(conn, [digest]) == []


@WAYS
async def test_a_deletion_that_arrives_before_the_creation_still_wins(
        engine: AsyncEngine, apply: Apply) -> None:
    await seed_user_with_role(engine, 8)
    key = generate_authkey()
    digest = authkey_hmac(PEPPER, key)
    state = AuthKeyState(id=80, uuid=str(uuid.uuid4()), user_id=8, key_hmac=digest,
                         authkey_start=key[:4], authkey_end=key[-4:])
    async with engine.begin() as conn:
        await apply(conn, [env(AuthKeyDeleted(authkey_id=80, uuid=state.uuid, user_id=8,
                                              key_hmac=digest, authkey_start=key[:4],
                                              authkey_end=key[-4:]), 2),
                           env(AuthKeyCreated(authkey=state), 1)])
        assert await lookup_authkeys(conn, [digest]) == []
        # The same creation with no deletion ahead of it would have worked: the user is fine.
        other = generate_authkey()
        await apply(conn, [env(AuthKeyCreated(authkey=state.model_copy(update={
            "id": 81, "uuid": str(uuid.uuid4()), "key_hmac": authkey_hmac(PEPPER, other),
            "authkey_start": other[:4], "authkey_end": other[-4:]})), 1)])
        assert len(await lookup_authkeys(conn, [authkey_hmac(PEPPER, other)])) == 1


@WAYS
async def test_user_updates_delivered_out_of_order_end_in_the_newest_state(
        engine: AsyncEngine, apply: Apply) -> None:
    versions = [env(UserCreated(user=user(9, "v1@x.test")), 1)] + [
        env(UserUpdated(user=user(9, f"v{v}@x.test", disabled=v % 2 == 0), changes={}), v)
        for v in range(2, 7)]
    shuffled = [versions[0], versions[4], versions[1], versions[5], versions[3], versions[2]]
    await apply_in_own_transactions(engine, apply, shuffled)
    async with engine.connect() as conn:
        row = (await conn.execute(select(principal_user).where(
            principal_user.c.user_id == 9))).one()
    assert (row.email, row.disabled, row.version) == ("v6@x.test", True, 6)


@WAYS
async def test_a_replayed_user_creation_cannot_bring_a_deleted_user_back(
        engine: AsyncEngine, apply: Apply) -> None:
    await seed_user_with_role(engine, 11)
    key = generate_authkey()
    digest = authkey_hmac(PEPPER, key)
    created = env(UserCreated(user=user(11, "u11@x.test")), 1)
    async with engine.begin() as conn:
        await one_by_one(conn, [env(AuthKeyCreated(authkey=AuthKeyState(
            id=110, uuid=str(uuid.uuid4()), user_id=11, key_hmac=digest,
            authkey_start=key[:4], authkey_end=key[-4:])), 1)])
        assert len(await lookup_authkeys(conn, [digest])) == 1
    await apply_in_own_transactions(engine, apply, [
        env(UserDeleted(user_id=11, uuid=user(11, "").uuid, email="u11@x.test", org_id=1), 3),
        created])
    async with engine.connect() as conn:
        assert await lookup_authkeys(conn, [digest]) == []
        row = (await conn.execute(select(principal_user).where(
            principal_user.c.user_id == 11))).one()
    assert row.deleted and row.version == 3


def session_events(uid: int) -> tuple[str, Envelope, Envelope]:
    """A session's start and end as identity publishes them (no stream version: outbox only)."""
    digest = session_hmac(PEPPER, secrets.token_urlsafe(32))
    started = Envelope(source="/identity", type=SessionStarted.type, actor=Actor.system(),
                       data=SessionStarted(session_hmac=digest, user_id=uid,
                                           expires_at=datetime.now(UTC) + timedelta(hours=8))
                       .model_dump(mode="json"))
    ended = Envelope(source="/identity", type=SessionEnded.type, actor=Actor.system(),
                     data=SessionEnded(session_hmac=digest, user_id=uid, reason="logout")
                     .model_dump(mode="json"))
    return digest, started, ended


@WAYS
async def test_a_replayed_session_start_after_its_end_leaves_the_session_refused(
        engine: AsyncEngine, apply: Apply) -> None:
    await seed_user_with_role(engine, 12)
    digest, started, ended = session_events(12)
    async with engine.begin() as conn:
        await apply(conn, [started])
        assert len(await lookup_sessions(conn, [digest])) == 1
    await apply_in_own_transactions(engine, apply, [ended, started, ended])
    async with engine.connect() as conn:
        assert await lookup_sessions(conn, [digest]) == []
        row = (await conn.execute(select(principal_session).where(
            principal_session.c.session_hmac == digest))).one()
    assert row.deleted and row.version == 2


@WAYS
async def test_a_session_end_that_arrives_before_its_start_still_wins(
        engine: AsyncEngine, apply: Apply) -> None:
    await seed_user_with_role(engine, 13)
    digest, started, ended = session_events(13)
    async with engine.begin() as conn:
        await apply(conn, [ended, started])
        assert await lookup_sessions(conn, [digest]) == []


async def test_sessions_long_expired_are_dropped_when_sessions_change(
        engine: AsyncEngine) -> None:
    await seed_user_with_role(engine, 14)
    old = session_hmac(PEPPER, secrets.token_urlsafe(32))
    async with engine.begin() as conn:
        await conn.execute(principal_session.insert().values(
            session_hmac=old, user_id=14, expires_at=func.now() - timedelta(days=2), version=1))
        await one_by_one(conn, [session_events(14)[1]])
        assert (await conn.execute(select(principal_session).where(
            principal_session.c.session_hmac == old))).first() is None
