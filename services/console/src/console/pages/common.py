"""What every page module uses: the gateway of the app, the viewer, and form checks."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from console.forms import CSRF_FIELD, Form, read_form
from console.gateway import ApiError, Gateway
from console.viewer import Viewer, check_csrf, require_viewer


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def viewer_of(request: Request, *, allow_change_pw: bool = False) -> Viewer:
    return await require_viewer(request, gateway_of(request), allow_change_pw=allow_change_pw)


async def posted_form(request: Request, viewer: Viewer) -> Form:
    """The form of an unsafe request, once its CSRF token is checked."""
    form = await read_form(request)
    check_csrf(viewer, form.get(CSRF_FIELD))
    return form


async def api(request: Request, viewer: Viewer, method: str, path: str, *,
              json: Any = None, params: dict[str, Any] | None = None,
              content: bytes | None = None) -> Any:
    """A call to the API as the viewer; unsafe methods carry the session's CSRF token.
    `content`: a raw body (an uploaded file) instead of JSON."""
    csrf = viewer.csrf_token if method not in ("GET", "HEAD") else None
    return await gateway_of(request).call(request, method, path, json=json, params=params,
                                          csrf=csrf, content=content)


def records(body: Any, name: str) -> list[dict[str, Any]]:
    """MISP's list answers: `[{"User": {...}, "Role": {...}}, ...]` or a bare list of rows."""
    if isinstance(body, dict):
        body = body.get("response", body.get(name, []))
    rows = []
    for item in body if isinstance(body, list) else []:
        if isinstance(item, dict):
            rows.append(item if name in item else {name: item})
    return rows


def page_number(request: Request) -> int:
    """`?page=N` (1 when absent or not a positive number)."""
    raw = request.query_params.get("page", "")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 100_000 else 1


def shown_on_the_form(exc: ApiError) -> bool:
    """Whether a refused write goes back to its form with MISP's messages (MISP's validation:
    403 with `errors`, 400, 405, 409...), rather than being a page the viewer may not open (401,
    404, a 403 without `errors`) or a failure (5xx)."""
    if not 400 <= exc.status < 500 or exc.status in (401, 404):
        return False
    return exc.status != 403 or exc.errors is not None
