"""The console's ASGI app: the page routers, the static files, and what turns the API's refusals
into pages (a login form, the password change, a 403 page with MISP's message)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import httpx
import structlog
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.responses import PlainTextResponse, Response

from console.forms import FormTooLarge
from console.gateway import ApiError, Gateway
from console.live import LiveUpdates
from console.live import router as live_router
from console.pages import ROUTERS
from console.pages.auth import CHANGE_PW_PAGE, with_next
from console.settings import ConsoleSettings
from console.viewer import BadCsrfToken, LoginRequired, PasswordChangeRequired, load_viewer
from console.web import STATIC_DIR, STATIC_PREFIX, SecurityHeadersMiddleware, redirect, render
from misp_platform.app import RequestContextMiddleware
from misp_platform.client_address import (
    ForwardedProtoMiddleware,
    parse_networks,
    trust_proxies,
)
from misp_platform.metrics import MetricsMiddleware, metrics_response

log = structlog.get_logger("console")


def create_app(settings: ConsoleSettings | None = None, *,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    trust_proxies(parse_networks(settings.trusted_proxies))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = Gateway(settings.gateway_url, timeout_s=settings.api_timeout_s,
                                    ca=settings.gateway_ca,
                                    tls_name=settings.gateway_tls_name, transport=transport)
        app.state.live = LiveUpdates(settings)
        app.state.live.start()
        try:
            yield
        finally:
            await app.state.live.stop()
            await app.state.gateway.aclose()

    app = FastAPI(title="MISP administration console", lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.settings = settings
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(live_router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/console/health", include_in_schema=False)
    async def health() -> PlainTextResponse:
        return PlainTextResponse("OK")

    @app.get("/console/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response()

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired) -> Response:
        return redirect(f"/users/login?next={_quoted(_asked_for(request))}")

    @app.exception_handler(PasswordChangeRequired)
    async def to_change_pw(request: Request, _exc: PasswordChangeRequired) -> Response:
        # a page asked for is shown once the password is changed; a form posted is not redone
        target = _asked_for(request) if request.method == "GET" else "/"
        return redirect(with_next(CHANGE_PW_PAGE, target),
                        flash="Please choose a new password.", kind="info")

    @app.exception_handler(BadCsrfToken)
    async def bad_csrf(request: Request, _exc: BadCsrfToken) -> Response:
        return render(request, "error.html", status_code=403,
                      viewer=getattr(request.state, "viewer", None),
                      title="Form expired",
                      message="This form was not sent by this console's page, or your session "
                              "changed since. Reload the page and try again.")

    @app.exception_handler(FormTooLarge)
    async def too_large(request: Request, _exc: FormTooLarge) -> Response:
        return render(request, "error.html", status_code=413,
                      viewer=getattr(request.state, "viewer", None), title="Too large",
                      message="The form is too large.")

    @app.exception_handler(ApiError)
    async def api_refused(request: Request, exc: ApiError) -> Response:
        if exc.status in (401, 403) and await load_viewer(request, request.app.state.gateway) \
                is None:
            return await to_login(request, LoginRequired())
        status = exc.status if 400 <= exc.status < 500 else 502
        title = {403: "Not allowed", 404: "Not found"}.get(exc.status, "Refused")
        if status == 502:
            log.warning("console.api_error", status=exc.status, message=exc.message)
            title = "The API could not answer"
        return render(request, "error.html", status_code=status,
                      viewer=getattr(request.state, "viewer", None), title=title,
                      message=exc.message)

    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(ForwardedProtoMiddleware)
    app.add_middleware(RequestContextMiddleware, quiet_paths=("/console/health",))
    return app


def _asked_for(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


def _quoted(target: str) -> str:
    return quote(target, safe="/")
