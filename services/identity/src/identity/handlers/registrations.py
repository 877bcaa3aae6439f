"""Self-registration: register (no auth), the site admin's inbox, accept (creates the user) and
discard (MISP's UsersController::register / registrations / acceptRegistrations /
discardRegistrations, API reference §2.9), through the unit of work (identity.adapters.ports)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from identity.adapters.ports import IdentityQueries, IdentityStore, LoadedRegistration, UnitOfWork
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
from misp_platform.misp.paging import Page, every_row

STREAM = "registration"
ALLOWED = "Security.allow_self_registration"


async def register(uow: UnitOfWork, body: dict[str, Any], *, ip: str | None,
                   user_agent: str | None, request_id: str | None) -> int:
    """`users/register`: store the request for a site admin; its id."""
    async with uow.reads() as q:
        if not (await q.settings([ALLOWED]))[ALLOWED]:
            raise NotAllowedError(rules.NOT_ENABLED)
    data, errors = rules.parse_request(body)
    if not data.get("email") and "email" not in errors:
        raise BadRequestError(rules.EMAIL_REQUIRED)
    if errors:
        raise InvalidFieldsError(errors)
    actor = Actor(email="SYSTEM", org_name="SYSTEM", client_ip=ip, request_id=request_id)

    async def work(tx: IdentityStore) -> int:
        state = RegistrationState(
            id=await tx.next_registration_id(), uuid=str(uuid.uuid4()),
            email=data["email"], data=data, ip=ip, user_agent=(user_agent or "")[:512] or None,
            created=datetime.now(UTC))
        await tx.record([Append(stream_id=state.uuid, stream_type=STREAM, expected_version=0,
                                events=(RegistrationSubmitted(registration=state),),
                                actor=actor)])
        await tx.commit()
        return state.id

    return await uow.transaction(work)


def inbox_fields(state: RegistrationState) -> dict[str, Any]:
    """An `Inbox` row as MISP shows it (ints as strings, `data` decoded)."""
    return {
        "id": str(state.id), "uuid": state.uuid, "title": rules.title(state.email),
        "type": "registration", "ip": state.ip or "", "user_agent": state.user_agent or "",
        "user_agent_sha256": "", "comment": "", "deleted": False,
        "timestamp": str(int(state.created.timestamp())) if state.created else "0",
        "store_as_file": False, "data": state.data,
    }


async def index(uow: UnitOfWork, page: Page | None = None) -> list[dict[str, Any]]:
    page = page or every_row()
    async with uow.reads() as q:
        return [{"Inbox": inbox_fields(state)} for state in await q.open_registrations(
            offset=page.offset, limit=page.limit)]


def registration_key(value: str) -> int | str:
    """A registration's id, or its uuid (PyMISP sends the uuid of a MISPInbox it holds)."""
    number = to_int(value)
    if number is not None:
        return number
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFoundError(rules.INVALID_REGISTRATION) from None


async def _open_registration(q: IdentityQueries, key: int | str) -> LoadedRegistration:
    loaded = await q.open_registration(key)
    if loaded is None:
        raise NotFoundError(rules.INVALID_REGISTRATION)
    return loaded


async def _org_id(q: IdentityQueries, value: Any) -> int:
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
            found = await q.organisation_id(wanted)
            if found is not None:
                return found
    raise InvalidFieldsError([INVALID_ORG], message="Could not add User")


async def accept(uow: UnitOfWork, caller: Principal, registration_id: int | str,
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

    async def work(tx: IdentityStore) -> tuple[int, int]:
        loaded = await _open_registration(tx, registration_id)
        state = loaded.state
        org_id = await _org_id(tx, body.get("org_id"))
        fields: dict[str, Any] = {"email": state.email, "org_id": org_id, "change_pw": True}
        if to_int(role_given):
            fields["role_id"] = to_int(role_given)
        pgp = state.data.get("pgp")
        if isinstance(pgp, str) and pgp.strip():
            fields["gpgkey"] = pgp
            await check_gpg_key(fields)
        try:
            user = await new_user(tx, caller, fields, now=now)
        except InvalidFieldsError as exc:
            if isinstance(exc.errors, dict) and "role_id" in exc.errors:
                raise BadRequestError(rules.NO_ROLE) from None
            raise
        actor = caller.actor()
        await tx.record([
            Append(stream_id=user.uuid, stream_type=USER_STREAM, expected_version=0,
                   events=(UserCreated(user=user),), actor=actor),
            Append(stream_id=loaded.stream_id, stream_type=STREAM,
                   expected_version=loaded.version,
                   events=(RegistrationAccepted(registration_id=state.id, user_id=user.id),),
                   actor=actor)])
        await tx.set_password(user.id, None)
        await tx.commit()
        return state.id, user.id

    return await uow.transaction(work)


async def discard(uow: UnitOfWork, caller: Principal, registration_id: int | str) -> int:
    """`users/discardRegistrations/{id|uuid}`: the discarded registration's id."""

    async def work(tx: IdentityStore) -> int:
        loaded = await _open_registration(tx, registration_id)
        await tx.record([Append(
            stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
            events=(RegistrationDiscarded(registration_id=loaded.state.id),),
            actor=caller.actor())])
        await tx.commit()
        return loaded.state.id

    return await uow.transaction(work)
