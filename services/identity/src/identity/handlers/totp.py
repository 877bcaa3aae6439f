"""TOTP two-factor login, as MISP's users/otp, users/totp_new and users/totp_delete do it: the
code step of a pending login, enrolling a secret (a new one at each GET, active once a code
proves it) and an administrator's removal of a user's secret.

Secrets are sealed at rest (identity.adapters.totp_secrets) and never leave identity but in the
one enrolment answer to their owner; events say only that a TOTP was set or removed. A wrong code
counts in MISP's brute-force rule (SecureAuth, the password's counter) and spends one of the
pending login's attempts; a code is good once (its time step is kept).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries, totp_store
from identity.adapters.ports import LoadedUser
from identity.adapters.store import publish_only, record, write
from identity.adapters.totp_secrets import seal, unseal
from identity.domain import totp as rules
from identity.domain.access import Caller, can_manage_user
from identity.domain.errors import BadRequestError, ForbiddenError, NotFoundError
from identity.domain.users import INVALID_USER
from identity.handlers.login import (
    LoggedIn,
    actor_of,
    begin_session,
    blocked_message,
    reserve_attempt,
    secure_auth_limits,
)
from identity.handlers.second_step import (
    ENROL,
    LOGIN_EXPIRED,
    NO_PENDING_LOGIN,
    OTP,
    challenge_hmac,
    otp_settings,
)
from misp_contracts.envelope import Actor
from misp_contracts.events.identity import (
    UserLoginFailed,
    UserState,
    UserTotpRemoved,
    UserTotpSet,
)
from misp_platform.eventstore import Append

ENROLMENT_TTL = timedelta(minutes=15)


@dataclass(frozen=True)
class Enrolment:
    """What users/totp_new shows its owner: the secret, the URI an app enrols from, its QR."""

    secret: str
    provisioning_uri: str
    qrcode: str
    issuer: str


@dataclass(frozen=True)
class Pending:
    """A live pending login: its token's HMAC and the user it is for."""

    token_hmac: str
    purpose: str
    user: UserState


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


async def pending_login(engine: AsyncEngine, pepper: str, token: str | None, purpose: str, *,
                        now: float) -> Pending:
    """The pending login of this cookie for `purpose`, its user enabled; else MISP's 403 (a
    400 when there is no cookie at all: nothing to complete)."""
    if not token:
        raise BadRequestError(NO_PENDING_LOGIN)
    if len(token) > 256:
        raise ForbiddenError(LOGIN_EXPIRED)
    digest = challenge_hmac(pepper, token)
    async with engine.connect() as conn:
        challenge = await totp_store.live_challenge(conn, digest, _at(now))
        loaded = (await queries.get_user(conn, challenge.user_id)
                  if challenge is not None and challenge.purpose == purpose else None)
    if loaded is None or loaded.state.disabled:
        raise ForbiddenError(LOGIN_EXPIRED)
    return Pending(digest, purpose, loaded.state)


async def cancel_pending(engine: AsyncEngine, pepper: str, token: str | None) -> None:
    """users/logout with a pending login: it ends."""
    if token and len(token) <= 256:
        async with engine.begin() as conn:
            await totp_store.end_challenge(conn, challenge_hmac(pepper, token))


def _wrong_code(user: UserState, ip: str, user_agent: str | None, blocked: bool) -> UserLoginFailed:
    """MISP's login_fail entry of a wrong code (its words)."""
    title = f"User ({user.id}): {user.email} wrong OTP token"
    return UserLoginFailed(title=title + (" Blocked against bruteforcing." if blocked else ""),
                           username=user.email.lower(), user_id=user.id, email=user.email,
                           org_id=user.org_id, ip=ip, user_agent=user_agent, blocked=blocked)


async def log_in_with_code(engine: AsyncEngine, pending: Pending, code: object, *, ip: str,
                           user_agent: str | None, pepper: str, now: float,
                           request_id: str | None = None) -> LoggedIn:
    """The code step (`POST /users/otp`): a right, unused code ends the pending login and opens
    the session; a wrong one is counted (SecureAuth and the pending login's attempts) and
    logged as MISP's login_fail."""
    user = pending.user
    amount, expire = await secure_auth_limits(engine)
    attempt_id, counted = await reserve_attempt(engine, ip, user.email.lower(), amount=amount,
                                                expire=expire)
    if attempt_id is None:
        raise ForbiddenError(blocked_message(expire))
    token = secrets.token_urlsafe(32)

    async def work(conn: AsyncConnection) -> bool:
        challenge = await totp_store.live_challenge(conn, pending.token_hmac, _at(now),
                                                    lock=True)
        active = await totp_store.active_totp(conn, user.id, lock=True)
        if challenge is None or active is None:
            raise ForbiddenError(LOGIN_EXPIRED)
        step = rules.accepted_step(unseal(pepper, user.id, active.sealed), code, now=now,
                                   last_step=active.last_step)
        if step is None:
            await totp_store.spend_attempt(conn, pending.token_hmac)
            await publish_only(conn, _wrong_code(user, ip, user_agent, counted + 1 >= amount),
                               actor=actor_of(user, ip, request_id))
            return False
        await totp_store.accept_step(conn, user.id, step)
        await totp_store.end_challenge(conn, pending.token_hmac)
        await begin_session(conn, user, token, attempt_id=attempt_id, ip=ip,
                            user_agent=user_agent, pepper=pepper, request_id=request_id,
                            now=_at(now))
        return True

    if not await write(engine, work):
        raise ForbiddenError(rules.WRONG_CODE)
    return LoggedIn(user=user, token=token)


async def _record_totp(conn: AsyncConnection, current: LoadedUser, actor: Actor, *,
                       set_: bool) -> UserState:
    """The user's stream records the TOTP set or removed, as MISP's log entry words it; the
    user after."""
    new = current.state.model_copy(update={"totp_is_set": set_})
    what = "TOTP token created" if set_ else "TOTP deleted"
    event = (UserTotpSet if set_ else UserTotpRemoved)(
        user=new, ip=actor.client_ip, title=f"User ({new.id}): {new.email} {what}")
    await record(conn, [Append(stream_id=current.stream_id, stream_type="user",
                               expected_version=current.version, events=(event,),
                               actor=actor)])
    return new


async def _refuse_if_set_or_disabled(conn: AsyncConnection, user_id: int) -> dict[str, object]:
    settings = await otp_settings(conn)
    if settings["Security.otp_disabled"]:
        raise ForbiddenError(rules.DISABLED)
    if await totp_store.active_totp(conn, user_id) is not None:
        raise ForbiddenError(rules.ALREADY_SET)
    return settings


async def new_enrolment(engine: AsyncEngine, user: UserState, *, pepper: str,
                        now: float) -> Enrolment:
    """`GET /users/totp_new`: a new secret for the user to enrol (the one a code must prove
    next); MISP's 403 when they already have one."""
    secret = rules.new_secret()
    async with engine.begin() as conn:
        settings = await _refuse_if_set_or_disabled(conn, user.id)
        await totp_store.keep_enrolment(conn, user.id, seal(pepper, user.id, secret),
                                        _at(now) + ENROLMENT_TTL)
    issuer = rules.issuer_of(str(settings["Security.otp_issuer"] or ""),
                             str(settings["MISP.org"] or ""))
    uri = rules.provisioning_uri(secret, user.email, issuer)
    return Enrolment(secret=secret, provisioning_uri=uri, qrcode=rules.qr_svg(uri),
                     issuer=issuer)


async def confirm_enrolment(engine: AsyncEngine, user: UserState, code: object, *, pepper: str,
                            now: float, actor: Actor,
                            then: Callable[[AsyncConnection], Awaitable[None]] | None = None,
                            on_wrong_code: Callable[[AsyncConnection], Awaitable[None]]
                            | None = None) -> UserState:
    """`POST /users/totp_new`: a right code for the secret being enrolled makes it the user's
    (its step used up), logged as MISP's "TOTP token created"; `then` runs in the same
    transaction (a pending login's session), `on_wrong_code` when the code is wrong."""

    async def work(conn: AsyncConnection) -> UserState | None:
        await _refuse_if_set_or_disabled(conn, user.id)
        sealed = await totp_store.enrolment(conn, user.id, _at(now))
        step = None if sealed is None else rules.accepted_step(
            unseal(pepper, user.id, sealed), code, now=now)
        if sealed is None or step is None:
            if on_wrong_code is not None:
                await on_wrong_code(conn)
            return None
        current = await queries.get_user(conn, user.id)
        if current is None:
            raise NotFoundError(INVALID_USER)
        await totp_store.set_totp(conn, user.id, sealed, step)
        await totp_store.end_enrolment(conn, user.id)
        new = await _record_totp(conn, current, actor, set_=True)
        if then is not None:
            await then(conn)
        return new

    enrolled = await write(engine, work)
    if enrolled is None:
        raise BadRequestError(rules.WRONG_CODE + ".")
    return enrolled


async def enrol_pending_login(engine: AsyncEngine, pending: Pending, code: object, *, ip: str,
                              user_agent: str | None, pepper: str, now: float,
                              request_id: str | None = None) -> LoggedIn:
    """`POST /users/totp_new` with the pending login OTP requires: the enrolment and, in the
    same transaction, the session the login waited for."""
    token = secrets.token_urlsafe(32)
    user = pending.user

    async def open_session(conn: AsyncConnection) -> None:
        if await totp_store.live_challenge(conn, pending.token_hmac, _at(now),
                                           lock=True) is None:
            raise ForbiddenError(LOGIN_EXPIRED)
        await totp_store.end_challenge(conn, pending.token_hmac)
        await begin_session(conn, user, token, attempt_id=None, ip=ip, user_agent=user_agent,
                            pepper=pepper, request_id=request_id, now=_at(now))

    async def spend(conn: AsyncConnection) -> None:
        await totp_store.spend_attempt(conn, pending.token_hmac)

    enrolled = await confirm_enrolment(engine, user, code, pepper=pepper, now=now,
                                       actor=actor_of(user, ip, request_id),
                                       then=open_session, on_wrong_code=spend)
    return LoggedIn(user=enrolled, token=token)


async def remove_totp(engine: AsyncEngine, caller: Caller, actor: Actor, user_id: int) -> None:
    """`users/totp_delete/<id>`: a site admin for anyone, an org admin for their org's users
    but site admins (MISP's rule); logged as MISP's "TOTP deleted" when there was one."""

    async def work(conn: AsyncConnection) -> None:
        settings = await otp_settings(conn)
        if settings["Security.otp_disabled"]:
            raise ForbiddenError(rules.DISABLED)
        current = await queries.get_user(conn, user_id)
        role = (await queries.get_role(conn, current.state.role_id)
                if current is not None else None)
        if current is None or not can_manage_user(caller, current.state,
                                                  role.state if role else None):
            raise NotFoundError(INVALID_USER)
        if not await totp_store.remove_totp(conn, user_id):
            return
        await _record_totp(conn, current, actor, set_=False)

    await write(engine, work)


__all__ = ["ENROL", "OTP", "Enrolment", "Pending", "cancel_pending", "confirm_enrolment",
           "enrol_pending_login", "log_in_with_code", "new_enrolment", "pending_login",
           "remove_totp"]
