"""The principals projection: who an authkey or a browser session belongs to, in each service's
own database.

Fed by identity's user, role, authkey and session events and orgs' organisation events
(ARCHITECTURE §4),
through `PRINCIPAL_HANDLERS`; read by the auth dependency with one indexed query per request.
The tables live in `misp_platform.db.metadata`, so importing this module is enough for a service's
first migration to create them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from misp_contracts.envelope import Envelope
from misp_contracts.events.identity import (
    AUTHKEY_TOPIC,
    ROLE_TOPIC,
    SESSION_TOPIC,
    USER_TOPIC,
    AuthKeyCreated,
    AuthKeyDeleted,
    AuthKeyUpdated,
    RoleCreated,
    RoleDeleted,
    RoleState,
    RoleUpdated,
    SessionEnded,
    SessionStarted,
    UserCreated,
    UserDeleted,
    UserState,
    UserUpdated,
)
from misp_contracts.events.orgs import (
    ORGANISATION_TOPIC,
    OrganisationCreated,
    OrganisationDeleted,
    OrganisationState,
    OrganisationUpdated,
)
from misp_platform.auth.cache import PRINCIPALS_CHANNEL, clear_local_caches
from misp_platform.db import metadata
from misp_platform.versions import is_newer

Handler = Callable[[AsyncConnection, Envelope], Awaitable[None]]

def _versioned() -> tuple[Column[Any], ...]:
    """What makes a projected row never go back in time: the stream version it reflects (null
    for an event published without one) and a tombstone flag, so a delete is a row too."""
    return (
        Column("version", Integer, nullable=True),
        Column("deleted", Boolean, nullable=False, server_default="false"),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


# No foreign keys: the four feeds are separate topics, so an authkey may arrive before its user.
principal_user = Table(
    "principal_user",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    Column("uuid", String(36), nullable=False),
    Column("email", String(255), nullable=False),
    Column("org_id", BigInteger, nullable=False),
    Column("role_id", BigInteger, nullable=False),
    Column("disabled", Boolean, nullable=False, server_default="false"),
    Column("change_pw", Boolean, nullable=False, server_default="false"),
    Column("expiration", DateTime(timezone=True), nullable=True),
    *_versioned(),
)

principal_role = Table(
    "principal_role",
    metadata,
    Column("role_id", BigInteger, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("perm_site_admin", Boolean, nullable=False, server_default="false"),
    Column("perm_admin", Boolean, nullable=False, server_default="false"),
    Column("perm_auth", Boolean, nullable=False, server_default="false"),
    Column("perm_audit", Boolean, nullable=False, server_default="false"),
    Column("perm_sync", Boolean, nullable=False, server_default="false"),
    Column("permission", SmallInteger, nullable=False, server_default="0"),
    Column("state", JSONB, nullable=False),  # the whole RoleState, every perm_* flag
    *_versioned(),
)

principal_authkey = Table(
    "principal_authkey",
    metadata,
    Column("authkey_id", BigInteger, primary_key=True, autoincrement=False),
    Column("uuid", String(36), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("key_hmac", String(64), nullable=False),
    Column("authkey_start", String(4), nullable=False),
    Column("authkey_end", String(4), nullable=False),
    Column("expiration", BigInteger, nullable=False, server_default="0"),  # unix, 0 = never
    Column("allowed_ips", JSONB, nullable=True),  # CIDR list, null = anywhere
    Column("read_only", Boolean, nullable=False, server_default="false"),
    *_versioned(),
    Index("ix_principal_authkey_key_hmac", "key_hmac", unique=True),
    Index("ix_principal_authkey_user_id", "user_id"),
)

principal_org = Table(
    "principal_org",
    metadata,
    Column("org_id", BigInteger, primary_key=True, autoincrement=False),
    Column("uuid", String(36), nullable=False),
    Column("name", String(255), nullable=False),
    Column("local", Boolean, nullable=False, server_default="true"),
    *_versioned(),
)

# A browser session (identity's login), by the peppered HMAC of its token. Its stream has two
# events, so its version is theirs: 1 started, 2 ended; a redelivered or replayed start never
# brings an ended session back.
principal_session = Table(
    "principal_session",
    metadata,
    Column("session_hmac", String(64), primary_key=True),
    Column("user_id", BigInteger, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    *_versioned(),
    Index("ix_principal_session_expires_at", "expires_at"),
)
SESSION_STARTED_VERSION = 1
SESSION_ENDED_VERSION = 2
# Rows this long past their expiry are dropped: an expired session authenticates nobody, so a
# start replayed after its row is gone stays refused.
SESSION_ROWS_KEPT = timedelta(days=1)

PRINCIPAL_TABLES = (principal_user, principal_role, principal_authkey, principal_org,
                    principal_session)
# What a service's consumer subscribes to for this projection.
PRINCIPAL_TOPICS: tuple[str, ...] = (USER_TOPIC, ROLE_TOPIC, AUTHKEY_TOPIC, ORGANISATION_TOPIC,
                                     SESSION_TOPIC)


async def _upsert(conn: AsyncConnection, table: Table, key: str,
                  rows: Sequence[dict[str, Any]]) -> None:
    """Insert or update `rows` (one statement; the same columns in each, distinct keys), unless
    the row already reflects a newer version of its stream (an older event never wins)."""
    stmt = pg_insert(table).values(list(rows))
    changed: dict[str, Any] = {name: stmt.excluded[name] for name in rows[0] if name != key}
    changed["updated_at"] = func.now()
    await conn.execute(stmt.on_conflict_do_update(index_elements=[key], set_=changed,
                                                  where=is_newer(stmt, table)))


def _latest(rows: Sequence[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """One row per id: the one of the highest version (the last one among unversioned)."""
    latest: dict[Any, dict[str, Any]] = {}
    for row in rows:
        held = latest.get(row[key])
        if held is None or held["version"] is None or row["version"] is None \
                or row["version"] >= held["version"]:
            latest[row[key]] = row
    return list(latest.values())


def user_row(user: UserState) -> dict[str, Any]:
    return {"user_id": user.id, "uuid": user.uuid, "email": user.email, "org_id": user.org_id,
            "role_id": user.role_id, "disabled": user.disabled, "change_pw": user.change_pw,
            "expiration": user.expiration}


def role_row(role: RoleState) -> dict[str, Any]:
    return {"role_id": role.id, "name": role.name, "perm_site_admin": role.perm_site_admin,
            "perm_admin": role.perm_admin, "perm_auth": role.perm_auth,
            "perm_audit": role.perm_audit, "perm_sync": role.perm_sync,
            "permission": role.permission, "state": role.model_dump(mode="json")}


def org_row(org: OrganisationState, *, deleted: bool = False) -> dict[str, Any]:
    return {"org_id": org.id, "uuid": org.uuid, "name": org.name, "local": org.local,
            "deleted": deleted}


def _user_values(envelope: Envelope) -> dict[str, Any]:
    event = (UserCreated if envelope.type == UserCreated.type else UserUpdated).model_validate(
        envelope.data)
    return {**user_row(event.user), "version": envelope.streamversion, "deleted": False}



async def when_user_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    """A tombstone (so an older creation replayed later cannot bring the user back), and the
    user's keys marked deleted with it."""
    event = UserDeleted.model_validate(envelope.data)
    await _upsert(conn, principal_user, "user_id", [{
        "user_id": event.user_id, "uuid": "", "email": "", "org_id": 0, "role_id": 0,
        "version": envelope.streamversion, "deleted": True}])
    await conn.execute(principal_authkey.update().where(
        principal_authkey.c.user_id == event.user_id).values(deleted=True, updated_at=func.now()))


def _role_values(envelope: Envelope) -> dict[str, Any]:
    event = (RoleCreated if envelope.type == RoleCreated.type else RoleUpdated).model_validate(
        envelope.data)
    return {**role_row(event.role), "version": envelope.streamversion, "deleted": False}



async def when_role_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    event = RoleDeleted.model_validate(envelope.data)
    await _upsert(conn, principal_role, "role_id", [{
        "role_id": event.role_id, "name": "", "state": {}, "version": envelope.streamversion,
        "deleted": True}])


def _authkey_values(envelope: Envelope) -> dict[str, Any]:
    model = AuthKeyCreated if envelope.type == AuthKeyCreated.type else AuthKeyUpdated
    key = model.model_validate(envelope.data).authkey
    return {
        "authkey_id": key.id, "uuid": key.uuid, "user_id": key.user_id,
        "key_hmac": key.key_hmac.lower(), "authkey_start": key.authkey_start,
        "authkey_end": key.authkey_end, "expiration": key.expiration,
        "allowed_ips": list(key.allowed_ips) if key.allowed_ips else None,
        "read_only": key.read_only, "version": envelope.streamversion, "deleted": False,
    }



async def when_authkey_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    """A tombstone: a replayed creation of the key (an older version) cannot bring it back."""
    event = AuthKeyDeleted.model_validate(envelope.data)
    digest = event.key_hmac.lower()
    # A row of another id with this hash (a test's hand-made key): deleted as before.
    await conn.execute(principal_authkey.update().where(
        (principal_authkey.c.key_hmac == digest)
        & (principal_authkey.c.authkey_id != event.authkey_id)).values(
        deleted=True, updated_at=func.now()))
    await _upsert(conn, principal_authkey, "authkey_id", [{
        "authkey_id": event.authkey_id, "uuid": "", "user_id": 0, "key_hmac": digest,
        "authkey_start": "", "authkey_end": "", "version": envelope.streamversion,
        "deleted": True}])


def _organisation_values(envelope: Envelope) -> dict[str, Any]:
    model = (OrganisationCreated if envelope.type == OrganisationCreated.type
             else OrganisationUpdated)
    return {**org_row(model.model_validate(envelope.data).organisation),
            "version": envelope.streamversion}



async def when_organisation_deleted_project(conn: AsyncConnection, envelope: Envelope) -> None:
    event = OrganisationDeleted.model_validate(envelope.data)
    await _upsert(conn, principal_org, "org_id", [{
        "org_id": event.org_id, "uuid": event.uuid, "name": event.name, "deleted": True,
        "version": envelope.streamversion}])


async def _prune_sessions(conn: AsyncConnection) -> None:
    await conn.execute(principal_session.delete().where(
        principal_session.c.expires_at < func.now() - SESSION_ROWS_KEPT))


async def when_session_started_project(conn: AsyncConnection, envelope: Envelope) -> None:
    event = SessionStarted.model_validate(envelope.data)
    await _upsert(conn, principal_session, "session_hmac", [{
        "session_hmac": event.session_hmac.lower(), "user_id": event.user_id,
        "expires_at": event.expires_at, "version": SESSION_STARTED_VERSION, "deleted": False}])
    await _prune_sessions(conn)


async def when_session_ended_project(conn: AsyncConnection, envelope: Envelope) -> None:
    """A tombstone, also for a session whose start has not arrived (yet)."""
    event = SessionEnded.model_validate(envelope.data)
    await _upsert(conn, principal_session, "session_hmac", [{
        "session_hmac": event.session_hmac.lower(), "user_id": event.user_id,
        "expires_at": func.now(), "version": SESSION_ENDED_VERSION, "deleted": True}])
    await _prune_sessions(conn)


def _notifying(handler: Handler) -> Handler:
    """Also tell the API processes' caches (auth/cache.py), at commit, that principals changed."""

    async def project(conn: AsyncConnection, envelope: Envelope) -> None:
        await handler(conn, envelope)
        await conn.execute(_NOTIFY)
        clear_local_caches()

    project.__name__ = handler.__name__
    return project


_NOTIFY = text(f"SELECT pg_notify('{PRINCIPALS_CHANNEL}', '')")

# The saves, as (table, key, values of the event): `project_principals` folds runs of them into
# one statement.
_SAVES: dict[str, tuple[Table, str, Callable[[Envelope], dict[str, Any]]]] = {
    UserCreated.type: (principal_user, "user_id", _user_values),
    UserUpdated.type: (principal_user, "user_id", _user_values),
    RoleCreated.type: (principal_role, "role_id", _role_values),
    RoleUpdated.type: (principal_role, "role_id", _role_values),
    AuthKeyCreated.type: (principal_authkey, "authkey_id", _authkey_values),
    AuthKeyUpdated.type: (principal_authkey, "authkey_id", _authkey_values),
    OrganisationCreated.type: (principal_org, "org_id", _organisation_values),
    OrganisationUpdated.type: (principal_org, "org_id", _organisation_values),
}
_OTHERS: dict[str, Handler] = {
    UserDeleted.type: when_user_deleted_project,
    RoleDeleted.type: when_role_deleted_project,
    AuthKeyDeleted.type: when_authkey_deleted_project,
    OrganisationDeleted.type: when_organisation_deleted_project,
    SessionStarted.type: when_session_started_project,
    SessionEnded.type: when_session_ended_project,
}


def _saving(table: Table, key: str, values_of: Callable[[Envelope], dict[str, Any]]) -> Handler:
    async def project(conn: AsyncConnection, envelope: Envelope) -> None:
        await _upsert(conn, table, key, [values_of(envelope)])

    project.__name__ = f"when_{table.name}_saved_project"
    return project


PRINCIPAL_HANDLERS: dict[str, Handler] = {
    **{type_: _notifying(_saving(*save)) for type_, save in _SAVES.items()},
    **{type_: _notifying(handler) for type_, handler in _OTHERS.items()},
}


async def project_principals(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """Apply a batch of principal events in order, with one NOTIFY: a run of saves into one
    table is one multi-row upsert (the last state of each id wins), a delete ends the run.
    Other types are skipped."""
    run: list[dict[str, Any]] = []
    target: tuple[Table, str] | None = None

    async def flush() -> None:
        if target is not None and run:
            await _upsert(conn, target[0], target[1], _latest(run, target[1]))
        run.clear()

    applied = False
    for envelope in envelopes:
        save = _SAVES.get(envelope.type)
        if save is not None:
            if target != save[:2]:
                await flush()
                target = save[0], save[1]
            run.append(save[2](envelope))
        elif envelope.type in _OTHERS:
            await flush()
            await _OTHERS[envelope.type](conn, envelope)
        else:
            continue
        applied = True
    await flush()
    if applied:
        await conn.execute(_NOTIFY)
        clear_local_caches()


_USER_COLUMNS = (
    principal_user.c.user_id,
    principal_user.c.email,
    principal_user.c.org_id,
    principal_user.c.disabled,
    principal_user.c.change_pw,
    principal_user.c.expiration.label("user_expiration"),
    principal_role.c.state.label("role_state"),
    principal_org.c.name.label("org_name"),
)


def _joined_to_user(table: Table, *columns: Any) -> Any:
    """One indexed query: `columns` of a live row of `table`, with its user, their role and
    org. A row whose user is unknown finds nothing."""
    return (
        select(*columns, *_USER_COLUMNS)
        .select_from(
            table
            .join(principal_user, (principal_user.c.user_id == table.c.user_id)
                  & principal_user.c.deleted.is_(False))
            .outerjoin(principal_role, (principal_role.c.role_id == principal_user.c.role_id)
                       & principal_role.c.deleted.is_(False))
            .outerjoin(principal_org, principal_org.c.org_id == principal_user.c.org_id)
        )
        .where(table.c.deleted.is_(False))
    )


_LOOKUP = _joined_to_user(
    principal_authkey, principal_authkey.c.key_hmac, principal_authkey.c.authkey_id,
    principal_authkey.c.authkey_start, principal_authkey.c.authkey_end,
    principal_authkey.c.expiration, principal_authkey.c.allowed_ips,
    principal_authkey.c.read_only)
_SESSION_LOOKUP = _joined_to_user(
    principal_session, principal_session.c.session_hmac, principal_session.c.expires_at)


async def lookup_authkeys(conn: AsyncConnection, key_hmacs: Sequence[str]) -> Sequence[Any]:
    """The principal rows of these key hashes (one query; usually one hash)."""
    if not key_hmacs:
        return ()
    if len(key_hmacs) == 1:
        stmt = _LOOKUP.where(principal_authkey.c.key_hmac == key_hmacs[0])
    else:
        stmt = _LOOKUP.where(principal_authkey.c.key_hmac.in_(list(key_hmacs)))
    return (await conn.execute(stmt)).all()


async def lookup_sessions(conn: AsyncConnection, hmacs: Sequence[str]) -> Sequence[Any]:
    """The principal rows of these live sessions (by their token's HMAC; one query)."""
    if not hmacs:
        return ()
    stmt = _SESSION_LOOKUP.where(principal_session.c.session_hmac.in_(list(hmacs)))
    return (await conn.execute(stmt)).all()
