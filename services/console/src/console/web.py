"""Rendering: the Jinja2 templates, the one-shot flash message, redirects after a POST, and the
security headers every page carries (a Content-Security-Policy that allows no inline script)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.forms import CSRF_FIELD
from console.viewer import Viewer

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_PREFIX = "/console/static"
FLASH_COOKIE = "MISP-console-flash"
FLASH_MAX = 500

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
    "object-src 'none'"))

templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                        autoescape=select_autoescape(default=True), trim_blocks=True,
                        lstrip_blocks=True)


def render(request: Request, template: str, *, viewer: Viewer | None = None,
           status_code: int = 200, **context: Any) -> HTMLResponse:
    flash = _read_flash(request)
    html = templates.get_template(template).render(
        request=request, viewer=viewer, flash=flash, csrf_field=CSRF_FIELD,
        csrf_token=viewer.csrf_token if viewer else "", static=STATIC_PREFIX,
        path=request.url.path, **context)
    response = HTMLResponse(html, status_code=status_code)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def _read_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, text = unquote(raw).partition(":")
    return (kind if kind in ("ok", "error", "info") else "info", text[:FLASH_MAX])


def redirect(to: str, *, flash: str | None = None, kind: str = "ok") -> RedirectResponse:
    """303 See Other (the browser GETs `to`), with a message shown once on the next page."""
    response = RedirectResponse(safe_target(to), status_code=303)
    if flash:
        response.set_cookie(FLASH_COOKIE, quote(f"{kind}:{flash[:FLASH_MAX]}"), httponly=True,
                            samesite="lax", path="/")
    return response


def safe_target(target: str | None, default: str = "/") -> str:
    """A path on this site only: no scheme, no host, no `//` (an open redirect otherwise)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


class SecurityHeadersMiddleware:
    """Every answer: the CSP, no referrer beyond the origin, no caching of pages that show a
    user's data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith(STATIC_PREFIX + "/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                headers.append((b"referrer-policy", b"same-origin"))
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def query_string(values: Mapping[str, Any]) -> str:
    """`?a=1&b=2` of the values that are set (filters kept in links)."""
    parts = [f"{quote(str(k))}={quote(str(v))}" for k, v in values.items() if v not in (None, "")]
    return ("?" + "&".join(parts)) if parts else ""


def when(value: Any) -> str:
    """A unix time (MISP's `last_login`, `created`...) or a date string, for people."""
    if value in (None, "", 0, "0"):
        return ""
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


templates.globals["query_string"] = query_string
templates.filters["when"] = when


def is_html(response: Response) -> bool:
    return response.media_type == "text/html"
