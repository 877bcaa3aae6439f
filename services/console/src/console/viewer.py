"""Who is looking at a page: the session's user, as identity's `api/v1/identity/session` tells.

Asked once per page (through the gateway, with the browser's cookie). The answer carries the
CSRF token of the session, which every form of the page holds and every unsafe call to the API
sends back (`X-CSRF-Token`): the console holds no secret of its own.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from console.gateway import SESSION_COOKIE, ApiError, Gateway

SESSION_PATH = "/api/v1/identity/session"


class LoginRequired(Exception):
    """No session, or one the API refused: the page sends the browser to the login form."""


class PasswordChangeRequired(Exception):
    """The user must choose a new password before anything else (MISP's `change_pw`)."""


class BadCsrfToken(Exception):
    """A form came back without the session's token: not sent by one of our pages."""


@dataclass(frozen=True)
class Viewer:
    user: dict[str, Any]
    role: dict[str, Any]
    organisation: dict[str, Any]
    csrf_token: str

    @property
    def id(self) -> int:
        return int(self.user.get("id") or 0)

    @property
    def email(self) -> str:
        return str(self.user.get("email") or "")

    @property
    def org_id(self) -> int:
        return int(self.user.get("org_id") or 0)

    @property
    def is_site_admin(self) -> bool:
        return bool(self.role.get("perm_site_admin"))

    @property
    def is_admin(self) -> bool:
        """MISP's `_isAdmin`: an org admin or a site admin."""
        return bool(self.role.get("perm_admin")) or self.is_site_admin

    @property
    def change_pw(self) -> bool:
        return self.user.get("change_pw") in (True, 1, "1")

    def can(self, perm: str) -> bool:
        return self.is_site_admin or bool(self.role.get(perm))


def viewer_from(body: Any) -> Viewer:
    data = body if isinstance(body, dict) else {}
    return Viewer(user=dict(data.get("User") or {}), role=dict(data.get("Role") or {}),
                  organisation=dict(data.get("Organisation") or {}),
                  csrf_token=str(data.get("csrf_token") or ""))


async def load_viewer(request: Request, gateway: Gateway) -> Viewer | None:
    """The session's user, or None when there is no session or the API refuses it. Once per
    request."""
    if hasattr(request.state, "viewer"):
        viewer: Viewer | None = request.state.viewer
        return viewer
    viewer = None
    if request.cookies.get(SESSION_COOKIE):
        try:
            viewer = viewer_from(await gateway.get(request, SESSION_PATH))
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise
    request.state.viewer = viewer
    return viewer


async def require_viewer(request: Request, gateway: Gateway, *,
                         allow_change_pw: bool = False) -> Viewer:
    viewer = await load_viewer(request, gateway)
    if viewer is None:
        raise LoginRequired()
    if viewer.change_pw and not allow_change_pw:
        raise PasswordChangeRequired()
    return viewer


def check_csrf(viewer: Viewer, presented: str | None) -> None:
    if not viewer.csrf_token or not presented or not hmac.compare_digest(
            viewer.csrf_token.encode(), presented.encode()):
        raise BadCsrfToken()
