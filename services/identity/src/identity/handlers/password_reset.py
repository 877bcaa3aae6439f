"""Passwords the mailer mails: setting the hash of a temporary password it issued, and a user's
"forgot password" request (a command to the mailer; identity never sees the password).

See services/mailer/README.md, "Temporary passwords: what identity must do".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.store import (
    count_attempt,
    end_sessions,
    publish_only,
    record,
    store_password,
    write,
)
from identity.domain.access import Rights, can_manage_credentials_of
from identity.domain.errors import BadRequestError, ForbiddenError
from identity.domain.users import email_errors
from identity.handlers.users import STREAM
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import REDACTED, changes_between
from misp_contracts.events.identity import UserPasswordReset, UserState, UserUpdated
from misp_contracts.events.mailer import SendPasswordReset, TemporaryPasswordIssued
from misp_platform.eventstore import Append
from misp_platform.server_settings import read_settings

log = structlog.get_logger(__name__)

FORGOT_DISABLED = "This feature is disabled."
FORGOT_SENT = ("If the e-mail address belongs to an account of this instance, a message with a "
               "temporary password has been sent to it.")
# `users/forgot` requests counted per (IP, address) in the login brute-force table.
FORGOT_PREFIX = "forgot:"


async def when_temporary_password_issued_set_password(conn: AsyncConnection,
                                                      envelope: Envelope) -> None:
    """The mailer mailed a temporary password: its argon2id hash becomes the user's password,
    with `change_pw`, unless the user is gone, their address changed since the mail, or the
    event's actor may not manage the user's credentials (`_refusal`)."""
    issued = TemporaryPasswordIssued.model_validate(envelope.data)
    loaded = await queries.get_user(conn, issued.user_id)
    if loaded is None or loaded.state.email.strip().lower() != issued.email.strip().lower():
        log.info("identity.temporary_password.skipped", user_id=issued.user_id,
                 credential_id=issued.credential_id,
                 reason="no such user" if loaded is None else "e-mail changed")
        return
    refusal = await _refusal(conn, envelope.actor, issued, loaded.state)
    if refusal is not None:
        # Refused for good, so the message is consumed (never retried, never dead-lettered).
        log.warning("identity.temporary_password.refused", user_id=issued.user_id,
                    credential_id=issued.credential_id, actor_user_id=envelope.actor.user_id,
                    reason=refusal)
        return
    if await queries.password_hash(conn, issued.user_id) == issued.password_hash:
        return  # applied before (a replay without the processed mark)
    now = datetime.now(UTC)
    current = loaded.state
    new = current.model_copy(update={"change_pw": issued.change_pw, "last_pw_change": now,
                                     "date_modified": now})
    changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
    changes.pop("date_modified", None)
    changes["password"] = (REDACTED, REDACTED)
    title = f"Password reset by e-mail ({issued.reason})"
    await record(conn, [Append(
        stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
        events=(UserUpdated(user=new, changes=changes),
                UserPasswordReset(title=title, user_id=current.id, email=current.email,
                                  org_id=current.org_id, ip=envelope.actor.client_ip)),
        actor=envelope.actor, correlation_id=envelope.correlationid or issued.credential_id,
        causation_id=envelope.id)])
    await store_password(conn, current.id, issued.password_hash)
    await end_sessions(conn, current.id)
    log.info("identity.temporary_password.set", user_id=current.id,
             credential_id=issued.credential_id, reason=issued.reason)


async def _refusal(conn: AsyncConnection, actor: Actor, issued: TemporaryPasswordIssued,
                   target: UserState) -> str | None:
    """Why identity refuses to apply the password (None: it may), judged as of now by identity's
    own state, never by what the event claims: the actor must be an enabled user who may manage
    the target's credentials (misp_contracts.access, the rule the mailer applies too); an actor
    with no user is the system acting on a user's own "forgot password", only while that
    feature is on."""
    if actor.user_id is None:
        if issued.reason != "forgot_password":
            return "no acting user"
        settings = await read_settings(conn, ["Security.allow_password_forgotten"])
        return None if settings["Security.allow_password_forgotten"] else "forgot password is off"
    acting = await queries.get_user(conn, actor.user_id)
    if acting is None or acting.state.disabled:
        return "the acting user is unknown or disabled"
    acting_role = await queries.get_role(conn, acting.state.role_id)
    rights = Rights.of(acting.state.id, acting.state.org_id,
                       acting_role.state if acting_role else None)
    target_role = await queries.get_role(conn, target.role_id)
    if not can_manage_credentials_of(rights, target, target_role.state if target_role else None):
        return "the acting user may not manage this user's credentials"
    return None


async def _count_request(conn: AsyncConnection, ip: str, email: str, *, amount: int,
                         expire: int) -> bool:
    """Count this request against (IP, address); False once the pair reached the limit."""
    return await count_attempt(conn, ip, FORGOT_PREFIX + email, amount=amount, expire=expire)


async def forgot_password(engine: AsyncEngine, *, email: Any, ip: str,
                          request_id: str | None = None) -> str:
    """`users/forgot`: ask the mailer to mail a temporary password to the account of `email`,
    if there is one. The answer is the same either way (no user enumeration)."""
    async with engine.connect() as conn:
        settings = await read_settings(conn, ["Security.allow_password_forgotten",
                                              "SecureAuth.amount", "SecureAuth.expire"])
    if not settings["Security.allow_password_forgotten"]:
        raise ForbiddenError(FORGOT_DISABLED)
    problems = email_errors(email)
    if problems:
        raise BadRequestError(problems[0])
    assert isinstance(email, str)
    address = email.strip().lower()

    async def work(conn: AsyncConnection) -> None:
        if not await _count_request(conn, ip, address,
                                    amount=int(settings["SecureAuth.amount"] or 5),
                                    expire=int(settings["SecureAuth.expire"] or 300)):
            log.info("identity.forgot_password.throttled")
            return  # too many requests for this pair: nothing sent, same answer
        loaded = await queries.get_user_by_email(conn, address)
        if loaded is None or loaded.state.disabled:
            return
        user = loaded.state
        actor = Actor(email="SYSTEM", org_name="SYSTEM", client_ip=ip, request_id=request_id)
        await publish_only(conn, SendPasswordReset(user_id=user.id, email=user.email,
                                                   org_id=user.org_id, gpgkey=user.gpgkey,
                                                   version=loaded.version),
                           actor=actor, key=loaded.stream_id)
        log.info("identity.forgot_password.requested", user_id=user.id)

    await write(engine, work)
    return FORGOT_SENT
