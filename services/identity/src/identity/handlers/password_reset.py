"""Passwords the mailer mails: setting the hash of a temporary password it issued (an
administrator's reset), a user's "forgot password" request (a command to the mailer), and the
reset links the mailer mails for it: identity keeps the sha256 of each link's token (never the
token), one live link per user, and sets the password the link's owner chooses.

See services/mailer/README.md, "Temporary passwords: what identity must do".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.passwords import hash_password
from identity.adapters.ports import LoadedUser
from identity.adapters.store import (
    count_attempt,
    end_sessions,
    keep_reset_link,
    publish_only,
    record,
    reset_link,
    store_password,
    use_reset_link,
    write,
)
from identity.domain import passwords
from identity.domain.access import Rights, can_manage_credentials_of
from identity.domain.errors import (
    BadRequestError,
    ForbiddenError,
    InvalidFieldsError,
    NotFoundError,
)
from identity.domain.users import email_errors
from identity.handlers.users import POLICY_SETTINGS, STREAM
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.base import REDACTED, changes_between
from misp_contracts.events.identity import (
    UserPasswordChanged,
    UserPasswordReset,
    UserState,
    UserUpdated,
)
from misp_contracts.events.mailer import (
    PasswordResetLinkIssued,
    SendPasswordReset,
    TemporaryPasswordIssued,
)
from misp_platform.eventstore import Append
from misp_platform.server_settings import read_settings

log = structlog.get_logger(__name__)

FORGOT_DISABLED = "This feature is disabled."
FORGOT_SENT = ("If the e-mail address belongs to an account of this instance, a message with a "
               "link to set a new password has been sent to it.")
# The one answer for a link identity does not know, one used or replaced, or one expired.
INVALID_LINK = "Invalid or expired password reset link."
MAX_TOKEN = 128  # a token is 43 characters (secrets.token_urlsafe(32)); longer cannot be one

# The clock links expire by (tests replace it).
now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


class UnknownResetLinkError(NotFoundError):
    """No link hashes to this token in identity's table: the mailer's event may still be on its
    way (the API catches the consumer up and looks once more)."""

    def __init__(self) -> None:
        super().__init__(INVALID_LINK)
# `users/forgot` requests counted per (IP, address) in the login brute-force table.
FORGOT_PREFIX = "forgot:"


async def _mailed_user(conn: AsyncConnection, user_id: int, email: str, credential_id: str, *,
                       skipped: str) -> LoadedUser | None:
    """The user a mailed credential was for, unless they are gone or their address changed
    since the mail (logged as `skipped`)."""
    loaded = await queries.get_user(conn, user_id)
    if loaded is None or loaded.state.email.strip().lower() != email.strip().lower():
        log.info(skipped, user_id=user_id, credential_id=credential_id,
                 reason="no such user" if loaded is None else "e-mail changed")
        return None
    return loaded


async def when_temporary_password_issued_set_password(conn: AsyncConnection,
                                                      envelope: Envelope) -> None:
    """The mailer mailed a temporary password: its argon2id hash becomes the user's password,
    with `change_pw`, unless the user is gone, their address changed since the mail, or the
    event's actor may not manage the user's credentials (`_refusal`)."""
    issued = TemporaryPasswordIssued.model_validate(envelope.data)
    loaded = await _mailed_user(conn, issued.user_id, issued.email, issued.credential_id,
                                skipped="identity.temporary_password.skipped")
    if loaded is None:
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
    await end_sessions(conn, current.id, reason="password_reset", actor=envelope.actor,
                       stream_id=loaded.stream_id)
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


# ---- reset links ------------------------------------------------------------------------------


def token_hash(token: str) -> str:
    """The hex sha256 of a link's token: the token is 256 random bits, so a fast hash is as one-way
    as a slow one, and finding a link by it is one index lookup."""
    return hashlib.sha256(token.encode()).hexdigest()


async def when_reset_link_issued_keep(conn: AsyncConnection, envelope: Envelope) -> None:
    """The mailer mailed a reset link: its token's hash becomes the user's one live link (a
    newer link replaces an older one; the same link again changes nothing), unless the user is
    gone, their address changed since, the link was not a user's own request, or "forgot
    password" is off."""
    issued = PasswordResetLinkIssued.model_validate(envelope.data)
    loaded = await _mailed_user(conn, issued.user_id, issued.email, issued.credential_id,
                                skipped="identity.reset_link.skipped")
    if loaded is None:
        return
    settings = await read_settings(conn, ["Security.allow_password_forgotten"])
    if envelope.actor.user_id is not None or not settings["Security.allow_password_forgotten"]:
        log.warning("identity.reset_link.refused", user_id=issued.user_id,
                    credential_id=issued.credential_id,
                    reason="not a user's own request" if envelope.actor.user_id is not None
                    else "forgot password is off")
        return
    kept = await keep_reset_link(conn, user_id=issued.user_id, credential_id=issued.credential_id,
                                 token_hash=issued.token_hash, issued_at=envelope.time,
                                 expires_at=issued.expires_at)
    log.info("identity.reset_link.kept" if kept else "identity.reset_link.not_newer",
             user_id=issued.user_id, credential_id=issued.credential_id)


def _masked(email: str) -> str:
    """`a***@example.test`: enough for its owner to recognise, little for anyone else."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


async def _live_link_user(conn: AsyncConnection, token: str, *,
                          lock: bool = False) -> UserState:
    """The enabled user whose unused, unexpired link `token` is; else INVALID_LINK (the same
    answer whatever the reason), as UnknownResetLinkError when identity knows no such link."""
    if not token or len(token) > MAX_TOKEN:
        raise NotFoundError(INVALID_LINK)
    found = await reset_link(conn, token_hash(token), lock=lock)
    if found is None:
        raise UnknownResetLinkError()
    user_id, expires_at, used_at = found
    if used_at is not None or expires_at <= now():
        raise NotFoundError(INVALID_LINK)
    loaded = await queries.get_user(conn, user_id)
    if loaded is None or loaded.state.disabled:
        raise NotFoundError(INVALID_LINK)
    return loaded.state


async def reset_link_status(engine: AsyncEngine, token: str) -> dict[str, Any]:
    """`GET users/password_reset/<token>`: whether the link may still set a password."""
    async with engine.connect() as conn:
        settings = await read_settings(conn, ["Security.allow_password_forgotten"])
        if not settings["Security.allow_password_forgotten"]:
            raise ForbiddenError(FORGOT_DISABLED)
        user = await _live_link_user(conn, token)
    return {"valid": True, "email": _masked(user.email)}


async def reset_password_by_link(engine: AsyncEngine, token: str, body: dict[str, Any], *,
                                 ip: str, request_id: str | None = None) -> UserState:
    """`POST users/password_reset/<token>`: the link's owner sets a new password under the
    policy; in one transaction the link is used up, `change_pw` cleared, the user's sessions
    ended, and the change recorded (never the password)."""
    await reset_link_status(engine, token)  # an invalid link answers before any argon2 work
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidFieldsError({"password": ["A password is required."]},
                                 message="Password could not be changed.")
    if "confirm_password" in body and body["confirm_password"] != password:
        raise InvalidFieldsError({"password": [passwords.CONFIRM_MISMATCH]},
                                 message=passwords.CONFIRM_MISMATCH)
    async with engine.connect() as conn:
        policy = await read_settings(conn, list(POLICY_SETTINGS))
    problems = passwords.policy_errors(password, min_length=policy[POLICY_SETTINGS[0]],
                                       complexity=policy[POLICY_SETTINGS[1]])
    if problems:
        raise InvalidFieldsError({"password": problems}, message=problems[0])
    new_hash = await hash_password(password)

    async def work(conn: AsyncConnection) -> UserState:
        current = await _live_link_user(conn, token, lock=True)
        loaded = await queries.get_user(conn, current.id)
        assert loaded is not None
        at = datetime.now(UTC)
        new = current.model_copy(update={"change_pw": False, "last_pw_change": at,
                                         "date_modified": at})
        changes = changes_between(current.model_dump(mode="json"), new.model_dump(mode="json"))
        changes.pop("date_modified", None)
        changes["password"] = (REDACTED, REDACTED)
        actor = Actor(user_id=current.id, email=current.email, org_id=current.org_id,
                      client_ip=ip, request_id=request_id)
        await record(conn, [Append(
            stream_id=loaded.stream_id, stream_type=STREAM, expected_version=loaded.version,
            events=(UserUpdated(user=new, changes=changes),
                    UserPasswordChanged(title=f"Password changed for user {current.id} "
                                              f"({current.email}) by a reset link",
                                        user_id=current.id, email=current.email,
                                        org_id=current.org_id, ip=ip)),
            actor=actor)])
        await store_password(conn, current.id, new_hash)
        await use_reset_link(conn, current.id, at)
        await end_sessions(conn, current.id, reason="password_reset", actor=actor,
                           stream_id=loaded.stream_id)
        log.info("identity.reset_link.used", user_id=current.id)
        return new

    return await write(engine, work)


async def _count_request(conn: AsyncConnection, ip: str, email: str, *, amount: int,
                         expire: int) -> bool:
    """Count this request against (IP, address); False once the pair reached the limit."""
    return await count_attempt(conn, ip, FORGOT_PREFIX + email, amount=amount, expire=expire)


async def forgot_password(engine: AsyncEngine, *, email: Any, ip: str,
                          request_id: str | None = None) -> str:
    """`users/forgot`: ask the mailer to mail a reset link to the account of `email`, if there
    is one. The answer is the same either way (no user enumeration)."""
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
