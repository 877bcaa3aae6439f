"""Browser sessions: the cookie identity's `users/login` sets, accepted by every service.

A session token is known by its peppered HMAC only (the authkeys' HMAC, auth/keys.py): identity
stores and publishes that, every service's principals projection holds it. A request that
authenticates by the cookie and changes something (any method but GET, HEAD, OPTIONS) must
also send `X-CSRF-Token: csrf_token(pepper, token)`: a page of another site can make the browser
send the cookie, never read the token (identity's `GET /api/v1/identity/session` gives it).
"""

from __future__ import annotations

import hmac

from misp_platform.auth.keys import authkey_hmac

SESSION_COOKIE = "MISP-session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Longer cookies are nobody's session (identity's tokens are 43 characters): not even hashed.
MAX_TOKEN_LENGTH = 256

CSRF_REFUSED = ("Invalid or missing CSRF token: a request by a browser session that changes "
                "something must send the X-CSRF-Token header.")
CHANGE_PASSWORD_FIRST = "You need to change your password."

# What a session whose user must change their password may still call (MISP forces its change
# page): who they are, and the change itself. identity's session and logout endpoints read the
# cookie themselves.
CHANGE_PW_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/users/view/me"),
    ("HEAD", "/users/view/me"),
    ("POST", "/users/change_pw"),
})


def session_hmac(pepper: str, token: str) -> str:
    """What identity stores and publishes of a session token, and what services look up."""
    return authkey_hmac(pepper, token)


def csrf_token(pepper: str, token: str) -> str:
    """The CSRF token of a session: an HMAC of the session token in its own domain, so it
    differs from the session's HMAC that events carry."""
    return authkey_hmac(pepper, "csrf\x00" + token)


def csrf_valid(pepper: str, token: str, presented: str | None) -> bool:
    """Whether `presented` is the session's CSRF token (compared in constant time)."""
    if not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), csrf_token(pepper, token).encode())


def needs_csrf(method: str) -> bool:
    return method.upper() not in SAFE_METHODS


def allowed_before_password_change(method: str, path: str) -> bool:
    """Whether a session whose user must change their password may make this call."""
    return (method.upper(), path.rstrip("/")) in CHANGE_PW_ALLOWED
