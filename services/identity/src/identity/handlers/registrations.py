"""Self-registration: register (no auth), the site admin's inbox, accept (creates the user) and
discard (MISP's UsersController::register / registrations / acceptRegistrations /
discardRegistrations, API reference §2.9)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.store import SqlStore, next_id, record, write
from identity.adapters.tables import org, registration
from identity.domain import registrations as rules
from identity.domain.errors import (
    BadRequestError,
    InvalidFieldsError,
    NotAllowedError,
    NotFoundError,
)
from identity.domain.users import INVALID_ORG
from identity.domain.values import to_bool, to_int
from identity.handlers.users import STREAM as USER_STREAM
from identity.handlers.users import check_gpg_key, new_user
from misp_contracts.envelope import Actor
from misp_contracts.events.identity import (
    RegistrationAccepted,
    RegistrationDiscarded,
    RegistrationState,
    RegistrationSubmitted,
    UserCreated,
)
from misp_platform.auth import Principal
from misp_platform.eventstore import Append
from misp_platform.server_settings import setting

STREAM = "registration"


async def register(engine: AsyncEngine, body: dict[str, Any], *, ip: str | None,
                   user_agent: str | None, request_id: str | None) -> int:
    """`users/register`: store the request for a site admin; its id."""
    async with engine.connect() as conn:
        if not await setting(conn, "Security.allow_self_registration"):
            raise NotAllowedError(rules.NOT_ENABLED)
    data, errors = rules.parse_request(body)
    if not data.get("email") and "email" not in errors:
        raise BadRequestError(rules.EMAIL_REQUIRED)
    if errors:
        raise InvalidFieldsError(errors)
    actor = Actor(email="SYSTEM", org_name="SYSTEM", client_ip=ip, request_id=request_id)

    async def work(conn: AsyncConnection) -> int:
        state = RegistrationState(
            id=await next_id(conn, "registration_id_seq"), uuid=str(uuid.uuid4()),
            email=data["email"], data=data, ip=ip, user_agent=(user_agent or "")[:512] or None,
            created=datetime.now(UTC))
        await record(conn, [Append(stream_id=state.uuid, stream_type=STREAM, expected_version=0,
                                   events=(RegistrationSubmitted(registration=state),),
                                   actor=actor)])
        return state.id

    return await write(engine, work)


def inbox_fields(state: RegistrationState) -> dict[str, Any]:
    """An `Inbox` row as MISP shows it (ints as strings, `data` decoded)."""
    return {
        "id": str(state.id), "uuid": state.uuid, "title": rules.title(state.email),
        "type": "registration", "ip": state.ip or "", "user_agent": state.user_agent or "",
        "user_agent_sha256": "", "comment": "", "deleted": False,
        "timestamp": str(int(state.created.timestamp())) if state.created else "0",
        "store_as_file": False, "data": state.data,
    }


async def index(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(registration.c.state)
                                  .where(registration.c.deleted.is_(False))
                                  .order_by(registration.c.id))
        return [{"Inbox": inbox_fields(RegistrationState.model_validate(r.state))}
                for r in rows]


def registration_key(value: str) -> int | str:
    """A registration's id, or its uuid (PyMISP sends the uuid of a MISPInbox it holds)."""
    number = to_int(value)
    if number is not None:
        return number
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFoundError(rules.INVALID_REGISTRATION) from None


async def _open_registration(conn: AsyncConnection,
                             key: int | str) -> tuple[str, int, RegistrationState]:
    match = (registration.c.id == key if isinstance(key, int)
             else registration.c.state["uuid"].astext == key)
    row = (await conn.execute(select(registration).where(
        match, registration.c.deleted.is_(False)).with_for_update())).first()
    if row is None:
        raise NotFoundError(rules.INVALID_REGISTRATION)
    return str(row.stream_id), row.version, RegistrationState.model_validate(row.state)


async def _org_id(conn: AsyncConnection, value: Any) -> int:
    """`org_id` as an id or a uuid (PyMISP may send either)."""
    if value in (None, "", 0, "0", False):
        raise BadRequestError(rules.NO_ORGANISATION)
    number = to_int(value)
    if number is not None:
        return number
    if isinstance(value, str):
        try:
            wanted = str(uuid.UUID(value.strip()))
        except ValueError:
            wanted = None
        if wanted is not None:
            found = (await conn.execute(select(org.c.org_id).where(
                org.c.uuid == wanted))).scalar()
            if found is not None:
                return int(found)
    raise InvalidFieldsError([INVALID_ORG], message="Could not add User")


async def accept(engine: AsyncEngine, caller: Principal, registration_id: int | str,
                 body: dict[str, Any]) -> tuple[int, int]:
    """`users/acceptRegistrations/{id}`: the user (role: the given one or the default role;
    a random unusable password with change_pw, as MISP's registration flow); the new user's id."""
    for flag in ("perm_sync", "perm_publish", "perm_admin"):
        if body.get(flag) not in (None, "") and to_bool(body[flag]) is None:
            raise InvalidFieldsError({flag: ["Value is not a boolean."]})
    role_given = body.get("role_id")
    if role_given not in (None, "", False, 0, "0") and to_int(role_given) is None:
        raise NotAllowedError("Invalid role")
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> tuple[int, int]:
        stream_id, version, state = await _open_registration(conn, registration_id)
        org_id = await _org_id(conn, body.get("org_id"))
        fields: dict[str, Any] = {"email": state.email, "org_id": org_id, "change_pw": True}
        if to_int(role_given):
            fields["role_id"] = to_int(role_given)
        pgp = state.data.get("pgp")
        if isinstance(pgp, str) and pgp.strip():
            fields["gpgkey"] = pgp
            await check_gpg_key(fields)
        try:
            user = await new_user(SqlStore(conn), caller, fields, now=now)
        except InvalidFieldsError as exc:
            if isinstance(exc.errors, dict) and "role_id" in exc.errors:
                raise BadRequestError(rules.NO_ROLE) from None
            raise
        actor = caller.actor()
        await record(conn, [
            Append(stream_id=user.uuid, stream_type=USER_STREAM, expected_version=0,
                   events=(UserCreated(user=user),), actor=actor),
            Append(stream_id=stream_id, stream_type=STREAM, expected_version=version,
                   events=(RegistrationAccepted(registration_id=state.id, user_id=user.id),),
                   actor=actor)])
        await SqlStore(conn).set_password(user.id, None)
        return state.id, user.id

    return await write(engine, work)


async def discard(engine: AsyncEngine, caller: Principal, registration_id: int | str) -> int:
    """`users/discardRegistrations/{id|uuid}`: the discarded registration's id."""

    async def work(conn: AsyncConnection) -> int:
        stream_id, version, state = await _open_registration(conn, registration_id)
        await record(conn, [Append(
            stream_id=stream_id, stream_type=STREAM, expected_version=version,
            events=(RegistrationDiscarded(registration_id=state.id),), actor=caller.actor())])
        return state.id

    return await write(engine, work)
