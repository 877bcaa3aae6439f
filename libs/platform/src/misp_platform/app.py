"""The FastAPI app factory every service uses: MISP URL and error conventions, request ids,
metrics, and the operator endpoints (health, readiness, metrics, diagnostics).

A router may carry lean paths (`LeanRouter`): pure ASGI handlers of a hot GET that answer from
in-process caches before FastAPI's routing, dependencies and response validation, inside every
middleware (request id, logs, metrics, tracing, read-your-writes, MISP's paths), and hand the
request on to the route when they cannot answer it alone.

Nothing connects at import time or in `create_app`: the engine and the Kafka probe open in the
lifespan (or are handed in by a test).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Annotated, Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from misp_platform import metrics
from misp_platform.auth import PRINCIPAL_TOPICS, CurrentPrincipal
from misp_platform.auth.abuse import AbuseGuard, following_blocks
from misp_platform.auth.cache import principal_cache
from misp_platform.client_address import ForwardedProtoMiddleware, trust_proxies
from misp_platform.config import ServiceSettings
from misp_platform.consistency import Consistency, ReadYourWritesMiddleware
from misp_platform.db import engine_for
from misp_platform.kafka import client_options
from misp_platform.logging import configure_logging, loggable_path, request_context
from misp_platform.metrics import MetricsMiddleware, metrics_response
from misp_platform.misp.domain_errors import install_domain_error_handlers
from misp_platform.misp.errors import INTERNAL_ERROR, install_error_handlers, misp_error_response
from misp_platform.misp.params import MispPathMiddleware
from misp_platform.misp.responses import MispJSONResponse, misp_record
from misp_platform.outbox import limit_message_bytes, message_limit
from misp_platform.parked import count_parked, list_parked
from misp_platform.tracing import TracingMiddleware, configure_tracing

log = structlog.get_logger("misp_platform.app")

LifespanHook = Callable[[FastAPI], AbstractAsyncContextManager[Any]]
# A check returns details (anything JSON-able; False means failed) or raises.
Check = Callable[[FastAPI], Awaitable[Any]]

CHECK_TIMEOUT_S = 3.0
# /ready asks the database only, briefly: a balancer polls it, and Kafka away is no reason to
# take the API out (writes wait in the outbox; diagnostics and `kafka_up` report Kafka).
READY_TIMEOUT_S = 2.0
OPS_PATHS = ("health", "ready", "metrics", "diagnostics")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# ---- dependencies -----------------------------------------------------------------------------


# Dependencies are coroutines: FastAPI runs a plain function in its thread pool, a hop that
# costs more than what these do.
async def get_engine(request: Request) -> AsyncEngine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise RuntimeError("no engine: it is opened in the app's lifespan")
    return engine


async def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]


# ---- lean paths ------------------------------------------------------------------------------

# Answers the request and returns True, or sends nothing and returns False (the route answers).
LeanHandler = Callable[[Scope, Receive, Send], Awaitable[bool]]


class LeanRouter(APIRouter):
    """An APIRouter that may also carry lean paths: `router.lean(path, route_path)(handler)`
    serves GET (and HEAD) `path` with `handler` first, labelled in metrics and traces as the
    route `route_path` of this router, which answers whatever the handler hands back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lean_paths: dict[str, tuple[LeanHandler, str]] = {}

    def lean(self, path: str, route_path: str) -> Callable[[LeanHandler], LeanHandler]:
        def register(handler: LeanHandler) -> LeanHandler:
            self.lean_paths[path] = (handler, route_path)
            return handler

        return register


class LeanPathMiddleware:
    """Pure ASGI, innermost: the lean paths' handlers, before routing (see the module)."""

    def __init__(self, app: ASGIApp, *,
                 paths: Mapping[str, tuple[LeanHandler, APIRoute]]) -> None:
        self.app = app
        self.paths = dict(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            lean = self.paths.get(scope["path"])
            if lean is not None:
                answered = await lean[0](scope, receive, send)
                metrics.lean_requests_total.labels(
                    lean[1].path, "answered" if answered else "handed_on").inc()
                if answered:
                    scope["route"] = lean[1]  # the metrics' and the trace's label
                    return
        await self.app(scope, receive, send)


def _lean_paths(routers: Sequence[APIRouter]) -> dict[str, tuple[LeanHandler, APIRoute]]:
    out: dict[str, tuple[LeanHandler, APIRoute]] = {}
    for router in routers:
        if not isinstance(router, LeanRouter):
            continue
        routes = {route.path: route for route in router.routes
                  if isinstance(route, APIRoute) and "GET" in (route.methods or ())}
        for path, (handler, route_path) in router.lean_paths.items():
            if route_path not in routes:
                raise ValueError(f"lean path {path}: no GET route {route_path} in its router")
            out[router.prefix + path] = (handler, routes[route_path])
    return out


# ---- request context --------------------------------------------------------------------------


def _incoming_id(value: str | None) -> str | None:
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


# A read answered in time is logged at debug (the gateway's access log has every request, with
# its X-Request-ID): at info, its line cost a quarter of a cached `users/view/me`. Writes,
# refusals, errors and slow reads stay at info.
_READS = frozenset({"GET", "HEAD"})
SLOW_READ_S = 1.0


class RequestContextMiddleware:
    """Pure ASGI: request and correlation ids (from `X-Request-ID` / `X-Correlation-ID` or new),
    bound to the logs and echoed; headers queued in `scope["state"]["response_headers"]` (the
    auth dependency's `X-Auth-Key-Expiration`); any unhandled exception becomes MISP's 500.
    Each request is logged (`http.request`): at debug when it is an operator path or a read
    answered under 400 within SLOW_READ_S, else at info."""

    def __init__(self, app: ASGIApp, *, quiet_paths: Sequence[str] = ()) -> None:
        self.app = app
        self.quiet_paths = frozenset(quiet_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = _incoming_id(headers.get("x-request-id")) or uuid.uuid4().hex
        correlation_id = _incoming_id(headers.get("x-correlation-id")) or request_id
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["correlation_id"] = correlation_id
        path = scope.get("path", "")
        logged = loggable_path(path)
        started = False
        status = 500
        begin = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                out = MutableHeaders(scope=message)
                out["X-Request-ID"] = request_id
                for name, value in (state.get("response_headers") or {}).items():
                    if name not in out:
                        out[name] = value
            await send(message)

        with request_context(request_id, correlation_id):
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                log.exception("http.unhandled_error", method=scope.get("method"), path=logged)
                if started:
                    raise
                response = misp_error_response(500, INTERNAL_ERROR,
                                               state.get("original_path") or path)
                await response(scope, receive, send_wrapper)
            finally:
                took = time.perf_counter() - begin
                quiet = path in self.quiet_paths or (
                    status < 400 and scope.get("method") in _READS and took < SLOW_READ_S)
                (log.debug if quiet else log.info)(
                    "http.request", method=scope.get("method"),
                    path=loggable_path(state.get("original_path") or path), status=status,
                    duration_ms=round(took * 1000, 2))


# ---- checks -----------------------------------------------------------------------------------


class KafkaProbe:
    """One admin connection reused by readiness and diagnostics (reopened after a failure)."""

    def __init__(self, bootstrap_servers: str, *, client_id: str,
                 timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    async def describe_cluster(self) -> dict[str, Any]:
        async with self._lock:
            try:
                if self._admin is None:
                    admin = AIOKafkaAdminClient(
                        **client_options(self.bootstrap_servers), client_id=self.client_id,
                        request_timeout_ms=int(self.timeout_s * 1000))
                    self._admin = admin
                    await asyncio.wait_for(admin.start(), self.timeout_s)
                return await asyncio.wait_for(self._admin.describe_cluster(), self.timeout_s)
            except BaseException:
                await self._close_admin()
                raise

    async def _close_admin(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            try:
                await admin.close()
            except Exception:  # closing a half-open client must not hide the real error
                log.debug("kafka.probe_close_failed", exc_info=True)

    async def close(self) -> None:
        async with self._lock:
            await self._close_admin()


async def check_database(app: FastAPI) -> dict[str, Any]:
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return {}


async def diagnose_database(app: FastAPI) -> dict[str, Any]:
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
        revision = None
        if (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar():
            revision = (await conn.execute(
                text("SELECT version_num FROM alembic_version LIMIT 1"))).scalar()
        server = (await conn.execute(text("SHOW server_version"))).scalar()
    expected = expected_revision(app.state.settings.service)
    return {"alembic_revision": revision, "expected_revision": expected,
            "at_head": None if expected is None else revision == expected,
            "server_version": server}


@functools.lru_cache(maxsize=8)
def expected_revision(service: str) -> str | None:
    """The head of `<service>/migrations` (every service keeps its scripts there), if found."""
    spec = importlib.util.find_spec(service)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        migrations = Path(location) / "migrations"
        if (migrations / "versions").is_dir():
            from misp_platform.migrations import head_revision

            return head_revision(migrations)
    return None


async def diagnose_kafka(app: FastAPI) -> dict[str, Any]:
    probe: KafkaProbe = app.state.kafka_probe
    try:
        cluster = await probe.describe_cluster()
    except BaseException:
        metrics.kafka_up.set(0)
        raise
    metrics.kafka_up.set(1)
    return {"brokers": len(cluster.get("brokers", [])), "cluster_id": cluster.get("cluster_id"),
            "controller_id": cluster.get("controller_id"),
            "bootstrap_servers": probe.bootstrap_servers}


async def diagnose_principals(app: FastAPI) -> dict[str, Any]:
    """How much of identity's and orgs' feeds this service has applied, and how recently."""
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as conn:
        if not (await conn.execute(text("SELECT to_regclass('principal_authkey')"))).scalar():
            return {"present": False}
        row = (await conn.execute(text(
            "SELECT (SELECT count(*) FROM principal_user WHERE NOT deleted) AS users,"
            " (SELECT count(*) FROM principal_role WHERE NOT deleted) AS roles,"
            " (SELECT count(*) FROM principal_authkey WHERE NOT deleted) AS authkeys,"
            " (SELECT count(*) FROM principal_org WHERE NOT deleted) AS orgs,"
            " GREATEST((SELECT max(updated_at) FROM principal_user),"
            "  (SELECT max(updated_at) FROM principal_authkey),"
            "  (SELECT max(updated_at) FROM principal_role),"
            "  (SELECT max(updated_at) FROM principal_org)) AS last_update"))).one()
    return {"present": True, "users": row.users, "roles": row.roles, "authkeys": row.authkeys,
            "orgs": row.orgs,
            "last_update": row.last_update.isoformat() if row.last_update else None}


async def refresh_kafka_up(app: FastAPI) -> bool:
    """Whether Kafka answers the probe, into the `kafka_up` gauge (Kafka is not in /ready)."""
    try:
        await diagnose_kafka(app)
    except Exception as exc:  # the scrape goes on without it
        log.warning("metrics.kafka_probe_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return False
    return True


async def refresh_projection_lag(app: FastAPI) -> dict[str, int]:
    """The principals consumer's lag per topic, into the `projection_lag` gauge ({} when
    read-your-writes is off or Kafka does not answer)."""
    settings: ServiceSettings = app.state.settings
    consistency: Consistency | None = getattr(app.state, "consistency", None)
    if consistency is None:
        return {}
    try:
        lag = await asyncio.wait_for(
            consistency.lag(settings.principals_group, PRINCIPAL_TOPICS), CHECK_TIMEOUT_S)
    except Exception as exc:  # the scrape goes on without it
        log.warning("metrics.projection_lag_failed", error=str(exc))
        return {}
    for topic, behind in lag.items():
        metrics.projection_lag.labels(settings.principals_group, topic).set(behind)
    return lag


async def diagnose_consistency(app: FastAPI) -> dict[str, Any]:
    """The read-your-writes guarantee of this process: kept, or degraded to "eventually" (the
    relay or a projection missed its bound lately); the principals consumer's lag, the outbox
    backlog, and streams with a dead-lettered message."""
    consistency: Consistency | None = getattr(app.state, "consistency", None)
    engine: AsyncEngine = app.state.engine
    async with engine.connect() as conn:
        backlog = (await conn.execute(text(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox"))).one()
        flagged = (await conn.execute(text(
            "SELECT consumer, topic, stream_key, message_id, error FROM flagged_stream "
            "ORDER BY flagged_at LIMIT 50"))).all()
    details: dict[str, Any] = {
        "outbox_backlog": backlog.n,
        "outbox_oldest": backlog.oldest.isoformat() if backlog.oldest else None,
        "flagged_streams": [dict(r._mapping) for r in flagged],
    }
    if consistency is None:
        return {**details, "guarantee": "eventually", "read_your_writes": False}
    recent = (consistency.last_timeout_at is not None
              and time.time() - consistency.last_timeout_at < 60)
    lag = await refresh_projection_lag(app)
    return {**details, "read_your_writes": True,
            "guarantee": "eventually (a wait timed out within the last minute)" if recent
            else "read-your-writes",
            "publish_wait_timeouts": consistency.publish_timeouts,
            "projection_wait_timeouts": consistency.read_timeouts,
            "principals_lag": lag}


class ParkedMessagesError(Exception):
    """Diagnostics' critical finding: Kafka refused some of the service's messages for good."""


async def refresh_parked(app: FastAPI) -> int | None:
    """How many messages the relay parked, into the `parked_messages` gauge (None when the
    database does not answer)."""
    try:
        async with app.state.engine.connect() as conn:
            parked = await count_parked(conn)
    except Exception as exc:  # the scrape goes on without it
        log.warning("metrics.parked_count_failed", error=str(exc))
        return None
    metrics.parked_messages.set(parked)
    return parked


async def diagnose_outbox(app: FastAPI) -> dict[str, Any]:
    """Critical when the relay parked messages (relay.py): their events never reached the
    other services. Names the command that lists, retries or drops them."""
    async with app.state.engine.connect() as conn:
        total = await count_parked(conn)
        oldest = await list_parked(conn, limit=1)
    metrics.parked_messages.set(total)
    if oldest:
        first = oldest[0]
        # The command first: the report keeps the first 300 characters of a failed check.
        raise ParkedMessagesError(
            f"critical: {total} message(s) parked, refused by Kafka for good; see `python -m "
            f"{app.state.settings.service} outbox list` (first: position {first.position} on "
            f"{first.topic}: {first.error[:120]})")
    return {"parked_messages": 0, "message_cap_bytes": message_limit()}


async def run_check(app: FastAPI, check: Check,
                    timeout_s: float = CHECK_TIMEOUT_S) -> tuple[bool, Any]:
    """`(ok, details or error text)`: a check fails by raising, timing out or returning False."""
    try:
        result = await asyncio.wait_for(check(app), timeout_s)
    except TimeoutError:
        return False, f"timed out after {timeout_s:g}s"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"[:300]
    if result is False:
        return False, "failed"
    return True, result


async def run_checks(app: FastAPI, checks: Mapping[str, Check],
                     timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, tuple[bool, Any]]:
    names = list(checks)
    results = await asyncio.gather(*(run_check(app, checks[n], timeout_s) for n in names))
    return dict(zip(names, results, strict=True))


# ---- the factory ------------------------------------------------------------------------------


def service_version(service: str) -> str:
    for distribution in (f"misp-{service}", "misp-platform"):
        try:
            return importlib_metadata.version(distribution)
        except importlib_metadata.PackageNotFoundError:
            continue
    return "0.0.0"


def _ops_router(service: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    async def ready(request: Request) -> Response:
        app: FastAPI = request.app
        results = await run_checks(app, app.state.ready_checks, READY_TIMEOUT_S)
        failed = [name for name, (ok, _) in results.items() if not ok]
        body: dict[str, Any] = {
            "status": "unavailable" if failed else "ready",
            "service": service,
            "checks": {name: "ok" if ok else detail for name, (ok, detail) in results.items()},
        }
        if failed:
            body["failed"] = failed
        return MispJSONResponse(body, status_code=503 if failed else 200)

    async def metrics(request: Request) -> Response:
        await asyncio.gather(refresh_kafka_up(request.app), refresh_projection_lag(request.app),
                             refresh_parked(request.app))
        return metrics_response()

    async def diagnostics(request: Request) -> Response:
        app: FastAPI = request.app
        results = await run_checks(app, app.state.diagnostic_checks)
        checks: dict[str, Any] = {}
        for name, (ok, detail) in results.items():
            checks[name] = ({"ok": True, **detail} if isinstance(detail, dict)
                            else {"ok": True, "detail": detail}) if ok else {"ok": False,
                                                                            "error": detail}
        return MispJSONResponse({
            "service": service, "version": app.version,
            "status": "ok" if all(ok for ok, _ in results.values()) else "degraded",
            "checks": checks,
        })

    for prefix in ("", f"/_svc/{service}"):
        router.add_api_route(f"{prefix}/health", health, methods=["GET", "HEAD"])
        router.add_api_route(f"{prefix}/ready", ready, methods=["GET", "HEAD"])
        router.add_api_route(f"{prefix}/metrics", metrics, methods=["GET"])
        router.add_api_route(f"{prefix}/diagnostics", diagnostics, methods=["GET"])
    return router


def _service_router(service: str) -> APIRouter:
    """`/api/v1/<service>/` and `/whoami`: the same in every service, for operators and tests."""
    router = APIRouter(prefix=f"/api/v1/{service}", tags=[service])

    @router.get("")
    async def about(request: Request) -> dict[str, str]:
        return {"service": service, "version": request.app.version}

    @router.get("/whoami")
    async def whoami(principal: CurrentPrincipal) -> dict[str, Any]:
        """Who this service takes the caller to be, from its own principals projection."""
        return misp_record(
            "User", {"id": principal.user_id, "email": principal.email},
            Organisation={"id": principal.org_id, "name": principal.org_name},
            Role={"id": principal.role.id, "name": principal.role.name},
        )

    return router


def create_app(
    settings: ServiceSettings,
    *,
    routers: Sequence[APIRouter] = (),
    lifespan_hooks: Sequence[LifespanHook] = (),
    ready_checks: Mapping[str, Check] | None = None,
    diagnostics: Mapping[str, Check] | None = None,
    engine: AsyncEngine | None = None,
    version: str | None = None,
    configure_logs: bool = True,
) -> FastAPI:
    """A service's ASGI app.

    - `routers`: the service's MISP and `/api/v1/<service>` routes.
    - `lifespan_hooks`: `hook(app)` async context managers entered after the engine opens (in
      order) and exited before it closes (in reverse): start consumer tasks, warm caches...
    - `ready_checks`: extra named checks beside `database`, the only platform one (Kafka away
      is no reason to leave a balancer: writes wait in the outbox); `diagnostics`: extra ones
      beside `database`, `kafka`, `principals`, `consistency` and `outbox`. A check is
      `async def check(app) -> details`, failing by raising or returning False.
    - `engine`: an engine to use instead of opening one (tests); it is not disposed by the app.
    """
    service = settings.service
    if configure_logs:
        configure_logging(service, settings.log_format, settings.log_level)
        configure_tracing(service, "api")
    limit_message_bytes(settings.max_message_bytes)
    trust_proxies(settings.trusted_proxy_networks)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        app.state.engine = engine if engine is not None else engine_for(settings)
        app.state.kafka_probe = KafkaProbe(settings.kafka_bootstrap_servers,
                                           client_id=f"misp-{service}-probe")
        if settings.read_your_writes:
            app.state.consistency = Consistency(
                app.state.engine, settings.kafka_bootstrap_servers,
                publish_timeout_s=settings.publish_wait_s,
                read_timeout_s=settings.projection_wait_s)
            await app.state.consistency.start()
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(principal_cache(app))
                await stack.enter_async_context(following_blocks(app))
                for hook in lifespan_hooks:
                    await stack.enter_async_context(hook(app))
                log.info("app.started", version=app.version)
                yield
        finally:
            await app.state.kafka_probe.close()
            if settings.read_your_writes:
                await app.state.consistency.close()
            if own_engine:
                await app.state.engine.dispose()
            log.info("app.stopped")

    app = FastAPI(
        title=f"MISP {service}",
        version=version or service_version(service),
        lifespan=lifespan,
        docs_url=f"/api/v1/{service}/docs",
        openapi_url=f"/api/v1/{service}/openapi",  # `.json` also works: the suffix is stripped
        redoc_url=None,
        redirect_slashes=False,
        default_response_class=MispJSONResponse,
    )
    app.state.settings = settings
    app.state.abuse_guard = AbuseGuard(settings.abuse_exempt, budget=settings.auth_fail_budget,
                                       window_s=settings.auth_fail_window_s)
    if engine is not None:
        app.state.engine = engine
    app.state.ready_checks = {"database": check_database, **(ready_checks or {})}
    app.state.diagnostic_checks = {"database": diagnose_database, "kafka": diagnose_kafka,
                                   "principals": diagnose_principals,
                                   "consistency": diagnose_consistency,
                                   "outbox": diagnose_outbox, **(diagnostics or {})}

    install_error_handlers(app)
    install_domain_error_handlers(app)
    app.include_router(_ops_router(service))
    for router in routers:
        app.include_router(router)
    app.include_router(_service_router(service))

    quiet = [f"{prefix}/{name}" for prefix in ("", f"/_svc/{service}") for name in OPS_PATHS]
    # Added innermost first: the lean paths, then MispPath just before them and routing,
    # ForwardedProto outermost.
    lean = _lean_paths(routers)
    if lean:
        app.add_middleware(LeanPathMiddleware, paths=lean)
    app.add_middleware(MispPathMiddleware, router=app.router)
    app.add_middleware(ReadYourWritesMiddleware)
    app.add_middleware(RequestContextMiddleware, quiet_paths=quiet)
    app.add_middleware(TracingMiddleware)  # outside the request context: its logs carry the trace
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(ForwardedProtoMiddleware)
    return app
