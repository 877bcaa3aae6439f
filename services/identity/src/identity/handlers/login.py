"""Web login with server-side sessions, logout, and brute-force protection per (IP, username).

Counting is atomic: an attempt is reserved under a transaction-scoped advisory lock on the pair
before the (slow) password check, so concurrent wrong passwords cannot all slip past the limit.
A successful login releases its reservation; a failed one stays counted for SecureAuth.expire.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries
from identity.adapters.passwords import verify_password
from identity.adapters.store import (
    end_session,
    end_sessions,
    forget_login_attempts,
    publish_only,
    publish_session,
    record,
    release_login_attempt,
    reserve_login_attempt,
    start_session,
    write,
)
from identity.domain.errors import ForbiddenError
from identity.handlers import second_step
from misp_contracts.envelope import Actor
from misp_contracts.events.identity import (
    LoginBlockLifted,
    SessionEnded,
    UserLoggedIn,
    UserLoggedOut,
    UserLoginFailed,
    UserState,
)
from misp_platform.auth import sessions
from misp_platform.auth.sessions import session_hmac
from misp_platform.eventstore import Append
from misp_platform.server_settings import read_settings

BAD_CREDENTIALS = "Invalid username or password, try again"
SESSION_COOKIE = sessions.SESSION_COOKIE  # every service accepts it (misp_platform.auth)
SESSION_TTL = timedelta(hours=8)
MAX_USERNAME = 255


def blocked_message(expire: int) -> str:
    return (f"You have reached the maximum number of login attempts. Please wait {expire} "
            "seconds and try again.")


async def secure_auth_limits(engine: AsyncEngine) -> tuple[int, int]:
    """MISP's brute-force rule: `SecureAuth.amount` failures within `SecureAuth.expire`
    seconds block (IP, username)."""
    async with engine.connect() as conn:
        limits = await read_settings(conn, ["SecureAuth.amount", "SecureAuth.expire"])
    return int(limits["SecureAuth.amount"] or 5), int(limits["SecureAuth.expire"] or 300)


@dataclass(frozen=True)
class LoggedIn:
    user: UserState
    token: str


async def reserve_attempt(engine: AsyncEngine, ip: str, username: str, *, amount: int,
                           expire: int) -> tuple[int | None, int]:
    """`(attempt id, attempts counted before it)`; the id is None when the pair is blocked."""
    async with engine.begin() as conn:
        return await reserve_login_attempt(conn, ip, username, amount=amount, expire=expire)


def actor_of(user: UserState | None, ip: str | None, request_id: str | None) -> Actor:
    if user is None:
        return Actor(email="SYSTEM", org_name="SYSTEM", client_ip=ip, request_id=request_id)
    return Actor(user_id=user.id, email=user.email, org_id=user.org_id, client_ip=ip,
                 request_id=request_id)


async def login(engine: AsyncEngine, *, username: str, password: str, ip: str,
                user_agent: str | None, pepper: str,
                request_id: str | None = None) -> LoggedIn | second_step.SecondStep:
    """A new session (its token's peppered HMAC stored and published, never the token); or,
    when the user must give a TOTP code or enrol one first, a pending login
    (identity.handlers.second_step) and no session."""
    username = username.strip().lower()[:MAX_USERNAME]
    amount, expire = await secure_auth_limits(engine)
    attempt_id, counted = await reserve_attempt(engine, ip, username, amount=amount,
                                                 expire=expire)
    async with engine.connect() as conn:
        loaded = await queries.get_user_by_email(conn, username)
        stored = await queries.password_hash(conn, loaded.state.id) if loaded else None
    user = loaded.state if loaded else None
    if attempt_id is None:
        raise ForbiddenError(blocked_message(expire))
    good = await verify_password(stored, password) and user is not None
    if not good or user is None or user.disabled:
        title = (f"Failed login attempt using username {username} from IP: {ip}."
                 if user is None or not user.disabled else "Login attempt by disabled user.")
        blocked = counted + 1 >= amount
        if blocked:
            title += " Blocked against bruteforcing."
        async with engine.begin() as conn:
            await publish_only(conn, UserLoginFailed(
                title=title, username=username, user_id=user.id if user else 0,
                email=user.email if user else None, org_id=user.org_id if user else None,
                ip=ip, user_agent=user_agent, blocked=blocked),
                actor=actor_of(user, ip, request_id), key=loaded.stream_id if loaded else None)
        raise ForbiddenError(BAD_CREDENTIALS)
    step = await second_step.second_step_of(engine, user)
    if step is not None:
        token = await second_step.open_challenge(engine, user, step, attempt_id=attempt_id, ip=ip,
                                          user_agent=user_agent, pepper=pepper)
        return second_step.SecondStep(user=user, token=token, purpose=step)
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> None:
        await begin_session(conn, user, token, attempt_id=attempt_id, ip=ip,
                            user_agent=user_agent, pepper=pepper, request_id=request_id,
                            now=now)

    await write(engine, work)
    return LoggedIn(user=user, token=token)


async def begin_session(conn: AsyncConnection, user: UserState, token: str, *,
                        attempt_id: int | None, ip: str, user_agent: str | None, pepper: str,
                        request_id: str | None, now: datetime) -> None:
    """The login's writes: its counted attempt released, the session stored and published (by
    its token's HMAC), and MISP's login entry on the user's stream."""
    current = await queries.get_user(conn, user.id)
    if current is None:
        raise ForbiddenError(BAD_CREDENTIALS)
    await release_login_attempt(conn, attempt_id)
    await start_session(conn, session_hmac=session_hmac(pepper, token), user_id=user.id,
                        expires_at=now + SESSION_TTL, ip=ip,
                        user_agent=(user_agent or "")[:512],
                        actor=actor_of(user, ip, request_id), stream_id=current.stream_id)
    await record(conn, [Append(
        stream_id=current.stream_id, stream_type="user", expected_version=current.version,
        events=(UserLoggedIn(title=f"Successful login: {user.email}", user_id=user.id,
                             email=user.email, org_id=user.org_id, ip=ip,
                             user_agent=user_agent, at=now),),
        actor=actor_of(user, ip, request_id))])


async def session_user(engine: AsyncEngine, pepper: str, token: str | None) -> UserState | None:
    if not token:
        return None
    async with engine.connect() as conn:
        user_id = await queries.session_user_id(conn, session_hmac(pepper, token),
                                                 datetime.now(UTC))
        if user_id is None:
            return None
        loaded = await queries.get_user(conn, int(user_id))
    return None if loaded is None or loaded.state.disabled else loaded.state


async def logout(engine: AsyncEngine, pepper: str, token: str | None, *, ip: str | None,
                 request_id: str | None = None) -> bool:
    if not token:
        return False
    digest = session_hmac(pepper, token)
    async with engine.begin() as conn:
        user_id = await end_session(conn, digest)
        if user_id is None:
            return False
        loaded = await queries.get_user(conn, int(user_id))
        user = loaded.state if loaded else None
        actor = actor_of(user, ip, request_id)
        key = loaded.stream_id if loaded else None
        await publish_only(conn, UserLoggedOut(
            title=f"User logout: {user.email if user else user_id}", user_id=int(user_id),
            email=user.email if user else None, org_id=user.org_id if user else None, ip=ip),
            actor=actor, key=key)
        await publish_session(conn, SessionEnded(session_hmac=digest, user_id=int(user_id),
                                                 reason="logout"), actor=actor, key=key)
    return True


async def force_logout(engine: AsyncEngine, actor: Actor, user: UserState,
                       stream_id: str) -> int:
    """An administrator ends every session of a user."""
    async with engine.begin() as conn:
        ended = await end_sessions(conn, user.id, reason="forced_logout", actor=actor,
                                   stream_id=stream_id)
        await publish_only(conn, UserLoggedOut(
            title=f"Forced logout of user {user.id} ({user.email}): {ended} session(s)",
            user_id=user.id, email=user.email, org_id=user.org_id, ip=actor.client_ip,
            forced=True, sessions=ended), actor=actor, key=stream_id)
    return ended


async def lift_block(engine: AsyncEngine, actor: Actor, *, username: str,
                     ip: str | None) -> int:
    """Forget the counted attempts of (ip, username), or of the username from every IP."""
    username = username.strip().lower()
    async with engine.begin() as conn:
        lifted = await forget_login_attempts(conn, username, ip)
        await publish_only(conn, LoginBlockLifted(
            title=f"Login block lifted for {username}" + (f" from IP {ip}" if ip else ""),
            username=username, blocked_ip=ip, ip=actor.client_ip), actor=actor)
    return lifted
