"""Whether a login whose password was right needs a second step, as MISP decides it, and the
pending login that waits for it.

MISP asks for a code whenever the user has a TOTP secret (unless `Security.otp_disabled`); with
`Security.otp_required` a user without one must enrol first, unless their role has
`perm_skip_otp` (the permission does nothing else). API keys are never asked for a code. The
pending login is a random token in an HttpOnly cookie, stored as its peppered HMAC, good for a
few minutes and a few codes; it is no session: no service but identity's login steps accepts it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters import queries, totp_store
from identity.adapters.store import release_login_attempt
from misp_contracts.events.identity import UserState
from misp_platform.auth.sessions import session_hmac
from misp_platform.server_settings import read_settings

OTP_COOKIE = "MISP-otp"
OTP = "otp"  # the user gives a code (users/otp)
ENROL = "totp_new"  # the user must enrol a secret first (users/totp_new)
PATHS = {OTP: "/users/otp", ENROL: "/users/totp_new"}
CHALLENGE_TTL = {OTP: timedelta(minutes=5), ENROL: timedelta(minutes=15)}
MAX_ATTEMPTS = 5
LOGIN_EXPIRED = "Your login has expired or was used up. Please log in again."
NO_PENDING_LOGIN = "No login waits for a one-time password. Please log in first."
CODE_NEEDED = "A one-time password (OTP) is needed to complete the login."
ENROLMENT_NEEDED = ("This instance requires two-factor authentication: set up a TOTP to "
                    "complete the login.")
OTP_SETTINGS = ("Security.otp_required", "Security.otp_issuer", "Security.otp_disabled",
                "MISP.org")


@dataclass(frozen=True)
class SecondStep:
    """A login that waits for a code (`purpose` "otp") or an enrolment ("totp_new")."""

    user: UserState
    token: str
    purpose: str

    @property
    def message(self) -> str:
        return CODE_NEEDED if self.purpose == OTP else ENROLMENT_NEEDED


async def otp_settings(conn: AsyncConnection) -> dict[str, Any]:
    """The settings that decide a login's second step and its tokens' issuer."""
    return await read_settings(conn, OTP_SETTINGS)


async def second_step_of(engine: AsyncEngine, user: UserState) -> str | None:
    """"otp", "totp_new" or None (the password is enough), as MISP's login decides."""
    async with engine.connect() as conn:
        settings = await otp_settings(conn)
        if settings["Security.otp_disabled"]:
            return None
        if await totp_store.active_totp(conn, user.id) is not None:
            return OTP
        if not settings["Security.otp_required"]:
            return None
        role = await queries.get_role(conn, user.role_id)
    return None if role is not None and role.state.perm_skip_otp else ENROL


def challenge_hmac(pepper: str, token: str) -> str:
    """What identity keeps of a pending login's token (the sessions' HMAC, another use)."""
    return session_hmac(pepper, "otp\x00" + token)


async def open_challenge(engine: AsyncEngine, user: UserState, purpose: str, *,
                         attempt_id: int | None, ip: str, user_agent: str | None,
                         pepper: str, now: datetime | None = None) -> str:
    """A pending login for `user` (its token; the password's counted attempt released, as a
    right password is no failure)."""
    token = secrets.token_urlsafe(32)
    at = now or datetime.now(UTC)
    async with engine.begin() as conn:
        await release_login_attempt(conn, attempt_id)
        await totp_store.purge_challenges(conn, at)
        await totp_store.open_challenge(
            conn, token_hmac=challenge_hmac(pepper, token), user_id=user.id, purpose=purpose,
            expires_at=at + CHALLENGE_TTL[purpose], attempts=MAX_ATTEMPTS, ip=ip,
            user_agent=(user_agent or "")[:512])
    return token
