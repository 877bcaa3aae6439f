"""The SQL of TOTP login (migration 0013): active secrets, secrets being enrolled and the
pending logins waiting for their second step. Secrets are stored sealed
(identity.adapters.totp_secrets), pending logins by their token's peppered HMAC."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.tables import login_challenge, totp_enrolment, user_totp


@dataclass(frozen=True)
class ActiveTotp:
    sealed: str
    last_step: int


@dataclass(frozen=True)
class Challenge:
    user_id: int
    purpose: str
    attempts_left: int


async def active_totp(conn: AsyncConnection, user_id: int, *,
                      lock: bool = False) -> ActiveTotp | None:
    stmt = select(user_totp.c.secret, user_totp.c.last_step).where(
        user_totp.c.user_id == user_id)
    row = (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
    return None if row is None else ActiveTotp(row.secret, int(row.last_step))


async def set_totp(conn: AsyncConnection, user_id: int, sealed: str, last_step: int) -> None:
    stmt = pg_insert(user_totp).values(user_id=user_id, secret=sealed, last_step=last_step)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[user_totp.c.user_id],
        set_={"secret": stmt.excluded.secret, "last_step": stmt.excluded.last_step}))


async def accept_step(conn: AsyncConnection, user_id: int, step: int) -> None:
    await conn.execute(update(user_totp).where(user_totp.c.user_id == user_id)
                       .values(last_step=step))


async def remove_totp(conn: AsyncConnection, user_id: int) -> bool:
    result = await conn.execute(delete(user_totp).where(user_totp.c.user_id == user_id))
    await conn.execute(delete(totp_enrolment).where(totp_enrolment.c.user_id == user_id))
    return bool(result.rowcount)


async def keep_enrolment(conn: AsyncConnection, user_id: int, sealed: str,
                         expires_at: datetime) -> None:
    """The user's secret being enrolled becomes this one (a new GET, a new secret)."""
    stmt = pg_insert(totp_enrolment).values(user_id=user_id, secret=sealed,
                                            expires_at=expires_at)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[totp_enrolment.c.user_id],
        set_={"secret": stmt.excluded.secret, "expires_at": stmt.excluded.expires_at}))


async def enrolment(conn: AsyncConnection, user_id: int, now: datetime) -> str | None:
    """The sealed secret being enrolled, unless it expired."""
    return (await conn.execute(select(totp_enrolment.c.secret).where(
        totp_enrolment.c.user_id == user_id, totp_enrolment.c.expires_at > now))).scalar()


async def end_enrolment(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(delete(totp_enrolment).where(totp_enrolment.c.user_id == user_id))


async def open_challenge(conn: AsyncConnection, *, token_hmac: str, user_id: int, purpose: str,
                         expires_at: datetime, attempts: int, ip: str,
                         user_agent: str) -> None:
    """A new pending login; the user's older ones end (one pending login per user)."""
    await conn.execute(delete(login_challenge).where(login_challenge.c.user_id == user_id))
    await conn.execute(pg_insert(login_challenge).values(
        token_hmac=token_hmac, user_id=user_id, purpose=purpose, expires_at=expires_at,
        attempts_left=attempts, ip=ip, user_agent=user_agent))


async def live_challenge(conn: AsyncConnection, token_hmac: str, now: datetime, *,
                         lock: bool = False) -> Challenge | None:
    """The pending login of this token, unless it expired or has no attempt left."""
    stmt = select(login_challenge.c.user_id, login_challenge.c.purpose,
                  login_challenge.c.attempts_left).where(
        login_challenge.c.token_hmac == token_hmac, login_challenge.c.expires_at > now,
        login_challenge.c.attempts_left > 0)
    row = (await conn.execute(stmt.with_for_update() if lock else stmt)).first()
    return None if row is None else Challenge(int(row.user_id), str(row.purpose),
                                              int(row.attempts_left))


async def spend_attempt(conn: AsyncConnection, token_hmac: str) -> None:
    await conn.execute(update(login_challenge).where(login_challenge.c.token_hmac == token_hmac)
                       .values(attempts_left=login_challenge.c.attempts_left - 1))


async def end_challenge(conn: AsyncConnection, token_hmac: str) -> None:
    await conn.execute(delete(login_challenge).where(login_challenge.c.token_hmac == token_hmac))


async def purge_challenges(conn: AsyncConnection, now: datetime) -> None:
    """Forget expired pending logins and enrolments."""
    await conn.execute(delete(login_challenge).where(login_challenge.c.expires_at <= now))
    await conn.execute(delete(totp_enrolment).where(totp_enrolment.c.expires_at <= now))
