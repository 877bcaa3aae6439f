"""The permission matrix (issue 14): every route of every service, who may call it, checked
in-process against every kind of caller, and held against the gateway's route table.

The routes are read from the services' own apps, so a route added to a service fails
`test_every_route_has_one_declared_expectation` until MATRIX says who may call it, and fails the
gateway tests until routes.tsv routes it (or it is declared an operator path).

An expectation names the callers allowed among the kinds of conftest.CALLERS. The site admin's
read-only key is not listed: it may do what an anonymous caller may, and on GET what the Read
Only role may (MISP zeroes a read-only key's permissions but perm_auth and perm_audit, and
refuses its writes). A caller not allowed must get a 403 with MISP's refusal message; a caller
allowed must not get a 401 or a 403 (a 404 for a made-up id, a 400 for a harmless body are fine).
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from misp_platform.auth.dependency import AUTH_FAILED
from misp_platform.misp.errors import NO_PERMISSION
from misp_platform.testing import load_script

from .conftest import (
    ANONYMOUS,
    CALLERS,
    ORG_ADMIN,
    READ_ONLY,
    READ_ONLY_KEY,
    SERVICES,
    SITE_ADMIN,
    SYNC_USER,
    USER,
    Services,
    ServiceUnderTest,
    build_app,
    settings_of,
)

ROOT = Path(__file__).resolve().parents[2]


def _load_renderer() -> ModuleType:
    """deploy/gateway/render.py, the route table's one reader (it is a script, not a package)."""
    return load_script(ROOT / "deploy" / "gateway" / "render.py",
                       "gateway_render_for_permissions")


render = _load_renderer()
GATEWAY_SERVICES = render.load_services(render.DEFAULT_SERVICES)
GATEWAY_ROUTES = render.load_routes(render.DEFAULT_ROUTES, GATEWAY_SERVICES)
LOCATIONS = render.expand(GATEWAY_ROUTES, GATEWAY_SERVICES)
PUBLIC_LOCATIONS = [loc for loc in LOCATIONS if not loc.internal]

# Service paths the gateway does not route, and why.
OPS_PATHS = ("/health", "/ready", "/metrics", "/diagnostics")
NOT_VIA_GATEWAY = {
    **dict.fromkeys(OPS_PATHS, "an operator endpoint: the gateway exposes it as "
                               "/_svc/<service>/... to loopback clients only"),
    "/docs/oauth2-redirect": "FastAPI's Swagger OAuth2 redirect; no service takes OAuth2",
}
# Rows of routes.tsv that lead to no route of their service yet, and why.
GATEWAY_ROWS_WITHOUT_ROUTE: dict[str, str] = {}

# ---- who may call what --------------------------------------------------------------------

EVERYONE = frozenset({ANONYMOUS, USER, ORG_ADMIN, SITE_ADMIN, READ_ONLY, SYNC_USER})
USERS = EVERYONE - {ANONYMOUS}
ADMINS = frozenset({ORG_ADMIN, SITE_ADMIN})
SITE = frozenset({SITE_ADMIN})
NOBODY: frozenset[str] = frozenset()

REFUSALS = frozenset({NO_PERMISSION, AUTH_FAILED})
READ_METHODS = frozenset({"GET", "HEAD"})

MADE_UP = "987654321"  # an id that exists nowhere
PARAMS = {"queue": "nosuchqueue", "tab": "MISP", "name": "MISP.nosuch_setting",
          "action": "pause", "target": "987654322", "debug_type": "printAllFunctionNames",
          "content": "1"}

Body = dict[str, Any] | Callable[[ServiceUnderTest], dict[str, Any]]


@dataclass(frozen=True)
class Rule:
    """Who may call a route, and what to send so that an allowed caller is not refused."""

    allowed: frozenset[str]
    path: str | None = None  # the path to call; default: the template with made-up ids
    body: Body | None = None  # what a POST/PUT/DELETE sends (default {})
    refusal: str | None = None  # a refusal message of this route besides REFUSALS
    then: tuple[str, str] | None = None  # what the site admin sends afterwards, to undo


def _name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def _email(_: ServiceUnderTest | None = None) -> dict[str, Any]:
    return {"email": f"{_name('pm')}@example.test"}


def _login(service: ServiceUnderTest) -> dict[str, Any]:
    return dict(service.extra["login"])


def _strong_password(_: ServiceUnderTest) -> dict[str, Any]:
    return {"password": f"Pm-{secrets.token_hex(12)}!A1"}


HOMEPAGE = {"setting": "homepage", "value": {"path": "/events/index"}}


def common(service: str) -> dict[str, Rule]:
    """What the platform gives every service (misp_platform.app)."""
    ops = {f"GET {prefix}{path}": Rule(EVERYONE)
           for prefix in ("", f"/_svc/{service}") for path in OPS_PATHS}
    return {
        **ops,
        f"GET /api/v1/{service}/openapi": Rule(EVERYONE),
        f"GET /api/v1/{service}/docs": Rule(EVERYONE),
        "GET /docs/oauth2-redirect": Rule(EVERYONE),
        f"GET /api/v1/{service}": Rule(EVERYONE),
        f"GET /api/v1/{service}/whoami": Rule(USERS),
    }


MATRIX: dict[str, dict[str, Rule]] = {
    "identity": {
        "GET /users/view/{user_id}": Rule(USERS),
        "GET /admin/users/index": Rule(ADMINS),
        "GET /admin/users/view/{user_id}": Rule(ADMINS),
        "POST /admin/users/add": Rule(ADMINS, body=_email),
        "POST|PUT /admin/users/edit/{user_id}": Rule(ADMINS),
        "POST|PUT /users/edit/{user_id}": Rule(USERS),
        "POST|PUT /users/edit": Rule(USERS),
        "DELETE|POST /admin/users/delete/{user_id}": Rule(ADMINS),
        "POST /users/change_pw": Rule(USERS, body=_strong_password),
        # TOTP: a code completes a pending login (its cookie, never a key: without one, a 400);
        # enrolment is the user's own; an admin removes a user's TOTP (a made-up id: 404).
        "POST /users/otp": Rule(EVERYONE),
        "GET /users/totp_new": Rule(USERS),
        "POST /users/totp_new": Rule(USERS),
        "DELETE|POST /users/totp_delete/{user_id}": Rule(ADMINS),
        "GET /users/heartbeat": Rule(EVERYONE),
        "POST /users/resetauthkey/{user_id}": Rule(USERS),
        # Fetch GnuPG key: a made-up search or fingerprint is answered 404 before any key server.
        "GET /users/searchGpgKey/{email}": Rule(ADMINS),
        "GET /users/fetchPGPKey/{email}": Rule(ADMINS),
        "GET /users/fetchGpgKey/{fingerprint}": Rule(ADMINS),
        "GET /users/fetchPGPKey/{email}/{fingerprint}": Rule(ADMINS),
        "GET /users/statistics": Rule(USERS),
        "GET /users/statistics/{page}": Rule(USERS),
        # A site admin passes MISP's ACL, then gets its 405 (test_statistics_update_sync_pymisp).
        "GET /servers/createSync": Rule(SITE | {SYNC_USER}),
        "POST /users/register": Rule(EVERYONE, body=_email),
        "GET /users/registrations": Rule(SITE),
        "GET /users/registrations/index": Rule(SITE),
        "POST /users/acceptRegistrations/{registration_id}": Rule(SITE),
        "DELETE|POST /users/discardRegistrations/{registration_id}": Rule(SITE),
        "GET /userSettings/index": Rule(USERS),
        "POST /userSettings/setSetting": Rule(USERS, body=HOMEPAGE),
        "POST /userSettings/setSetting/{user_id}": Rule(
            USERS, path="/userSettings/setSetting/me", body=HOMEPAGE),
        "POST /userSettings/setSetting/{user_id}/{setting}": Rule(
            USERS, path="/userSettings/setSetting/me/homepage", body=HOMEPAGE),
        "GET|POST /userSettings/getSetting": Rule(USERS, body={"setting": "homepage"}),
        "GET|POST /userSettings/getSetting/{user_id}/{setting}": Rule(
            USERS, path="/userSettings/getSetting/me/homepage"),
        "DELETE|POST /userSettings/delete": Rule(USERS),
        "DELETE|POST /userSettings/delete/{setting_id}": Rule(USERS),
        "GET /roles/index": Rule(USERS),
        "GET /roles/view/{role_id}": Rule(USERS),
        "POST /admin/roles/add": Rule(SITE, body=lambda _: {"name": _name("role")}),
        "POST|PUT /admin/roles/edit/{role_id}": Rule(SITE),
        "DELETE|POST /admin/roles/delete/{role_id}": Rule(SITE),
        # MISP answers a GET "Invalid Role." (403) whoever asks; a POST without an id unsets
        # the default role, which the site admin sets back.
        "GET /admin/roles/set_default": Rule(NOBODY, refusal="Invalid Role."),
        "GET /admin/roles/set_default/{role_id}": Rule(NOBODY, refusal="Invalid Role."),
        "POST|PUT /admin/roles/set_default": Rule(
            SITE, then=("POST", "/admin/roles/set_default/3")),
        "POST|PUT /admin/roles/set_default/{role_id}": Rule(
            SITE, path="/admin/roles/set_default/3"),
        "POST /auth_keys/add": Rule(USERS),
        "POST /auth_keys/add/{user_id}": Rule(USERS),
        "GET /auth_keys/index": Rule(USERS),
        "GET /auth_keys/index/{user_id}": Rule(USERS),
        "GET /auth_keys/view/{key_id}": Rule(USERS),
        "POST|PUT /auth_keys/edit/{key_id}": Rule(USERS),
        "DELETE|POST /auth_keys/delete/{key_id}": Rule(USERS),
        "POST /users/login": Rule(EVERYONE, body=_login),
        "POST /users/logout": Rule(EVERYONE),  # GET: 405 (tests/e2e/test_https_gateway.py)
        "POST /users/forgot": Rule(EVERYONE, body=_email),
        # A reset link's token is the credential, never a key (a made-up one answers 404).
        "GET /users/password_reset/{token}": Rule(EVERYONE),
        "POST /users/password_reset/{token}": Rule(EVERYONE, body=_strong_password),
        # A session cookie names the caller here, never a key.
        "GET /api/v1/identity/session": Rule(NOBODY, refusal="Not logged in."),
        "POST /api/v1/identity/users/{user_id}/logout": Rule(ADMINS),
        "POST /api/v1/identity/bruteforce/lift": Rule(
            SITE, body={"username": "nobody@example.test"}),
    },
    "orgs": {
        "GET /organisations/index": Rule(USERS),
        "GET /organisations/view/{key}": Rule(USERS),
        "POST /admin/organisations/add": Rule(SITE, body=lambda _: {"name": _name("org")}),
        "POST|PUT /admin/organisations/edit/{key}": Rule(SITE),
        "DELETE|POST /admin/organisations/delete/{key}": Rule(SITE),
        "POST /admin/organisations/merge/{key}": Rule(SITE, body={"targetType": "0",
                                                                  "orgsLocal": MADE_UP}),
        "POST /admin/organisations/merge/{key}/{target}": Rule(SITE),
        "POST|PUT /api/v1/orgs/organisations/{key}/logo": Rule(SITE),
        "DELETE /api/v1/orgs/organisations/{key}/logo": Rule(SITE),
        "GET /api/v1/orgs/organisations/{key}/logo.png": Rule(USERS),
        "GET /api/v1/orgs/merges/{merge_id}": Rule(SITE),
        "GET /api/v1/orgs/countries": Rule(USERS),
    },
    "audit": {
        # Every seeded role has perm_audit (MISP's ACL for both indexes); the rows are scoped.
        "GET|POST /admin/logs/index": Rule(USERS, body={"model": "User"}),
        "GET|POST /admin/audit_logs/index": Rule(USERS, body={"model": "User"}),
        # Any user (MISP's "*"); the rows are those of an event the caller may see.
        "GET|POST /logs/event_index/{event_id}": Rule(USERS),
        "GET|POST /logs/event_index/{event_id}/{org}": Rule(USERS),
        "GET /api/v1/audit/top_api_users": Rule(SITE),
        "GET /api/v1/audit/verify": Rule(SITE),
        "GET /api/v1/audit/public-key": Rule(USERS),
    },
    "jobs": {
        "GET /jobs/index/{queue}": Rule(SITE),
        "GET /jobs/index": Rule(SITE),
        "GET /jobs/getProgress/{key}": Rule(SITE),
        "GET /tasks/index": Rule(SITE),
        "POST /tasks/setTask": Rule(SITE),
        "GET /servers/getWorkers": Rule(SITE),
        "POST /servers/startWorker/{queue}": Rule(SITE),
        "POST /servers/stopWorker/{pid}": Rule(SITE),
        "POST /servers/killAllWorkers": Rule(SITE),
        "POST /servers/restartWorkers": Rule(SITE),
        "POST /servers/restartDeadWorkers": Rule(SITE),
        "POST /servers/purgeSessions": Rule(SITE),
        "POST /api/v1/jobs/jobs": Rule(SITE, body={"job_type": "noop"}),
        "GET /api/v1/jobs/jobs/{job_id}": Rule(SITE),
        "POST /api/v1/jobs/jobs/{job_id}/cancel": Rule(SITE),
        "POST /api/v1/jobs/jobs/{job_id}/rerun": Rule(SITE),
        "GET /api/v1/jobs/dead": Rule(SITE),
        "POST /api/v1/jobs/tasks": Rule(SITE, body={"type": "noop", "timer": 24}),
        "POST /api/v1/jobs/tasks/{task_id}/{action}": Rule(SITE),
    },
    "mailer": {
        "POST /admin/users/email": Rule(ADMINS, body={"recipient": "1", "user_id": MADE_UP,
                                                      "subject": "pm", "body": "pm"}),
        "POST /admin/users/quickEmail/{user_id}": Rule(ADMINS, body={"subject": "pm",
                                                                     "body": "pm"}),
        # Any user (MISP's "*"); this product holds no events, so every call answers 404.
        "GET|POST|PUT /events/contact/{event_id}": Rule(USERS, body={"message": "pm"}),
        "GET /gpg.asc": Rule(EVERYONE),
        "GET /api/v1/mailer/mails": Rule(ADMINS),
        "GET /api/v1/mailer/requests/{request_id}": Rule(ADMINS),
    },
    "settings": {
        # Importers (sync users) and site admins; regexp managers too (no such role here).
        "POST /api/v1/settings/import-rules/apply": Rule(SITE | {SYNC_USER},
                                                         body={"value": "pm"}),
        "GET /servers/getVersion": Rule(USERS),
        "GET /servers/getPyMISPVersion": Rule(USERS),
        "GET /servers/serverSettings": Rule(SITE),
        "GET /servers/serverSettings/{tab}": Rule(SITE),
        "GET /servers/getSetting/{name}": Rule(SITE),
        "GET /servers/serverSettingsEdit/{name}": Rule(SITE),
        "POST /servers/serverSettingsEdit/{name}": Rule(SITE),
        "GET /servers/dbSchemaDiagnostic": Rule(SITE),
        "POST /servers/update": Rule(SITE),
        "GET /servers/queryACL/{debug_type}": Rule(SITE),
        "GET /servers/queryACL/{debug_type}/{content}": Rule(SITE),
        "GET /events/queryACL/{debug_type}": Rule(SITE),
        "GET /events/queryACL/{debug_type}/{content}": Rule(SITE),
        "GET /attributes/describeTypes": Rule(USERS),
        "GET /eventBlocklists/index": Rule(SITE),
        "POST /eventBlocklists/add": Rule(SITE, body=lambda _: {"uuids": [str(uuid.uuid4())]}),
        "POST /eventBlocklists/edit/{key}": Rule(SITE),
        "DELETE|POST /eventBlocklists/delete/{key}": Rule(SITE),
        "GET /orgBlocklists/index": Rule(SITE),
        "POST /orgBlocklists/add": Rule(SITE, body=lambda _: {"uuids": [str(uuid.uuid4())]}),
        "POST /orgBlocklists/edit/{key}": Rule(SITE),
        "DELETE|POST /orgBlocklists/delete/{key}": Rule(SITE),
        "GET /admin/regexp/index": Rule(SITE),
        "GET /admin/regexp/view/{entry_id}": Rule(SITE),
        "POST /admin/regexp/add": Rule(SITE, body=lambda _: {
            "regexp": f"/{_name('pm')}/", "replacement": "x"}),
        "POST /admin/regexp/edit/{entry_id}": Rule(SITE),
        "DELETE|POST /admin/regexp/delete/{entry_id}": Rule(SITE),
        "POST /admin/regexp/clean": Rule(SITE),
        "GET /admin/allowedlists/index": Rule(SITE),
        "GET /allowedlists/index": Rule(USERS),
        "POST /admin/allowedlists/add": Rule(SITE, body=lambda _: {"name": f"/{_name('pm')}/"}),
        "POST /admin/allowedlists/edit/{entry_id}": Rule(SITE, body={"name": "/pm/"}),
        "DELETE|POST /admin/allowedlists/delete/{entry_id}": Rule(SITE),
    },
}


def table(service: str) -> dict[str, Rule]:
    return {**common(service), **MATRIX[service]}


def split_key(key: str) -> tuple[list[str], str]:
    methods, path = key.split(" ", 1)
    return methods.split("|"), path


def may_call(rule: Rule, caller: str, method: str) -> bool:
    if caller == READ_ONLY_KEY:
        return ANONYMOUS in rule.allowed or (method in READ_METHODS
                                             and READ_ONLY in rule.allowed)
    return caller in rule.allowed


def sample(template: str) -> str:
    """The template with made-up values in its parameters."""
    return re.sub(r"\{([^}:]+)(:[^}]*)?\}", lambda m: PARAMS.get(m.group(1), MADE_UP),
                  template)


# ---- the services' routes -----------------------------------------------------------------


def routes_of(app: FastAPI) -> set[tuple[str, str]]:
    """`(method, path template)` of every route of the app (HEAD only where there is no GET:
    every GET route answers HEAD, misp_platform.misp.params)."""
    out: set[tuple[str, str]] = set()
    for route in iter_route_contexts(app.routes):
        if route.path is None or not route.methods:
            continue
        methods = set(route.methods)
        if "GET" in methods:
            methods.discard("HEAD")
        out.update((method, route.path) for method in methods)
    return out


@pytest.fixture(scope="module")
def service_routes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[str, str]]]:
    """Each service's routes, from an app that is built but never started (nothing connects)."""
    out = {}
    for name in SERVICES:
        state_dir = tmp_path_factory.mktemp(name)
        settings = settings_of(name, database_url="postgresql+psycopg://unused@127.0.0.1/x",
                               pepper=secrets.token_hex(16), state_dir=str(state_dir))
        out[name] = routes_of(build_app(name, settings))
    return out


def _ops(path: str, service: str) -> str | None:
    """The operator path behind `path` ("/health" for "/_svc/orgs/health"), else None."""
    bare = path.removeprefix(f"/_svc/{service}")
    return bare if bare in OPS_PATHS else None


def test_every_service_of_the_deployment_is_in_the_matrix() -> None:
    assert set(SERVICES) == set(GATEWAY_SERVICES) == set(MATRIX)


def test_every_service_route_is_reachable_through_the_gateway(
        service_routes: dict[str, set[tuple[str, str]]]) -> None:
    problems = []
    for service, routes in service_routes.items():
        for _, template in sorted(routes):
            path = sample(template)
            public = render.resolve(PUBLIC_LOCATIONS, path)
            if template in NOT_VIA_GATEWAY:
                if public is not None:
                    problems.append(f"{service}: {template} is routed to {public}, though "
                                    f"{NOT_VIA_GATEWAY[template]}")
            elif template.startswith("/_svc/"):
                if public is not None or render.resolve(LOCATIONS, path) != service:
                    problems.append(f"{service}: {template} is not {service}'s loopback path")
            elif public != service:
                problems.append(f"{service}: {template} ({path}) goes to {public or 'a 404'}: "
                                "add it to deploy/gateway/routes.tsv")
    assert not problems, "\n".join(problems)


def test_every_gateway_route_leads_to_a_route_of_its_service(
        service_routes: dict[str, set[tuple[str, str]]]) -> None:
    problems = []
    for row in GATEWAY_ROUTES:
        own = render.expand([row])
        reached = [template for _, template in service_routes[row.service]
                   if render.resolve(own, sample(template)) == row.service
                   and render.resolve(LOCATIONS, sample(template)) == row.service]
        if row.path in GATEWAY_ROWS_WITHOUT_ROUTE:
            if reached:
                problems.append(f"routes.tsv:{row.line} {row.path} now reaches {reached[0]}: "
                                "take it out of GATEWAY_ROWS_WITHOUT_ROUTE")
        elif not reached:
            problems.append(f"routes.tsv:{row.line} {row.path} ({row.service}) matches no route "
                            f"of {row.service}")
    stale = set(GATEWAY_ROWS_WITHOUT_ROUTE) - {row.path for row in GATEWAY_ROUTES}
    problems += [f"GATEWAY_ROWS_WITHOUT_ROUTE names {p}, which routes.tsv has not" for p in stale]
    assert not problems, "\n".join(problems)


def test_every_route_has_one_declared_expectation(
        service_routes: dict[str, set[tuple[str, str]]]) -> None:
    problems = []
    for service, routes in service_routes.items():
        declared: dict[tuple[str, str], list[str]] = {}
        for key in table(service):
            methods, path = split_key(key)
            for method in methods:
                declared.setdefault((method, path), []).append(key)
        for method, path in sorted(routes):
            keys = declared.get((method, path), [])
            if not keys:
                problems.append(f"{service}: {method} {path} has no expectation: add it to "
                                "MATRIX in tests/permissions/test_permission_matrix.py")
            elif len(keys) > 1:
                problems.append(f"{service}: {method} {path} is declared twice: {keys}")
        problems += [f"{service}: MATRIX declares {keys[0]!r}, which is no route of {service}"
                     for (method, path), keys in sorted(declared.items())
                     if (method, path) not in routes]
    assert not problems, "\n".join(problems)


# ---- calling each route as each caller ----------------------------------------------------


def cases() -> Iterator[Any]:
    for service in SERVICES:
        for key, rule in table(service).items():
            yield pytest.param(service, key, rule, id=f"{service}: {key}")


def _message(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("message") if isinstance(body, dict) else None


def judge(rule: Rule, caller: str, method: str, response: httpx.Response) -> str | None:
    """What is wrong with this answer, or None."""
    if may_call(rule, caller, method):
        if response.status_code in (401, 403):
            return f"allowed, but refused: {response.status_code} {response.text[:160]}"
        return None
    refusals = REFUSALS | ({rule.refusal} if rule.refusal else set())
    if response.status_code != 403 or _message(response) not in refusals:
        return f"not allowed, but answered {response.status_code} {response.text[:160]}"
    return None


@pytest.mark.parametrize(("service_name", "key", "rule"), cases())
async def test_each_caller_gets_what_the_matrix_declares(
        services: Services, service_name: str, key: str, rule: Rule) -> None:
    service = await services.get(service_name)
    methods, template = split_key(key)
    path = rule.path or sample(template)
    problems = []
    for method in methods:
        # The site admin last: what it may do (unset the default role...) must not change
        # what the others are refused.
        for caller in sorted(CALLERS, key=lambda c: c == SITE_ADMIN):
            body = None
            if method not in READ_METHODS:
                raw = rule.body if rule.body is not None else {}
                body = raw(service) if callable(raw) else raw
            response = await service.call(method, path, caller, body)
            problem = judge(rule, caller, method, response)
            if problem:
                problems.append(f"{method} {path} as {caller}: {problem}")
    if rule.then is not None:
        undo = await service.call(*rule.then, SITE_ADMIN, {})
        assert undo.status_code == 200, undo.text
    assert not problems, f"{service_name}: {key}\n" + "\n".join(problems)
