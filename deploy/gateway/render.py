#!/usr/bin/env python3
"""Render the gateway's nginx.conf from the route table (stdlib only).

    render.py --mode local --state-dir .local --out .local/nginx/nginx.conf
    render.py --mode local --state-dir .local --tls-cert .local/tls/server.pem \
        --tls-key .local/tls/server.key --out .local/nginx/nginx.conf     # and HTTPS on :8443
    render.py --mode container --out deploy/gateway/nginx.container.conf
    render.py --resolve /admin/users/email /servers/getWorkers   # which service owns a path

The route table (routes.tsv) maps path prefixes to their owning service; deploy/services.tsv gives
each service's API port. nginx itself picks an exact location (`=`) first, then the longest prefix
location (`^~`, so no regex can override it): the order in which routes are listed does not matter,
and `resolve()` below mirrors that rule for the tests. Locations are written sorted anyway (exact
ones, then prefixes longest first) so that a reader sees the winner first.

With a certificate the gateway also serves HTTPS, with the same locations; plain HTTP is then
redirected there (308) except from 127.0.0.1 and ::1 (the peer's address, not a forwarded one)
unless --http-from-loopback redirect. The container config always does both, with the
certificate mounted at /etc/nginx/tls/tls.crt and tls.key, and redirects all plain HTTP. Every
answer carries X-Content-Type-Options and X-Frame-Options, and over HTTPS
Strict-Transport-Security (SECURITY_HEADERS, HSTS).

Abuse limits, per client address (nginx's limit_req; `RATE burst=N`, or `off`):

    --limit-login      MISP_GATEWAY_LIMIT_LOGIN      10r/m burst=5   users/login, users/otp
    --limit-forgot     MISP_GATEWAY_LIMIT_FORGOT     5r/m burst=3    users/forgot(.json), and
                                                     the reset links users/password_reset/...
    --limit-register   MISP_GATEWAY_LIMIT_REGISTER   5r/m burst=3    users/register(.json)
    --limit-anonymous  MISP_GATEWAY_LIMIT_ANONYMOUS  20r/s burst=40  any other request with no
                                   Authorization or X-MISP-AUTH header and no session cookie

Past its burst a client gets 429 in MISP's error shape with Retry-After (the seconds one more
request takes to be allowed). The client's address is the peer's, or, from a network of
--trusted-proxies (MISP_TRUSTED_PROXIES, loopback by default: the services' own rule,
misp_platform.client_address), the rightmost X-Forwarded-For hop that is not one (nginx's realip).
Clients in --abuse-exempt-networks (MISP_ABUSE_EXEMPT_NETWORKS, loopback by default: the local
tools and the test suite) are never limited. The container config takes the defaults; render it
again with other values where a proxy stands in front of the gateway.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_ROUTES = HERE / "routes.tsv"
DEFAULT_SERVICES = HERE.parent / "services.tsv"
# The local stack's replicas of each service's roles (render_supervisor.py starts them; the
# gateway spreads each API's requests over its replicas).
DEFAULT_REPLICAS = HERE.parent / "replicas.tsv"
REPLICATED_ROLES = ("api", "relay", "consume")
REPLICA_PORT_STEP = 100
REPLICA_FAIL_S = 3

EXACT = "exact"
PREFIX = "prefix"


@dataclass(frozen=True)
class Route:
    path: str
    service: str
    line: int


@dataclass(frozen=True)
class Location:
    kind: str  # EXACT or PREFIX
    path: str
    service: str
    internal: bool = False  # /_svc/<service>/: loopback only, prefix stripped
    zone: str | None = None  # the per-address limit of this path (LIMITED_PATHS), if any


# The web console (services/console): not a service of services.tsv (it owns no data: no
# database, no topic, no relay or consumer), one HTTP role behind the gateway. It answers the
# site's root and its own /console/ paths, and every MISP path a browser asks for as a page
# (`Accept: text/html` with no authkey header): MISP serves its page and its JSON at one URL,
# and so does the gateway (docs/console.md).
CONSOLE = "console"
CONSOLE_PORT = 8107


class RouteError(ValueError):
    pass


_SERVICE_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9/._~-]*$")


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    rows = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rows.append((n, line.split()))
    return rows


def load_services(path: Path = DEFAULT_SERVICES) -> dict[str, int]:
    """service -> API port, in file order."""
    services: dict[str, int] = {}
    for n, cols in _rows(path):
        if len(cols) != 2 or not _SERVICE_RE.match(cols[0]) or not cols[1].isdigit():
            raise RouteError(f"{path}:{n}: expected '<service> <port>'")
        services[cols[0]] = int(cols[1])
    return services


def load_replicas(path: Path = DEFAULT_REPLICAS,
                  services: dict[str, int] | None = None) -> dict[tuple[str, str], int]:
    """(service, role) -> replicas in the local stack; a role not named has one."""
    replicas: dict[tuple[str, str], int] = {}
    for n, cols in _rows(path):
        if (len(cols) != 3 or cols[1] not in REPLICATED_ROLES or not cols[2].isdigit()
                or int(cols[2]) < 1 or (services is not None and cols[0] not in services)):
            raise RouteError(f"{path}:{n}: expected '<service> <api|relay|consume> <replicas>'")
        replicas[(cols[0], cols[1])] = int(cols[2])
    return replicas


def replica_port(port: int, replica: int) -> int:
    """The port of an API's replica (1, 2, ...): its service's port, then 100 apart."""
    return port + REPLICA_PORT_STEP * (replica - 1)


def local_upstreams(services: dict[str, int],
                    replicas: dict[tuple[str, str], int]) -> dict[str, str]:
    """Each service's API replicas on the loopback, comma-separated (local mode)."""
    return {svc: ",".join(f"127.0.0.1:{replica_port(port, i)}"
                          for i in range(1, replicas.get((svc, "api"), 1) + 1))
            for svc, port in services.items()}


def load_routes(path: Path = DEFAULT_ROUTES, services: dict[str, int] | None = None) -> list[Route]:
    routes = []
    for n, cols in _rows(path):
        if len(cols) != 2:
            raise RouteError(f"{path}:{n}: expected '<path> <service>'")
        p, svc = cols
        if not _PATH_RE.match(p) or "//" in p or p == "/":
            raise RouteError(f"{path}:{n}: bad path {p!r}")
        if p.startswith("/_svc/"):
            raise RouteError(f"{path}:{n}: /_svc/ is reserved for the operator endpoints")
        if services is not None and svc not in services:
            raise RouteError(f"{path}:{n}: unknown service {svc!r}")
        routes.append(Route(p, svc, n))
    return routes


def _has_extension(path: str) -> bool:
    return "." in path.rsplit("/", 1)[-1]


def expand(routes: list[Route], services: dict[str, int] | None = None) -> list[Location]:
    """Turn routes into nginx locations; refuse a path claimed by two services."""
    owners: dict[tuple[str, str], tuple[str, int]] = {}

    def add(kind: str, path: str, route: Route) -> None:
        key = (kind, path)
        if key in owners and owners[key][0] != route.service:
            other, line = owners[key]
            raise RouteError(
                f"{kind} {path} claimed by {other} (line {line}) and {route.service} "
                f"(line {route.line}): one owner per path"
            )
        owners.setdefault(key, (route.service, route.line))

    for r in routes:
        if r.path.endswith("/"):
            base = r.path.rstrip("/")
            add(PREFIX, r.path, r)
            add(EXACT, base, r)
            add(EXACT, base + ".json", r)
        elif _has_extension(r.path):
            add(EXACT, r.path, r)
            if r.path.endswith(".json"):
                add(EXACT, r.path[: -len(".json")], r)
        else:
            add(EXACT, r.path, r)
            add(EXACT, r.path + ".json", r)
            add(PREFIX, r.path + "/", r)

    locs = [Location(kind, path, svc) for (kind, path), (svc, _) in owners.items()]
    locs += [Location(EXACT, "/", CONSOLE), Location(PREFIX, "/console/", CONSOLE)]
    for svc in services or {}:
        locs.append(Location(PREFIX, f"/_svc/{svc}/", svc, internal=True))
    return sort_locations(locs)


def sort_locations(locs: list[Location]) -> list[Location]:
    return sorted(locs, key=lambda loc: (loc.kind != EXACT, -len(loc.path), loc.path))


def resolve(locs: list[Location], path: str) -> str | None:
    """The service nginx sends `path` to (None: the 404 location), by nginx's own rule:
    an exact location wins, otherwise the longest matching prefix location."""
    for loc in locs:
        if loc.kind == EXACT and loc.path == path:
            return loc.service
    best: Location | None = None
    for loc in locs:
        if (
            loc.kind == PREFIX
            and path.startswith(loc.path)
            and (best is None or len(loc.path) > len(best.path))
        ):
            best = loc
    return best.service if best else None


# ---------------------------------------------------------------------------------------------
# nginx.conf


def _error_body(name: str) -> str:
    # MISP's error shape; $misp_error_url is the request path with JSON-unsafe characters removed
    return '{"name":"' + name + '","message":"' + name + '","url":"$misp_error_url"}'


# What the gateway adds to every answer (the services set none of these: proxy_hide_header drops
# an upstream's copy, so that a service that starts setting one never makes it appear twice).
# nosniff: a JSON answer is never sniffed into something a browser runs. DENY: nothing the
# gateway serves is meant to be framed, not even by its own origin (a page that sets a password
# must not be overlaid: clickjacking), so SAMEORIGIN would only widen it.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
)
# HTTPS only (RFC 6797 §7.2: a UA ignores it over plain HTTP). No includeSubDomains: the gateway
# does not speak for other hosts of its domain.
HSTS = ("Strict-Transport-Security", "max-age=31536000")

# Plain HTTP from these peers is served (HTTP_ALLOW): the local tools and tests talk to
# http://127.0.0.1:8080. The same two addresses the operator paths allow.
LOOPBACK = ("127.0.0.1", "::1")
# How long nginx keeps an idle connection to an API; the APIs keep theirs longer
# (misp_platform.roles.UPSTREAM_IDLE_S), so that only nginx ever closes an idle one.
GATEWAY_IDLE_S = 30
HTTP_ALLOW = "allow"
HTTP_REDIRECT = "redirect"

# Container mode: the provided certificate, mounted from a compose secret or a Kubernetes TLS
# Secret (its keys are tls.crt and tls.key).
CONTAINER_TLS_DIR = "/etc/nginx/tls"
CONTAINER_TLS_CERT = f"{CONTAINER_TLS_DIR}/tls.crt"
CONTAINER_TLS_KEY = f"{CONTAINER_TLS_DIR}/tls.key"

# ---- abuse limits ----------------------------------------------------------------------------

LOGIN = "login"
FORGOT = "forgot"
REGISTER = "register"
ANONYMOUS = "anonymous"
DEFAULT_LIMITS = {
    LOGIN: "10r/m burst=5",
    FORGOT: "5r/m burst=3",
    REGISTER: "5r/m burst=3",
    ANONYMOUS: "20r/s burst=40",
}
# The paths of the password and sign-up forms, each limited by its own zone instead of the
# anonymous one: an exact or prefix location of its own, sent to the service that owns the path.
LIMITED_PATHS = (
    (EXACT, "/users/login", LOGIN),
    (EXACT, "/users/login.json", LOGIN),
    (EXACT, "/users/otp", LOGIN),  # a login's second step (TOTP): its codes count as logins
    (EXACT, "/users/otp.json", LOGIN),
    (EXACT, "/users/forgot", FORGOT),
    (EXACT, "/users/forgot.json", FORGOT),
    (PREFIX, "/users/password_reset/", FORGOT),
    (EXACT, "/users/register", REGISTER),
    (EXACT, "/users/register.json", REGISTER),
)
# identity.handlers.login.SESSION_COOKIE: a request that carries it is not anonymous. Its '-'
# cannot stand in an nginx variable name ($cookie_...), so the Cookie header is matched.
SESSION_COOKIE = "MISP-session"
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"  # misp_platform.client_address.LOOPBACK
# A zone of 10 MiB keeps about 160 000 addresses (nginx's figure for $binary_remote_addr).
ZONE_SIZE = "10m"
_LIMIT_RE = re.compile(r"^([1-9][0-9]*)r/([sm])(?:\s+burst=([0-9]+))?$")


@dataclass(frozen=True)
class Limit:
    """One limit_req zone: `per_period` requests a second (`s`) or minute (`m`), `burst` more
    at once."""

    per_period: int
    period: str
    burst: int

    @property
    def rate(self) -> str:
        return f"{self.per_period}r/{self.period}"

    def retry_after(self) -> int:
        """Seconds until one more request is allowed after a refusal."""
        return max(1, math.ceil((60 if self.period == "m" else 1) / self.per_period))


def parse_limit(value: str) -> Limit | None:
    """`"10r/m burst=5"` (burst 0 when left out); None for `off`. ValueError otherwise."""
    text = " ".join(value.split())
    if text == "off":
        return None
    match = _LIMIT_RE.match(text)
    if not match:
        raise ValueError(f"not a limit (RATE burst=N with RATE like 10r/m or 20r/s, or off): "
                         f"{value!r}")
    return Limit(int(match[1]), match[2], int(match[3] or 0))


def parse_cidrs(value: str) -> tuple[str, ...]:
    """Comma-separated networks in CIDR notation (a bare address is its own network), as nginx
    writes them; ValueError naming a bad one."""
    out = []
    for entry in value.split(","):
        text = entry.strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError as exc:
            raise ValueError(f"not a network in CIDR notation: {text!r}") from exc
    return tuple(out)


@dataclass(frozen=True)
class Abuse:
    """The per-address limits (None: off), whose forwarded address is believed, who is exempt."""

    limits: dict[str, Limit | None]
    trusted_proxies: tuple[str, ...]
    exempt: tuple[str, ...]

    @classmethod
    def defaults(cls) -> Abuse:
        return cls({zone: parse_limit(v) for zone, v in DEFAULT_LIMITS.items()},
                   parse_cidrs(LOOPBACK_NETWORKS), parse_cidrs(LOOPBACK_NETWORKS))

    def limit(self, zone: str) -> Limit | None:
        return self.limits.get(zone)


def with_limited_paths(locs: list[Location], abuse: Abuse) -> list[Location]:
    """`locs` with a location of its own for each path of LIMITED_PATHS whose limit is on, owned
    by the service that owned the path (routing is unchanged); a path nobody owns stays a 404."""
    by_key = {(loc.kind, loc.path): loc for loc in locs}
    for kind, path, zone in LIMITED_PATHS:
        if abuse.limit(zone) is None:
            continue
        service = resolve(locs, path)
        if service is not None:
            by_key[(kind, path)] = Location(kind, path, service, zone=zone)
    return sort_locations(list(by_key.values()))


@dataclass(frozen=True)
class Tls:
    """The HTTPS listener, and where plain HTTP is sent."""

    listen: str
    cert: str
    key: str
    public_port: int  # the port of the redirect's target (443: none written)
    http_from_loopback: str = HTTP_ALLOW  # or HTTP_REDIRECT: every plain request is redirected

    def redirect_target(self) -> str:
        port = "" if self.public_port == 443 else f":{self.public_port}"
        return f"https://$host{port}$request_uri"


def _port_of(listen: str) -> int:
    return int(listen.rsplit(":", 1)[-1].split()[0])


def _server_common(w: Callable[[str], None], locs: list[Location], abuse: Abuse, *,
                   https: bool, replicated: bool = False) -> None:
    """The proxying part of a server: the same in the HTTP and the HTTPS server. `replicated`:
    some API runs several replicas (a request whose connection one refused goes to another)."""
    w("        proxy_http_version 1.1;")
    w('        proxy_set_header Connection "";')
    w("        proxy_set_header Host $misp_host;")
    w("        proxy_set_header X-Request-ID $misp_request_id;")
    w("        proxy_set_header traceparent $misp_traceparent;")
    w("        proxy_set_header X-Real-IP $remote_addr;")
    w("        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
    # what the client sent is replaced: identity's Secure cookie believes this one
    w("        proxy_set_header X-Forwarded-Proto $scheme;")
    w("        proxy_set_header X-Forwarded-Host $misp_host;")
    w("        proxy_connect_timeout 5s;")
    w("        proxy_send_timeout 300s;")
    w("        proxy_read_timeout 300s;")
    if replicated:
        # Only a connection that failed (nginx then never sent a POST, and passes none on once
        # sent: its effect is unknown) or a GET whose answer never came goes to the next
        # replica; an answer, whatever its status, is the answer.
        w("        proxy_next_upstream error;")
        w("        proxy_next_upstream_tries 2;")
    else:
        w("        proxy_next_upstream off;")
    _headers(w, https=https)
    w("")
    w("        error_page 502 503 504 = @unavailable;")
    w("        error_page 413 = @too_large;")
    w("        error_page 403 = @forbidden;")
    w("        error_page 429 = @too_many_requests;")
    # A location with a limit_req of its own is no longer under this one (nginx's inheritance).
    # $misp_retry_after is set here even with no limit: @too_many_requests reads it.
    _limit_req(w, "        ", ANONYMOUS, abuse.limit(ANONYMOUS))
    w("")
    for loc in locs:
        mod = "=" if loc.kind == EXACT else "^~"
        w(f"        location {mod} {loc.path} {{")
        w(f"            set $misp_service {loc.service};")
        if loc.zone is not None:
            _limit_req(w, "            ", loc.zone, abuse.limit(loc.zone))
        if loc.internal:
            # not allow/deny: they read $remote_addr, which a trusted proxy's header sets
            w("            if ($misp_loopback_peer = 0) {")
            w("                return 403;")
            w("            }")
            w(f"            proxy_pass http://{loc.service}/;")
        else:
            if loc.service != CONSOLE:
                # a browser's page of this MISP path (proxy_pass is allowed in an `if`)
                w("            if ($misp_page) {")
                w(f"                set $misp_service {CONSOLE};")
                w(f"                proxy_pass http://{CONSOLE};")
                w("            }")
            w(f"            proxy_pass http://{loc.service};")
        w("        }")
    w("")
    w("        location / {")
    w("            charset utf-8;")
    w("            charset_types application/json;")
    w(f"            return 404 '{_error_body('Not Found')}';")
    w("        }")
    for name, status, text in (("unavailable", 503, "Service Unavailable"),
                               ("too_large", 413, "Request Entity Too Large"),
                               ("forbidden", 403, "Forbidden"),
                               ("too_many_requests", 429, "Too Many Requests")):
        w(f"        location @{name} {{")
        w("            charset utf-8;")
        w("            charset_types application/json;")
        if status == 429:
            # its own add_header: the server's are no longer inherited, so they are repeated
            _headers(w, https=https, indent="            ")
            w("            add_header Retry-After $misp_retry_after always;")
        w(f"            return {status} '{_error_body(text)}';")
        w("        }")


def _limit_req(w: Callable[[str], None], indent: str, zone: str, limit: Limit | None) -> None:
    """The zone's limit_req, and the Retry-After its refusal answers with."""
    if limit is not None:
        w(f"{indent}limit_req zone=misp_{zone} burst={limit.burst} nodelay;")
    w(f"{indent}set $misp_retry_after {limit.retry_after() if limit else 1};")


def _headers(w: Callable[[str], None], *, https: bool, indent: str = "        ") -> None:
    """Server-level add_header lines (inherited by every location, none of which adds its own:
    nginx drops inherited add_header where a location has one). The services echo the request
    id too: theirs is hidden, the gateway's (the same id) answers, once."""
    w(f"{indent}proxy_hide_header X-Request-ID;")
    w(f"{indent}add_header X-Request-ID $misp_request_id always;")
    for name, value in (*SECURITY_HEADERS, *((HSTS,) if https else ())):
        w(f"{indent}proxy_hide_header {name};")
        w(f'{indent}add_header {name} "{value}" always;')


def _abuse_http(w: Callable[[str], None], abuse: Abuse) -> None:
    """http-level: the client's real address, and the per-address limit zones."""
    w("    # The client's address ($remote_addr): from a trusted proxy, the rightmost")
    w("    # X-Forwarded-For hop that is not one (the services' rule). The peer's:")
    w("    # $realip_remote_addr")
    for network in abuse.trusted_proxies:
        w(f"    set_real_ip_from {network};")
    w("    real_ip_header X-Forwarded-For;")
    w("    real_ip_recursive on;")
    zones = [(zone, limit) for zone in DEFAULT_LIMITS
             if (limit := abuse.limit(zone)) is not None]
    if not zones:
        return
    w("    # Per-address limits; an empty key is never limited: the exempt networks")
    w("    geo $misp_abuse_exempt {")
    w("        default 0;")
    for network in abuse.exempt:
        w(f"        {network} 1;")
    w("    }")
    w("    map $misp_abuse_exempt $misp_limit_key {")
    w('        1       "";')
    w("        default $binary_remote_addr;")
    w("    }")
    w("    # anonymous: no Authorization, no X-MISP-AUTH, no session cookie")
    w("    map $http_cookie $misp_session_cookie {")
    w('        "~(^|;)\\s*' + SESSION_COOKIE + '=[^;\\s]" 1;')
    w('        default "";')
    w("    }")
    w('    map "$http_authorization$http_x_misp_auth$misp_session_cookie" $misp_anonymous_key {')
    w('        ""      $misp_limit_key;')
    w('        default "";')
    w("    }")
    w("    # the password forms' limits count the API call, not the console's page of the form:")
    w("    # the console calls users/login as the browser (X-Forwarded-For), counted once there")
    w("    map $misp_page $misp_form_key {")
    w('        1       "";')
    w("        default $misp_limit_key;")
    w("    }")
    for zone, limit in zones:
        key = "$misp_anonymous_key" if zone == ANONYMOUS else "$misp_form_key"
        w(f"    limit_req_zone {key} zone=misp_{zone}:{ZONE_SIZE} rate={limit.rate};")
    w("    limit_req_status 429;")
    # a refusal is in the access log (429); at error level each would be an error line too
    w("    limit_req_log_level notice;")


def render(
    locs: list[Location],
    services: dict[str, int],
    *,
    mode: str,
    state_dir: Path | None = None,
    listen: str | None = None,
    upstreams: dict[str, str] | None = None,
    replicas: dict[tuple[str, str], int] | None = None,
    user: str | None = None,
    tls: Tls | None = None,
    abuse: Abuse | None = None,
) -> str:
    """nginx.conf. Local mode serves HTTPS when `tls` is given; container mode always does (with
    the mounted certificate unless `tls` says otherwise) and redirects all plain HTTP. `abuse`:
    the per-address limits (Abuse.defaults() when None)."""
    if mode not in ("local", "container"):
        raise ValueError(mode)
    abuse = abuse or Abuse.defaults()
    locs = with_limited_paths(locs, abuse)
    upstreams = dict(upstreams or {})
    for svc, port in services.items():
        if mode == "local":
            upstreams.setdefault(svc, local_upstreams(
                {svc: port}, replicas if replicas is not None else {})[svc])
        else:
            upstreams.setdefault(svc, f"{svc}-api:{port}")
    upstreams.setdefault(CONSOLE, f"127.0.0.1:{CONSOLE_PORT}" if mode == "local"
                         else f"{CONSOLE}:{CONSOLE_PORT}")
    replicated = any("," in address for address in upstreams.values())

    if mode == "local":
        if state_dir is None:
            raise ValueError("local mode needs state_dir")
        sd = state_dir
        pid = f"{sd}/nginx/nginx.pid"
        error_log = f"{sd}/logs/gateway-error.log"
        access_log = f"{sd}/logs/gateway-access.log"
        tmp = f"{sd}/nginx/tmp"
        listen = listen or "127.0.0.1:8080"
        workers = "2"
    else:
        pid = "/tmp/nginx.pid"
        error_log = "/dev/stderr"
        access_log = "/dev/stdout"
        tmp = "/tmp"
        listen = listen or "8080"
        workers = "auto"
        user = user or "nginx"
        tls = tls or Tls(listen="8443", cert=CONTAINER_TLS_CERT, key=CONTAINER_TLS_KEY,
                         public_port=8443, http_from_loopback=HTTP_REDIRECT)
    if tls is not None and tls.http_from_loopback not in (HTTP_ALLOW, HTTP_REDIRECT):
        raise ValueError(tls.http_from_loopback)

    out: list[str] = []
    w = out.append
    w("# Generated by deploy/gateway/render.py from deploy/gateway/routes.tsv: do not edit.")
    w(f"# mode: {mode}")
    if user:
        w(f"user {user};")
    w(f"worker_processes {workers};")
    w(f"pid {pid};")
    w(f"error_log {error_log} warn;")
    w("")
    w("events {")
    w("    worker_connections 2048;")
    w("}")
    w("")
    w("http {")
    w("    types { }")
    w("    default_type application/json;")
    w("    server_tokens off;")
    w("    client_max_body_size 10m;")
    w("    keepalive_timeout 65s;")
    w("    tcp_nodelay on;")
    w(f"    client_body_temp_path {tmp}/client_body;")
    w(f"    proxy_temp_path {tmp}/proxy;")
    w(f"    fastcgi_temp_path {tmp}/fastcgi;")
    w(f"    uwsgi_temp_path {tmp}/uwsgi;")
    w(f"    scgi_temp_path {tmp}/scgi;")
    w("")
    w("    log_format misp_json escape=json")
    w('        \'{"time":"$time_iso8601","request_id":"$misp_request_id",\'')
    w('        \'"remote_addr":"$remote_addr","method":"$request_method",\'')
    w('        \'"uri":"$misp_logged_uri","status":$status,"bytes":$body_bytes_sent,\'')
    w('        \'"request_time":$request_time,"upstream":"$upstream_addr",\'')
    w('        \'"upstream_time":"$upstream_response_time","service":"$misp_service",\'')
    w('        \'"trace_id":"$misp_trace_id"}\';')
    w(f"    access_log {access_log} misp_json;")
    w("")
    w("    # A password reset link's token is a secret: the access log shows no token")
    w("    map $request_uri $misp_logged_uri {")
    w('        "~^/users/password_reset/"  "/users/password_reset/*****";')
    w("        default $request_uri;")
    w("    }")
    w("    # X-Request-ID: the client's, or one generated here")
    w("    map $http_x_request_id $misp_request_id {")
    w('        ""      $request_id;')
    w("        default $http_x_request_id;")
    w("    }")
    # W3C trace context: the client's traceparent, or one begun here (the trace id is the
    # request id, 32 hex digits; the parent id its last 16), passed on to the services
    w("    map $request_id $misp_parent_id {")
    w('        "~([0-9a-f]{16})$" $1;')
    w("    }")
    w("    map $http_traceparent $misp_traceparent {")
    w('        "~^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$" $http_traceparent;')
    w('        default "00-$request_id-$misp_parent_id-01";')
    w("    }")
    w("    map $misp_traceparent $misp_trace_id {")
    w('        "~^[0-9a-f]{2}-([0-9a-f]{32})-" $1;')
    w("    }")
    w("    map $http_host $misp_host {")
    w('        ""      $host;')
    w("        default $http_host;")
    w("    }")
    w("    # the path as it may appear inside a JSON string")
    w("    map $uri $misp_error_url {")
    w('        "~[\\x00-\\x1f\\x22\\x5c]" "/";')
    w("        default $uri;")
    w("    }")
    _abuse_http(w, abuse)
    w("    # the operator paths (/_svc/) answer loopback peers only")
    w("    geo $realip_remote_addr $misp_loopback_peer {")
    w("        default 0;")
    for address in LOOPBACK:
        w(f"        {address} 1;")
    w("    }")
    plain_served = tls is None or tls.http_from_loopback == HTTP_ALLOW
    if tls is not None and plain_served:
        w("    # plain HTTP is served to these peers only (not to the clients they forward);")
        w("    # the others are sent to HTTPS")
        w("    geo $realip_remote_addr $misp_plain_http {")
        w("        default redirect;")
        for address in LOOPBACK:
            w(f"        {address} serve;")
        w("    }")
    w("    # a browser asking for a page (text/html, no authkey header): the console answers")
    w("    map $http_accept $misp_accepts_html {")
    w('        "~*text/html" 1;')
    w("        default 0;")
    w("    }")
    w('    map "$misp_accepts_html:$http_authorization$http_x_misp_auth" $misp_page {')
    w('        "1:"    1;')
    w("        default 0;")
    w("    }")
    w("")
    for svc in (*services, CONSOLE):
        w(f"    upstream {svc} {{")
        addresses = upstreams[svc].split(",")
        for address in addresses:
            # One server: always tried. Several (replicas): one that refused a connection is
            # left out for a few seconds (its requests go to the others meanwhile).
            w(f"        server {address} max_fails=0;" if len(addresses) == 1
              else f"        server {address} max_fails=1 fail_timeout={REPLICA_FAIL_S}s;")
        w("        keepalive 32;")
        # Idle connections close here first: were the API to close one (uvicorn's
        # UPSTREAM_IDLE_S) while nginx sends on it, the request would fail (a reset: 503).
        w(f"        keepalive_timeout {GATEWAY_IDLE_S}s;")
        w("    }")
    w("")
    w("    server {")
    w(f"        listen {listen};")
    w("        server_name _;")
    w("        set $misp_service -;")
    if tls is not None:
        target = tls.redirect_target()
        if plain_served:
            # 308, not 301: a POST stays a POST with its body
            w("        if ($misp_plain_http = redirect) {")
            w(f"            return 308 {target};")
            w("        }")
        else:
            _headers(w, https=False)
            w("        location / {")
            w(f"            return 308 {target};")
            w("        }")
            w("    }")
    if plain_served:
        w("")
        _server_common(w, locs, abuse, https=False, replicated=replicated)
        w("    }")
    if tls is not None:
        w("")
        w("    server {")
        w(f"        listen {tls.listen} ssl;")
        w("        server_name _;")
        w("        set $misp_service -;")
        w(f"        ssl_certificate {tls.cert};")
        w(f"        ssl_certificate_key {tls.key};")
        w("        ssl_protocols TLSv1.2 TLSv1.3;")
        w("        ssl_session_cache shared:misp_tls:1m;")
        w("        ssl_session_timeout 1h;")
        w("")
        _server_common(w, locs, abuse, https=True, replicated=replicated)
        w("    }")
    w("}")
    return "\n".join(out) + "\n"


def k8s_configmap(conf: str, name: str, namespace: str) -> str:
    lines = [
        "# Generated by deploy/gateway/render.py --mode container --k8s-configmap: do not edit.",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "data:",
        "  nginx.conf: |",
    ]
    lines += [("    " + ln) if ln else "" for ln in conf.splitlines()]
    return "\n".join(lines) + "\n"


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--routes", type=Path, default=DEFAULT_ROUTES)
    p.add_argument("--services", type=Path, default=DEFAULT_SERVICES)
    p.add_argument("--replicas", type=Path, default=DEFAULT_REPLICAS,
                   help="local mode: each API's replicas (one upstream server each)")
    p.add_argument("--mode", choices=("local", "container"), default="local")
    p.add_argument("--state-dir", type=Path, help="local mode: the .local directory")
    p.add_argument("--listen", help="listen address (local: 127.0.0.1:8080, container: 8080)")
    p.add_argument("--user", help="nginx worker user (when started as root)")
    p.add_argument("--tls-listen", help="the HTTPS listen address (local: 127.0.0.1:8443 when "
                   "--tls-cert is given; container: 8443)")
    p.add_argument("--tls-cert", help="the server certificate (PEM; container: "
                   f"{CONTAINER_TLS_CERT})")
    p.add_argument("--tls-key", help=f"its key (container: {CONTAINER_TLS_KEY})")
    p.add_argument("--https-port", type=int,
                   help="the port plain HTTP is redirected to (default: --tls-listen's)")
    p.add_argument("--http-from-loopback", choices=(HTTP_ALLOW, HTTP_REDIRECT),
                   help="plain HTTP from 127.0.0.1/::1: served (local default) or redirected "
                   "like any other (container default)")
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="SERVICE=HOST:PORT",
        help=f"override a service's (or the console's, {CONSOLE}) upstream address",
    )
    for zone, default in DEFAULT_LIMITS.items():
        var = f"MISP_GATEWAY_LIMIT_{zone.upper()}"
        p.add_argument(f"--limit-{zone}", default=os.environ.get(var, default),
                       metavar="'RATE burst=N'|off",
                       help=f"the per-address limit of {zone} requests (${var}, default "
                       f"{default!r})")
    p.add_argument("--trusted-proxies", default=os.environ.get("MISP_TRUSTED_PROXIES",
                                                               LOOPBACK_NETWORKS),
                   metavar="CIDR,...", help="the proxies whose X-Forwarded-For is believed "
                   f"($MISP_TRUSTED_PROXIES, default {LOOPBACK_NETWORKS})")
    p.add_argument("--abuse-exempt-networks",
                   default=os.environ.get("MISP_ABUSE_EXEMPT_NETWORKS", LOOPBACK_NETWORKS),
                   metavar="CIDR,...", help="clients never limited ($MISP_ABUSE_EXEMPT_NETWORKS, "
                   f"default {LOOPBACK_NETWORKS})")
    p.add_argument("--k8s-configmap", metavar="NAME", help="wrap the config in a ConfigMap")
    p.add_argument("--namespace", default="misp")
    p.add_argument("--out", default="-")
    p.add_argument("--resolve", nargs="+", metavar="PATH", help="print the owner of each path")
    p.add_argument("--api-replica-ports", action="store_true",
                   help="local mode: print the ports of the API replicas beyond each service's "
                   "first, one a line (wait-ready.sh waits for them)")
    a = p.parse_args(argv)

    try:
        services = load_services(a.services)
        locs = expand(load_routes(a.routes, services), services)
        replicas = load_replicas(a.replicas, services) if a.mode == "local" else {}
    except RouteError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 1

    if a.api_replica_ports:
        for svc, port in services.items():
            for replica in range(2, replicas.get((svc, "api"), 1) + 1):
                print(replica_port(port, replica))
        return 0

    if a.resolve:
        for path in a.resolve:
            print(f"{path}\t{resolve(locs, path) or '404'}")
        return 0

    try:
        abuse = Abuse({zone: parse_limit(getattr(a, f"limit_{zone}")) for zone in DEFAULT_LIMITS},
                      parse_cidrs(a.trusted_proxies), parse_cidrs(a.abuse_exempt_networks))
    except ValueError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    ups: dict[str, str] = {}
    for item in a.upstream:
        svc, _, addr = item.partition("=")
        if (svc not in services and svc != CONSOLE) or not addr:
            print(f"render.py: bad --upstream {item!r}", file=sys.stderr)
            return 2
        ups[svc] = addr
    state_dir = a.state_dir.resolve() if a.state_dir else None
    if a.mode == "local" and state_dir is None:
        print("render.py: --mode local needs --state-dir", file=sys.stderr)
        return 2
    tls = None
    if a.tls_cert or a.tls_key or a.mode == "container":
        if a.mode == "local" and not (a.tls_cert and a.tls_key):
            print("render.py: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        default_listen = "127.0.0.1:8443" if a.mode == "local" else "8443"
        tls_listen = a.tls_listen or default_listen
        tls = Tls(listen=tls_listen,
                  cert=a.tls_cert or CONTAINER_TLS_CERT,
                  key=a.tls_key or CONTAINER_TLS_KEY,
                  public_port=a.https_port or _port_of(tls_listen),
                  http_from_loopback=a.http_from_loopback
                  or (HTTP_ALLOW if a.mode == "local" else HTTP_REDIRECT))
    conf = render(
        locs,
        services,
        mode=a.mode,
        state_dir=state_dir,
        listen=a.listen,
        upstreams=ups,
        replicas=replicas,
        user=a.user,
        tls=tls,
        abuse=abuse,
    )
    if a.k8s_configmap:
        conf = k8s_configmap(conf, a.k8s_configmap, a.namespace)
    _write(a.out, conf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
