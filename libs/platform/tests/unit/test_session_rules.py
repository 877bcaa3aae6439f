"""Browser sessions without I/O: the session HMAC, the CSRF token, MISP's checks on a looked-up
session, and what a user who must change their password may still call."""

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from misp_contracts.events.identity import RoleState
from misp_platform.auth.dependency import (
    AUTH_FAILED,
    USER_DISABLED,
    Principal,
    evaluate_session,
)
from misp_platform.auth.keys import authkey_hmac
from misp_platform.auth.sessions import (
    allowed_before_password_change,
    csrf_token,
    csrf_valid,
    needs_csrf,
    session_hmac,
)

TOKEN = "Zx8-_q" * 7 + "A"  # the shape of secrets.token_urlsafe(32): 43 characters
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ROLE = RoleState(id=3, name="User", perm_auth=False, perm_add=True, permission=1)


def test_a_session_is_known_by_the_authkeys_peppered_hmac_of_its_token() -> None:
    assert session_hmac("pepper", TOKEN) == authkey_hmac("pepper", TOKEN)
    assert session_hmac("pepper", TOKEN) != session_hmac("other", TOKEN)
    assert TOKEN not in session_hmac("pepper", TOKEN)


def test_the_csrf_token_is_a_peppered_hmac_of_its_own_domain() -> None:
    token = csrf_token("pepper", TOKEN)
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert token == csrf_token("pepper", TOKEN)
    assert token != csrf_token("other", TOKEN)
    assert token != csrf_token("pepper", TOKEN[:-1] + "B")
    # Not the value the session events carry, nor the token itself.
    assert token != session_hmac("pepper", TOKEN) and TOKEN not in token


def test_only_the_sessions_own_csrf_token_is_valid() -> None:
    good = csrf_token("pepper", TOKEN)
    assert csrf_valid("pepper", TOKEN, good)
    assert csrf_valid("pepper", TOKEN, f" {good} ")
    assert not csrf_valid("pepper", TOKEN, None)
    assert not csrf_valid("pepper", TOKEN, "")
    assert not csrf_valid("pepper", TOKEN, good[:-1])
    assert not csrf_valid("pepper", TOKEN, session_hmac("pepper", TOKEN))
    assert not csrf_valid("pepper", TOKEN, csrf_token("pepper", TOKEN + "x"))
    assert not csrf_valid("pepper", TOKEN, "é" * 64)


def test_every_method_but_get_head_and_options_needs_the_csrf_token() -> None:
    assert [m for m in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "get")
            if needs_csrf(m)] == ["POST", "PUT", "PATCH", "DELETE"]


def test_a_user_who_must_change_the_password_may_see_themself_and_change_it_only() -> None:
    assert allowed_before_password_change("GET", "/users/view/me")
    assert allowed_before_password_change("POST", "/users/change_pw")
    assert not allowed_before_password_change("GET", "/users/change_pw")
    assert not allowed_before_password_change("GET", "/users/view/1")
    assert not allowed_before_password_change("GET", "/organisations/index")
    assert not allowed_before_password_change("POST", "/users/edit/me")


def _row(**overrides: object) -> SimpleNamespace:
    values: dict[str, object] = dict(
        session_hmac="h", expires_at=NOW + timedelta(hours=1), user_id=5, email="u@x.test",
        org_id=2, disabled=False, change_pw=False, user_expiration=None,
        role_state=ROLE.model_dump(mode="json"), org_name="ORG")
    values.update(overrides)
    return SimpleNamespace(**values)


def test_a_live_session_gives_its_users_whole_role_without_perm_auth() -> None:
    principal = evaluate_session(_row(), "h", ip="10.0.0.1", now=NOW.timestamp())
    assert isinstance(principal, Principal)
    assert (principal.user_id, principal.org_id, principal.org_name) == (5, 2, "ORG")
    assert principal.authkey_id is None and not principal.read_only and principal.by_session
    assert principal.has("perm_add") and not principal.has("perm_auth")
    assert principal.actor().authkey_id is None


def test_an_unknown_expired_or_disabled_session_fails_with_misps_messages() -> None:
    now = NOW.timestamp()
    unknown = evaluate_session(None, "abc", ip=None, now=now)
    expired = evaluate_session(_row(expires_at=NOW), "abc", ip=None, now=now)
    disabled = evaluate_session(_row(disabled=True), "abc", ip=None, now=now)
    old_user = evaluate_session(_row(user_expiration=NOW - timedelta(seconds=1)), "abc",
                                ip=None, now=now)
    no_role = evaluate_session(_row(role_state=None), "abc", ip=None, now=now)
    outcomes = [unknown, expired, disabled, old_user, no_role]
    assert not any(isinstance(o, Principal) for o in outcomes)
    assert [o.reason for o in outcomes] == [  # type: ignore[union-attr]
        "unknown_session", "expired_session", "disabled_user", "expired_user",
        "unknown_session"]
    assert [o.message for o in outcomes] == [  # type: ignore[union-attr]
        AUTH_FAILED, AUTH_FAILED, USER_DISABLED, AUTH_FAILED, AUTH_FAILED]
    # Named by the session's HMAC (for the throttle), never by a token.
    assert all(o.key == "session:abc" for o in outcomes)  # type: ignore[union-attr]


def test_a_session_of_a_user_who_must_change_the_password_says_so() -> None:
    principal = evaluate_session(_row(change_pw=True), "h", ip=None, now=NOW.timestamp())
    assert isinstance(principal, Principal) and principal.change_pw
