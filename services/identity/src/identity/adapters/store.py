"""The unit of work: one transaction holds the events, identity's read models and the outbox.

`record` appends through the platform's event store and evolves the read models (and identity's
own principals projection) in the same transaction; `write` runs a command's transaction
through the platform's `in_transaction` (once more after a lost race, then 409).

`SqlUnitOfWork` and `SqlStore` are these writes (and identity.adapters.queries' reads) as the
handlers' ports see them (identity.adapters.ports.UnitOfWork and IdentityStore): a
transaction is kept only when its work committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.ports import IdentityStore, UnitOfWork
from identity.adapters.queries import SqlQueries, login_attempts
from identity.adapters.tables import (
    login_attempt,
    login_session,
    org,
    password_reset_link,
    user_credential,
)
from identity.domain.errors import InvalidFieldsError
from identity.domain.roles import NAME_TAKEN
from identity.domain.users import EMAIL_TAKEN
from identity.projections.project import project
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import SessionEnded, SessionStarted
from misp_contracts.events.orgs import OrganisationRef
from misp_platform import outbox
from misp_platform.auth.principals import PRINCIPAL_HANDLERS
from misp_platform.eventstore import Append, ConcurrencyError, EventStore
from misp_platform.misp.errors import Conflict
from misp_platform.transaction import in_transaction

SERVICE = "identity"
EVENTS = EventStore(SERVICE)

T = TypeVar("T")

# Two requests creating the same row (a user's setting of one name): the loser decides again.
_RACED_INDEXES = ("ux_user_setting_user_setting",)

# Unique indexes whose violation is a user's mistake, not a bug: index -> (field, message).
_UNIQUE_VIOLATIONS = {
    "ux_user_account_email": ("email", EMAIL_TAKEN),
    "ux_role_name": ("name", NAME_TAKEN),
}


async def record(conn: AsyncConnection, appends: Sequence[Append]) -> list[Envelope]:
    """Append (events + outbox rows) and evolve the read models, in the caller's transaction."""
    envelopes = await EVENTS.append_many(conn, appends)
    await project(conn, envelopes)
    return envelopes


async def publish_only(conn: AsyncConnection, event: DomainEvent, *, actor: Actor,
                       key: str | None = None) -> Envelope:
    """An event that changes no aggregate (a failed login, a logout): outbox only."""
    envelope = Envelope(source=f"/{SERVICE}", type=event.type, subject=key, actor=actor,
                        correlationid=actor.request_id, data=event.model_dump(mode="json"))
    await outbox.enqueue(conn, envelope, topic=event.topic, key=key)
    return envelope


async def write(engine: AsyncEngine, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run `work` in a transaction, again once after a lost race (a raced index included),
    then 409; a taken email or role name is the caller's mistake."""
    try:
        return await in_transaction(engine, work, raced=_raced)
    except ConcurrencyError:
        raise Conflict() from None
    except IntegrityError as exc:
        text = str(exc.orig)
        for index, (field, message) in _UNIQUE_VIOLATIONS.items():
            if index in text:
                raise InvalidFieldsError({field: [message]}) from None
        raise


def _raced(exc: IntegrityError) -> bool:
    """Another request created the same row first: deciding again is enough."""
    return any(index in str(exc.orig) for index in _RACED_INDEXES)


# ---- writes beside the events ------------------------------------------------------------------


async def next_id(conn: AsyncConnection, sequence: str) -> int:
    """The next integer id of an aggregate (its sequence in identity's database)."""
    return int((await conn.execute(text(f"SELECT nextval('{sequence}')"))).scalar_one())


async def store_password(conn: AsyncConnection, user_id: int, password_hash: str | None) -> None:
    """A password hash is a secret, not an event: it lives in `user_credential` only."""
    stmt = pg_insert(user_credential).values(user_id=user_id, password_hash=password_hash)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[user_credential.c.user_id],
        set_={"password_hash": stmt.excluded.password_hash, "changed_at": datetime.now(UTC)}))


async def forget_password(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(delete(user_credential).where(user_credential.c.user_id == user_id))


async def end_sessions(conn: AsyncConnection, user_id: int, *, reason: str, actor: Actor,
                       stream_id: str | None) -> int:
    """End every session of the user, each published as ended (`reason`) for the principals
    projections; how many there were."""
    ended = (await conn.execute(delete(login_session).where(login_session.c.user_id == user_id)
                                .returning(login_session.c.session_hmac))).scalars().all()
    for digest in ended:
        await publish_session(conn, SessionEnded(session_hmac=digest, user_id=user_id,
                                                 reason=reason), actor=actor, key=stream_id)
    return len(ended)


# ---- password reset links (handlers/password_reset.py) ----------------------------------------


async def keep_reset_link(conn: AsyncConnection, *, user_id: int, credential_id: str,
                          token_hash: str, issued_at: datetime, expires_at: datetime) -> bool:
    """The user's one live link becomes this one, unless the row holds a link issued at the same
    time or later (this one again, or a newer one): False then."""
    stmt = pg_insert(password_reset_link).values(
        user_id=user_id, credential_id=credential_id, token_hash=token_hash,
        issued_at=issued_at, expires_at=expires_at, used_at=None)
    result = await conn.execute(stmt.on_conflict_do_update(
        index_elements=[password_reset_link.c.user_id],
        set_={"credential_id": stmt.excluded.credential_id,
              "token_hash": stmt.excluded.token_hash, "issued_at": stmt.excluded.issued_at,
              "expires_at": stmt.excluded.expires_at, "used_at": None},
        where=password_reset_link.c.issued_at < stmt.excluded.issued_at))
    return bool(result.rowcount)


async def reset_link(conn: AsyncConnection, token_hash: str, *,
                     lock: bool = False) -> tuple[int, datetime, datetime | None] | None:
    """`(user_id, expires_at, used_at)` of the link whose token hashes to `token_hash`, locked
    for the transaction with `lock`; None when identity holds no such link."""
    stmt = select(password_reset_link.c.user_id, password_reset_link.c.expires_at,
                  password_reset_link.c.used_at).where(
        password_reset_link.c.token_hash == token_hash)
    row = (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
    return None if row is None else (int(row.user_id), row.expires_at, row.used_at)


async def use_reset_link(conn: AsyncConnection, user_id: int, now: datetime) -> None:
    await conn.execute(update(password_reset_link).where(
        password_reset_link.c.user_id == user_id).values(used_at=now))


# ---- login sessions and counted attempts (handlers/login.py, password_reset.py, jobs.py) ------


async def lock_login_pair(conn: AsyncConnection, ip: str, username: str) -> None:
    """Hold (ip, username)'s counter until the transaction ends: concurrent attempts queue."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:pair, 0))"),
                       {"pair": f"login\n{ip}\n{username}"})


async def reserve_login_attempt(conn: AsyncConnection, ip: str, username: str, *, amount: int,
                                expire: int) -> tuple[int | None, int]:
    """`(attempt id, attempts counted before it)`; the id is None when the pair is blocked."""
    await lock_login_pair(conn, ip, username)
    now = datetime.now(UTC)
    counted = await login_attempts(conn, ip=ip, username=username, now=now)
    if counted >= amount:
        return None, counted
    attempt_id = (await conn.execute(insert(login_attempt).values(
        ip=ip, username=username, expires_at=now + timedelta(seconds=expire))
        .returning(login_attempt.c.id))).scalar_one()
    return int(attempt_id), counted


async def count_attempt(conn: AsyncConnection, ip: str, username: str, *, amount: int,
                        expire: int) -> bool:
    """Count an attempt against (ip, username), its expired ones forgotten first; False once
    the pair reached the limit (nothing counted then)."""
    await lock_login_pair(conn, ip, username)
    now = datetime.now(UTC)
    await conn.execute(delete(login_attempt).where(login_attempt.c.username == username,
                                                   login_attempt.c.expires_at <= now))
    counted = await login_attempts(conn, ip=ip, username=username, now=now)
    if counted >= amount:
        return False
    await conn.execute(insert(login_attempt).values(
        ip=ip, username=username, expires_at=now + timedelta(seconds=expire)))
    return True


async def release_login_attempt(conn: AsyncConnection, attempt_id: int | None) -> None:
    await conn.execute(delete(login_attempt).where(login_attempt.c.id == attempt_id))


async def forget_login_attempts(conn: AsyncConnection, username: str, ip: str | None) -> int:
    """Forget the counted attempts of (ip, username), or of the username from every IP."""
    stmt = delete(login_attempt).where(login_attempt.c.username == username)
    if ip:
        stmt = stmt.where(login_attempt.c.ip == ip)
    return int((await conn.execute(stmt)).rowcount or 0)


async def publish_session(conn: AsyncConnection, event: SessionStarted | SessionEnded, *,
                          actor: Actor, key: str | None) -> None:
    """Publish a session's start or end and apply it to identity's own principals projection
    in the same transaction (its consumer skips nothing: applying it again changes nothing)."""
    envelope = await publish_only(conn, event, actor=actor, key=key)
    await PRINCIPAL_HANDLERS[event.type](conn, envelope)


async def start_session(conn: AsyncConnection, *, session_hmac: str, user_id: int,
                        expires_at: datetime, ip: str, user_agent: str, actor: Actor,
                        stream_id: str) -> None:
    await conn.execute(insert(login_session).values(
        session_hmac=session_hmac, user_id=user_id, expires_at=expires_at, ip=ip,
        user_agent=user_agent))
    await publish_session(conn, SessionStarted(session_hmac=session_hmac, user_id=user_id,
                                               expires_at=expires_at), actor=actor, key=stream_id)


async def end_session(conn: AsyncConnection, session_hmac: str) -> int | None:
    """End the session of this HMAC (unpublished: the caller publishes it with the user's
    stream); its user (None: no such session)."""
    user_id = (await conn.execute(delete(login_session).where(
        login_session.c.session_hmac == session_hmac)
        .returning(login_session.c.user_id))).scalar()
    return None if user_id is None else int(user_id)


async def purge_expired_sessions(conn: AsyncConnection, now: datetime) -> int:
    """Delete the sessions expired by `now`; how many."""
    result = await conn.execute(delete(login_session).where(login_session.c.expires_at <= now))
    return int(result.rowcount or 0)


async def session_counts(conn: AsyncConnection, now: datetime) -> tuple[int, int]:
    """(active, expired) login sessions at `now`: the expired ones wait for the purge job."""
    expired = login_session.c.expires_at <= now
    row = (await conn.execute(select(
        func.count().filter(~expired), func.count().filter(expired)))).one()
    return int(row[0]), int(row[1])


# ---- the organisation merge (handlers/merge.py) ----------------------------------------------


async def close_organisation(conn: AsyncConnection, source: OrganisationRef, target_id: int,
                             merge_id: str | None) -> None:
    """Mark the source as merging into the target. The row update waits for any transaction that
    share-locked the row to add a user (and makes later ones see the mark): the new user is then
    either visible to the move that follows or refused."""
    mark = {"merging_into": target_id, **({"merge_id": merge_id} if merge_id else {})}
    closed = await conn.execute(update(org).where(org.c.org_id == source.id).values(**mark))
    if closed.rowcount:
        return
    # An organisation identity never saw (its creation is older than this projection).
    stmt = pg_insert(org).values(
        org_id=source.id, uuid=source.uuid, name=source.name, local=True, deleted=False,
        state={"id": source.id, "uuid": source.uuid, "name": source.name},
        merging_into=target_id, merge_id=merge_id)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[org.c.org_id], set_=mark))


# ---- the handlers' unit of work ----------------------------------------------------------------


class SqlStore(SqlQueries, IdentityStore):
    """The reads and writes of one transaction."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__(conn)
        self.committed = False

    async def next_user_id(self) -> int:
        return await next_id(self.conn, "user_id_seq")

    async def next_role_id(self) -> int:
        return await next_id(self.conn, "role_id_seq")

    async def next_key_id(self) -> int:
        return await next_id(self.conn, "authkey_id_seq")

    async def next_registration_id(self) -> int:
        return await next_id(self.conn, "registration_id_seq")

    async def next_setting_id(self) -> int:
        return await next_id(self.conn, "user_setting_id_seq")

    async def record(self, appends: Sequence[Append]) -> None:
        await record(self.conn, appends)

    async def set_password(self, user_id: int, password_hash: str | None) -> None:
        await store_password(self.conn, user_id, password_hash)

    async def forget_password(self, user_id: int) -> None:
        await forget_password(self.conn, user_id)

    async def end_sessions(self, user_id: int, *, reason: str, actor: Actor,
                           stream_id: str | None) -> int:
        return await end_sessions(self.conn, user_id, reason=reason, actor=actor,
                                  stream_id=stream_id)

    async def commit(self) -> None:
        self.committed = True


class _NotCommitted(Exception):
    """Raised inside the transaction to roll it back; carries the work's answer out."""

    def __init__(self, answer: Any) -> None:
        super().__init__("the work did not commit")
        self.answer = answer


class SqlUnitOfWork(UnitOfWork):
    """The handlers' unit of work on identity's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def reads(self) -> AsyncIterator[SqlQueries]:
        async with self.engine.connect() as conn:  # closed without commit: rolled back
            yield SqlQueries(conn)

    async def transaction(self, work: Callable[[IdentityStore], Awaitable[T]]) -> T:
        async def attempt(conn: AsyncConnection) -> T:
            store = SqlStore(conn)
            answer = await work(store)
            if not store.committed:
                raise _NotCommitted(answer)
            return answer

        try:
            return await write(self.engine, attempt)
        except _NotCommitted as rolled_back:
            answer: T = rolled_back.answer
            return answer
