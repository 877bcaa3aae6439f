"""The authenticated caller of a request and the FastAPI dependencies that produce and check it.

MISP's rules (API reference §1): the key comes from `X-MISP-AUTH` or `Authorization`, is matched by
its peppered HMAC in the principals projection (one query), and every refusal is a 403 with MISP's
message, recorded as an `AuthenticationFailed` event through this service's outbox. Before any
of that, an address or key the abuse detector blocked, or an address past this process's failure
budget, is answered 429 (auth/abuse.py).

A request without a key may present identity's browser session cookie instead (auth/sessions.py):
matched the same way by its HMAC, without MISP's perm_auth (its web login needs none), with a
CSRF token on unsafe methods, and only the password change while the user must change it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers
from starlette.types import Scope

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.auth import AuthenticationFailed, auth_topic
from misp_contracts.events.identity import LEVEL_FLAGS, PERM_FLAGS, RoleState
from misp_platform import metrics, outbox
from misp_platform.auth import abuse
from misp_platform.auth.cache import PrincipalCache
from misp_platform.auth.keys import authkey_hmac, is_well_formed, mask_authkey
from misp_platform.auth.principals import PRINCIPAL_TOPICS, lookup_authkeys, lookup_sessions
from misp_platform.auth.sessions import (
    CHANGE_PASSWORD_FIRST,
    CSRF_HEADER,
    CSRF_REFUSED,
    MAX_TOKEN_LENGTH,
    SESSION_COOKIE,
    allowed_before_password_change,
    csrf_valid,
    needs_csrf,
    session_hmac,
)
from misp_platform.client_address import client_address, parse_address, scope_client_address
from misp_platform.consistency import consistency_of
from misp_platform.misp.errors import NO_PERMISSION, Forbidden

log = structlog.get_logger("misp_platform.auth")

AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled "
               "user along in the Authorization header.")
USER_DISABLED = "Authentication failed. Your user account has been disabled."
IP_REFUSED = "It is not possible to use this Auth key from your IP address"

TITLE_MISSING = "Failed API authentication. No authkey was provided."
TITLE_BAD_LENGTH = "Failed authentication using an API key of incorrect length."
TITLE_SESSION_UNKNOWN = "Failed authentication using an unknown or ended session."
TITLE_CSRF = "Write attempt refused for a session without a valid CSRF token."

# What a read-only key keeps (MISP zeroes every other perm_*).
READ_ONLY_KEPT = frozenset({"perm_auth", "perm_audit"})
ROLE_PERMISSIONS: tuple[str, ...] = (*PERM_FLAGS, *LEVEL_FLAGS, "perm_full")
READ_METHODS = frozenset({"GET", "HEAD"})
# At most this many comma-separated keys are tried (one query in any case).
MAX_KEYS_PER_HEADER = 5

EXPIRATION_HEADER = "X-Auth-Key-Expiration"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user behind the key, their org and role, and from where."""

    user_id: int
    email: str
    org_id: int
    org_name: str | None
    role: RoleState
    authkey_id: int | None
    read_only: bool
    client_ip: str | None
    request_id: str | None = None
    authkey_expiration: int = 0  # unix, 0 = never
    change_pw: bool = False  # the user must change their password (a session may only do that)
    by_session: bool = False  # authenticated by identity's browser session cookie, not a key

    @property
    def is_site_admin(self) -> bool:
        return self.role.perm_site_admin

    @property
    def is_admin(self) -> bool:
        """MISP's `_isAdmin`: an org admin or a site admin."""
        return self.role.perm_admin or self.role.perm_site_admin

    @property
    def is_org_admin(self) -> bool:
        """An admin scoped to their own org (perm_admin without perm_site_admin)."""
        return self.role.perm_admin and not self.role.perm_site_admin

    def has(self, perm: str) -> bool:
        """The role's flag (`"perm_audit"`); a misspelt name is a bug, so it raises."""
        if perm not in RoleState.model_fields:
            raise ValueError(f"unknown permission: {perm}")
        return bool(getattr(self.role, perm))

    def actor(self) -> Actor:
        return Actor(user_id=self.user_id, email=self.email, org_id=self.org_id,
                     org_name=self.org_name, authkey_id=self.authkey_id,
                     client_ip=self.client_ip, request_id=self.request_id)


def read_only_role(role: RoleState) -> RoleState:
    """The role as a read-only key sees it: every perm_* off except perm_auth and perm_audit."""
    update: dict[str, Any] = {p: False for p in ROLE_PERMISSIONS if p not in READ_ONLY_KEPT}
    update["permission"] = 0
    return role.model_copy(update=update)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused: the 403 message and what the audit log records."""

    reason: str  # missing | bad_length | unknown | expired | ip_refused | disabled_user |
    # expired_user | no_perm_auth | read_only | unknown_session | expired_session | csrf
    message: str
    title: str
    # the presented key: only its first/last 4 characters leave here; for a session, a name of
    # its HMAC (for the hourly throttle only; never recorded)
    key: str | None = None
    authkey_id: int | None = None
    user_id: int | None = None
    email: str | None = None
    org_name: str | None = None


class AuthenticationError(Forbidden):
    """A refused authentication (403, MISP's message), carrying the failure to record."""

    def __init__(self, failure: AuthFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


# ---- pure helpers -----------------------------------------------------------------------------


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request presents: `X-MISP-AUTH` wins over `Authorization`; a comma-separated list
    is allowed; a `Basic ...` value counts as no key."""
    value = headers.get("x-misp-auth") or ""
    if not value.strip():
        value = headers.get("authorization") or ""
    value = value.strip()
    if not value or value.startswith("Basic"):
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def ip_allowed(ip: str | None, allowed: Iterable[str]) -> bool:
    """Whether `ip` is inside one of the CIDRs (bare addresses allowed; bad entries ignored)."""
    if ip is None:
        return False
    address = parse_address(ip)
    if address is None:
        return False
    for entry in allowed:
        try:
            network = ipaddress.ip_network(str(entry).strip(), strict=False)
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return True
    return False


def expiration_iso(expiration: int) -> str:
    return datetime.fromtimestamp(expiration, UTC).isoformat()


# A cached principal row keeps its role's state (the same object on every request): its
# validated RoleState (frozen) is kept beside it, not made again per request.
_ROLES: dict[int, tuple[Any, RoleState]] = {}
_ROLES_KEPT = 1_000


def role_of(state: Any) -> RoleState:
    """The RoleState of a principal row's `role_state`, validated once per object read."""
    kept = _ROLES.get(id(state))
    if kept is not None and kept[0] is state:
        return kept[1]
    role = RoleState.model_validate(state)
    if len(_ROLES) >= _ROLES_KEPT:
        _ROLES.clear()
    _ROLES[id(state)] = (state, role)
    return role


def evaluate(row: Any, key: str, *, ip: str | None, now: float) -> Principal | AuthFailure:
    """MISP's checks on one looked-up key, in MISP's order; `row` is None for an unknown key."""
    unknown = AuthFailure("unknown", AUTH_FAILED,
                          f"Failed authentication using API key ({mask_authkey(key)})", key=key)
    if row is None:
        return unknown
    who = {"key": key, "authkey_id": row.authkey_id, "user_id": row.user_id, "email": row.email,
           "org_name": row.org_name}
    if row.expiration and row.expiration < now:
        return AuthFailure("expired", AUTH_FAILED,
                           f"Login attempt by expired auth key {row.authkey_id}.", **who)
    if row.allowed_ips and not ip_allowed(ip, row.allowed_ips):
        return AuthFailure(
            "ip_refused", IP_REFUSED,
            f"Login attempt from not allowed IP address {ip} for auth key {row.authkey_id}.",
            **who)
    if row.disabled:
        return AuthFailure("disabled_user", USER_DISABLED, "Login attempt by disabled user.",
                           **who)
    if row.user_expiration is not None and row.user_expiration.timestamp() < now:
        return AuthFailure("expired_user", AUTH_FAILED, "Login attempt by expired user.", **who)
    if row.role_state is None:
        return AuthFailure("no_perm_auth", unknown.message, unknown.title, **who)
    role = role_of(row.role_state)
    if not role.perm_auth:
        return AuthFailure("no_perm_auth", unknown.message, unknown.title, **who)
    if row.read_only:
        role = read_only_role(role)
    return Principal(user_id=row.user_id, email=row.email, org_id=row.org_id,
                     org_name=row.org_name, role=role, authkey_id=row.authkey_id,
                     read_only=bool(row.read_only), client_ip=ip,
                     authkey_expiration=int(row.expiration or 0), change_pw=bool(row.change_pw))


def session_key(digest: str) -> str:
    """How a session is named in caches and the failure throttle: its HMAC, never its token."""
    return f"session:{digest}"


def evaluate_session(row: Any, digest: str, *, ip: str | None,
                     now: float) -> Principal | AuthFailure:
    """MISP's checks on one looked-up session (`row` None: unknown or ended). No perm_auth: MISP's
    web login needs none; the role is the user's whole role."""
    key = session_key(digest)
    unknown = AuthFailure("unknown_session", AUTH_FAILED, TITLE_SESSION_UNKNOWN, key=key)
    if row is None:
        return unknown
    who = {"key": key, "user_id": row.user_id, "email": row.email, "org_name": row.org_name}
    if row.expires_at.timestamp() <= now:
        return AuthFailure("expired_session", AUTH_FAILED,
                           "Login attempt with an expired session.", **who)
    if row.disabled:
        return AuthFailure("disabled_user", USER_DISABLED, "Login attempt by disabled user.",
                           **who)
    if row.user_expiration is not None and row.user_expiration.timestamp() < now:
        return AuthFailure("expired_user", AUTH_FAILED, "Login attempt by expired user.", **who)
    if row.role_state is None:
        return AuthFailure("unknown_session", AUTH_FAILED, TITLE_SESSION_UNKNOWN, **who)
    return Principal(user_id=row.user_id, email=row.email, org_id=row.org_id,
                     org_name=row.org_name, role=RoleState.model_validate(row.role_state),
                     authkey_id=None, read_only=False, client_ip=ip,
                     change_pw=bool(row.change_pw), by_session=True)


def session_token(request: Request) -> str | None:
    """The session cookie's value, if any."""
    return request.cookies.get(SESSION_COOKIE) or None


# ---- the dependency ---------------------------------------------------------------------------


def _state(request: Request) -> dict[str, Any]:
    return request.scope.setdefault("state", {})


def _request_id(request: Request) -> str | None:
    value = _state(request).get("request_id")
    return value if isinstance(value, str) else None


# MISP logs the same failing key at most once an hour (its redis `auth_fail_throttling` key)
# unless `Security.log_each_individual_auth_fail`. Kept per process: N API processes of a service
# log a key at most N times an hour.
AUTH_FAIL_THROTTLE_S = 3600.0
_THROTTLE_MAX_KEYS = 10_000


def _throttled(request: Request, failure: AuthFailure) -> bool:
    """True when this key's failure was already recorded within the hour (then skip it)."""
    if failure.key is None or getattr(request.app.state, "log_each_individual_auth_fail", False):
        return False
    seen: dict[str, float] | None = getattr(request.app.state, "auth_fail_throttle", None)
    if seen is None:
        seen = request.app.state.auth_fail_throttle = {}
    digest = hashlib.sha256(f"{failure.reason}:{failure.key}".encode()).hexdigest()
    now = time.monotonic()
    if seen.get(digest, 0.0) > now:
        return True
    if len(seen) >= _THROTTLE_MAX_KEYS:
        for name in [k for k, until in seen.items() if until <= now]:
            del seen[name]
        if len(seen) >= _THROTTLE_MAX_KEYS:
            seen.clear()
    seen[digest] = now + AUTH_FAIL_THROTTLE_S
    return False


async def record_failure(engine: AsyncEngine, service: str, failure: AuthFailure,
                         request: Request, ip: str | None) -> None:
    """Queue `AuthenticationFailed` in its own transaction; the raw key never leaves here."""
    metrics.auth_failures_total.labels(failure.reason).inc()
    if _throttled(request, failure):
        return
    state = _state(request)
    key = failure.key
    event = AuthenticationFailed(
        reason=failure.reason, title=failure.title,
        key_start=key[:4] if key and is_well_formed(key) else None,
        key_end=key[-4:] if key and is_well_formed(key) else None,
        authkey_id=failure.authkey_id, user_id=failure.user_id, email=failure.email,
        org_name=failure.org_name, ip=ip,
        http_method=state.get("original_method") or request.method,
        target=state.get("original_path") or request.url.path,
        user_agent=request.headers.get("user-agent"),
    )
    request_id = _request_id(request)
    correlation = state.get("correlation_id")
    envelope = Envelope(
        source=f"/{service}", type=AuthenticationFailed.type,
        correlationid=correlation if isinstance(correlation, str) else request_id,
        actor=Actor(email="SYSTEM", org_name="SYSTEM", client_ip=ip, request_id=request_id),
        data=event.model_dump(mode="json"),
    )
    log.warning("auth.failed", reason=failure.reason, authkey_id=failure.authkey_id,
                user_id=failure.user_id, client_ip=ip)
    try:
        async with engine.begin() as conn:
            await outbox.enqueue(conn, envelope, topic=auth_topic(service), key=None)
    except Exception:  # the 403 still goes out; the database trouble is for the operators
        log.exception("auth.failure_not_recorded", reason=failure.reason)


async def _refuse(request: Request, failure: AuthFailure, ip: str | None) -> AuthenticationError:
    abuse.failed(request, ip)
    app_state = request.app.state
    await record_failure(app_state.engine, app_state.settings.service, failure, request, ip)
    return AuthenticationError(failure)


def _read_engine(request: Request) -> AsyncEngine:
    """The app's engine in autocommit mode: a lone SELECT needs no BEGIN/ROLLBACK round trips."""
    state = request.app.state
    engine: AsyncEngine = state.engine
    cached = getattr(state, "auth_read_engine", None)
    if cached is None or cached[0] is not engine:
        cached = (engine, engine.execution_options(isolation_level="AUTOCOMMIT"))
        state.auth_read_engine = cached
    read_engine: AsyncEngine = cached[1]
    return read_engine


async def _principal_rows(request: Request, hashes: list[str], *,
                          fresh: bool = False, sessions: bool = False) -> dict[str, Any]:
    """The principal rows of these key hashes (of these session HMACs with `sessions`): from
    the cache, else one indexed query (always the query when `fresh`: the cache may not have
    heard of a change yet)."""
    cache: PrincipalCache | None = None if fresh else getattr(
        request.app.state, "principal_cache", None)
    name: Callable[[str], str] = session_key if sessions else str
    rows: dict[str, Any] = {}
    missing = []
    for digest in hashes:
        row = cache.get(name(digest)) if cache is not None else None
        if row is None:
            missing.append(digest)
        else:
            rows[digest] = row
    if missing:
        generation = cache.generation if cache is not None else 0
        engine = _read_engine(request)

        async def read() -> Sequence[Any]:
            async with engine.connect() as conn:
                return await (lookup_sessions if sessions else lookup_authkeys)(conn, missing)

        found = await read() if cache is None else await cache.shared(
            ",".join(map(name, missing)), read)
        for row in found:
            digest = row.session_hmac if sessions else row.key_hmac
            rows[digest] = row
            if cache is not None:
                cache.put(name(digest), row, generation)
    return rows


def _first_principal(rows: Mapping[str, Any], candidates: list[str], hashes: list[str],
                     ip: str | None) -> Principal | AuthFailure:
    """The first key that passes MISP's checks, else the first key's failure."""
    now = time.time()
    first_failure: AuthFailure | None = None
    for key, digest in zip(candidates, hashes, strict=True):
        outcome = evaluate(rows.get(digest), key, ip=ip, now=now)
        if isinstance(outcome, Principal):
            return outcome
        first_failure = first_failure or outcome
    assert first_failure is not None
    return first_failure


async def _caught_up(request: Request) -> bool:
    """Wait until this service's principals projection holds what Kafka holds (True), when
    read-your-writes is on; False when it is off."""
    consistency = consistency_of(request.app)
    if consistency is None:
        return False
    settings = request.app.state.settings
    await consistency.caught_up(settings.principals_group, PRINCIPAL_TOPICS)
    return True


async def authenticate(request: Request) -> Principal:
    """FastAPI dependency: the request's principal, or a 403 in MISP's words (recorded)."""
    return await _authenticate(request, fresh=False)


async def _authenticate(request: Request, *, fresh: bool) -> Principal:
    """`fresh`: read the projection itself, not this process's cache (or the request's). A key,
    when presented, wins over the session cookie."""
    state = _state(request)
    cached = state.get("principal")
    if isinstance(cached, Principal) and not fresh:
        return cached
    ip = client_address(request)
    keys = presented_keys(request.headers)
    abuse.check(request, ip, keys)
    token = None if keys else session_token(request)
    if token is not None:
        principal = await _by_session(request, token, ip, fresh=fresh)
    else:
        principal = await _by_key(request, keys, ip, fresh=fresh)

    settle(state, principal)
    return principal


def settle(state: dict[str, Any], principal: Principal) -> None:
    """The request's principal in its state, its key's expiry in the answer's headers
    (`X-Auth-Key-Expiration`, sent by the request context), who it is in the logs."""
    state["principal"] = principal
    if principal.authkey_expiration:
        state.setdefault("response_headers", {})[EXPIRATION_HEADER] = expiration_iso(
            principal.authkey_expiration)
    structlog.contextvars.bind_contextvars(user_id=principal.user_id, org_id=principal.org_id,
                                           authkey_id=principal.authkey_id)


async def admitted_principal(scope: Scope) -> Principal | None:
    """The principal of a request with an authkey when MISP's checks admit it, from this
    process's cache (a key it misses read once for every request that misses it at the same
    time): the first presented key that passes, no abuse limit in the way, no write with a
    read-only key. None when the dependency must decide (a refusal to record, a 429, a session
    cookie, a database error): a lean path answers only what the dependency would answer the
    same way, and hands the request to it otherwise. Nothing is settled (`settle`)."""
    app = scope["app"]
    cache: PrincipalCache | None = getattr(app.state, "principal_cache", None)
    if cache is None or not cache.listening:
        return None
    keys = presented_keys(Headers(scope=scope))
    candidates = list(dict.fromkeys(k for k in keys if is_well_formed(k)))[:MAX_KEYS_PER_HEADER]
    if not candidates:
        return None
    ip = scope_client_address(scope)
    guard = getattr(app.state, "abuse_guard", None)
    if isinstance(guard, abuse.AbuseGuard) and guard.refuses(ip, keys):
        return None
    pepper = app.state.settings.pepper.get_secret_value()
    hashes = [authkey_hmac(pepper, k) for k in candidates]
    rows = {digest: row for digest in hashes if (row := cache.get(digest)) is not None}
    if len(rows) < len(hashes):
        try:
            rows = await _principal_rows(Request(scope), hashes)
        except Exception:  # the dependency reads again and answers (MISP's 503)
            return None
    outcome = _first_principal(rows, candidates, hashes, ip)
    if isinstance(outcome, AuthFailure) or (
            outcome.read_only and scope.get("method") not in READ_METHODS):
        return None
    request_id = scope.get("state", {}).get("request_id")
    return replace(outcome, request_id=request_id if isinstance(request_id, str) else None)


async def _by_key(request: Request, keys: list[str], ip: str | None, *,
                  fresh: bool) -> Principal:
    if not keys:
        raise await _refuse(request, AuthFailure("missing", AUTH_FAILED, TITLE_MISSING), ip)
    candidates = list(dict.fromkeys(k for k in keys if is_well_formed(k)))[:MAX_KEYS_PER_HEADER]
    if not candidates:
        raise await _refuse(request, AuthFailure("bad_length", AUTH_FAILED, TITLE_BAD_LENGTH), ip)

    pepper = request.app.state.settings.pepper.get_secret_value()
    hashes = [authkey_hmac(pepper, k) for k in candidates]
    outcome = _first_principal(await _principal_rows(request, hashes, fresh=fresh), candidates,
                               hashes, ip)
    if isinstance(outcome, AuthFailure) and not fresh and await _caught_up(request):
        # A key or user this projection may not have heard of yet (created, enabled, given a
        # role a moment ago): decide again once it holds what Kafka holds.
        outcome = _first_principal(await _principal_rows(request, hashes, fresh=True),
                                   candidates, hashes, ip)
    if isinstance(outcome, AuthFailure):
        raise await _refuse(request, outcome, ip)
    principal = replace(outcome, request_id=_request_id(request))
    if principal.read_only and request.method not in READ_METHODS:
        raise await _refuse(request, AuthFailure(
            "read_only", NO_PERMISSION,
            f"Write attempt refused for read-only auth key {principal.authkey_id}.",
            key=candidates[0], authkey_id=principal.authkey_id, user_id=principal.user_id,
            email=principal.email, org_name=principal.org_name), ip)
    return principal


async def _by_session(request: Request, token: str, ip: str | None, *,
                      fresh: bool) -> Principal:
    """The session's principal; refused (recorded) when unknown, ended or expired, its user
    disabled or expired, or an unsafe method comes without its CSRF token. A user who must
    change their password may only do that (403, not recorded: no attack)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise await _refuse(request, AuthFailure("unknown_session", AUTH_FAILED,
                                                 TITLE_SESSION_UNKNOWN), ip)
    pepper = request.app.state.settings.pepper.get_secret_value()
    digest = session_hmac(pepper, token)

    async def decide(fresh: bool) -> Principal | AuthFailure:
        rows = await _principal_rows(request, [digest], fresh=fresh, sessions=True)
        return evaluate_session(rows.get(digest), digest, ip=ip, now=time.time())

    method = _state(request).get("original_method") or request.method

    def refused(outcome: Principal | AuthFailure) -> bool:
        return isinstance(outcome, AuthFailure) or (
            outcome.change_pw
            and not allowed_before_password_change(method, request.scope["path"]))

    outcome = await decide(fresh)
    if refused(outcome) and not fresh and await _caught_up(request):
        # A session started (or a password changed) a moment ago at identity: decide again
        # once this projection holds what Kafka holds.
        outcome = await decide(True)
    if isinstance(outcome, AuthFailure):
        raise await _refuse(request, outcome, ip)
    if refused(outcome):
        raise Forbidden(CHANGE_PASSWORD_FIRST)
    principal = replace(outcome, request_id=_request_id(request))
    if needs_csrf(method) and not csrf_valid(pepper, token, request.headers.get(CSRF_HEADER)):
        raise await _refuse(request, AuthFailure(
            "csrf", CSRF_REFUSED, TITLE_CSRF, key=session_key(digest),
            user_id=principal.user_id, email=principal.email, org_name=principal.org_name), ip)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


async def permitted(request: Request, principal: Principal,
                    allowed: Callable[[Principal], bool]) -> Principal:
    """`principal` if `allowed`; else, when the role or key may have changed a moment ago in
    identity, the principal as the caught-up projection has it, if that one is allowed; else
    MISP's 403 "You do not have permission ..."."""
    if allowed(principal):
        return principal
    if await _caught_up(request):
        principal = await _authenticate(request, fresh=True)
        if allowed(principal):
            return principal
    raise Forbidden(NO_PERMISSION)


async def require_site_admin(request: Request, principal: CurrentPrincipal) -> Principal:
    """Dependency: a site admin, else MISP's 403 "You do not have permission ..."."""
    return await permitted(request, principal, lambda p: p.is_site_admin)


async def require_admin(request: Request, principal: CurrentPrincipal) -> Principal:
    """Dependency: an org admin or a site admin (MISP's `perm_admin` ACL entries)."""
    return await permitted(request, principal, lambda p: p.is_admin)


def require_perm(*perms: str) -> Callable[[Request, Principal], Awaitable[Principal]]:
    """Dependency factory: every listed flag (site admins pass MISP's ACL regardless)."""
    unknown = [p for p in perms if p not in RoleState.model_fields]
    if unknown:
        raise ValueError(f"unknown permissions: {unknown}")

    async def dependency(request: Request, principal: CurrentPrincipal) -> Principal:
        return await permitted(request, principal, lambda p: p.is_site_admin or all(
            p.has(perm) for perm in perms))

    return dependency


SiteAdmin = Annotated[Principal, Depends(require_site_admin)]
Admin = Annotated[Principal, Depends(require_admin)]

