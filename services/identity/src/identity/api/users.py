"""MISP's user paths: admin/users/*, users/view, users/edit, users/change_pw, users/heartbeat.

`users/view/me` (what PyMISP reads on every connect) has a lean path too, in pure ASGI: the
caller's key and view from this process's caches (a miss read once for all who miss it at
once), else its route answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from identity.adapters.store import SqlUnitOfWork
from identity.adapters.view_cache import ViewCache
from identity.api.deps import EngineDep, Pepper, as_misp, fresh_orgs, resolve_user_id
from identity.domain.users import INVALID_USER_OR_NOT_AUTHORISED, user_fields
from identity.handlers import authkeys as key_handlers
from identity.handlers import statistics as stats_handlers
from identity.handlers import users as handlers
from misp_platform.app import LeanRouter
from misp_platform.auth import Admin, CurrentPrincipal
from misp_platform.auth.dependency import admitted_principal, settle
from misp_platform.misp import NamedParams, misp_record, read_body, success
from misp_platform.misp.errors import request_url
from misp_platform.misp.paging import Paging
from misp_platform.misp.responses import MispJSONResponse

router = LeanRouter(tags=["users"])
VIEW_USER = "/users/view/{user_id}"


@router.lean("/users/view/me", VIEW_USER)
async def view_me_from_caches(scope: Scope, receive: Receive, send: Send) -> bool:
    """`users/view/me` for a caller whose key MISP's checks admit (auth/dependency.py
    `admitted_principal`): their view from the view cache, or read once for every request that
    misses it at the same time (a cache emptied under load costs one read, not one per
    request); the same answer as `view_user`'s. False: the route answers (a key refused, a
    session, a read that failed)."""
    app = scope["app"]
    cache: ViewCache | None = getattr(app.state, "view_cache", None)
    principal = await admitted_principal(scope) if cache is not None else None
    if cache is None or principal is None:
        return False
    caller, user_id = principal, str(principal.user_id)
    view: dict[str, Any] | None = cache.get(user_id)
    if view is None:
        try:
            view = await cache.shared(user_id, lambda: handlers.view_self_or_any(
                SqlUnitOfWork(app.state.engine), caller, caller.user_id, cache))
        except Exception:  # the route reads again and answers in MISP's words
            return False
    settle(scope.setdefault("state", {}), principal)
    await Response(_body_of(view), media_type=MispJSONResponse.media_type)(scope, receive, send)
    return True


# The JSON of a cached view, made once: a cached view is the same object on every request until
# the cache lets it go (no one changes it), so its id names it while `_BODIES` holds it.
_BODIES: dict[int, tuple[Any, bytes]] = {}
_BODIES_KEPT = 1_000


def _body_of(view: dict[str, Any]) -> bytes:
    kept = _BODIES.get(id(view))
    if kept is not None and kept[0] is view:
        return kept[1]
    body = bytes(MispJSONResponse(view).body)
    if len(_BODIES) >= _BODIES_KEPT:
        _BODIES.clear()
    _BODIES[id(view)] = (view, body)
    return body


@router.get(VIEW_USER)
async def view_user(user_id: str, request: Request, principal: CurrentPrincipal,
                    engine: EngineDep) -> dict[str, Any]:
    target = resolve_user_id(user_id, principal, message=INVALID_USER_OR_NOT_AUTHORISED)
    with as_misp(request, "view", "User", target):
        return await handlers.view_self_or_any(SqlUnitOfWork(engine), principal, target,
                                               getattr(request.app.state, "view_cache", None))


@router.get("/admin/users/index")
async def admin_index(principal: Admin, engine: EngineDep, named: NamedParams,
                      page: Paging) -> list[dict[str, Any]]:
    return await handlers.index(SqlUnitOfWork(engine), principal, named, page)


@router.get("/admin/users/view/{user_id}")
async def admin_view(user_id: str, principal: Admin, engine: EngineDep,
                     request: Request) -> dict[str, Any]:
    target = resolve_user_id(user_id, principal)
    with as_misp(request, "view", "User", target):
        return await handlers.admin_view(SqlUnitOfWork(engine), principal, target)


@router.post("/admin/users/add")
async def admin_add(request: Request, principal: Admin, engine: EngineDep,
                    pepper: Pepper) -> dict[str, Any]:
    body = await read_body(request, "User")
    with as_misp(request, "add", "User"):
        user = await fresh_orgs(request, lambda: handlers.add_user(
            SqlUnitOfWork(engine), principal, body, pepper=pepper))
    return misp_record("User", user)


@router.api_route("/admin/users/edit/{user_id}", methods=["POST", "PUT"])
async def admin_edit(user_id: str, request: Request, principal: Admin,
                     engine: EngineDep) -> dict[str, Any]:
    target = resolve_user_id(user_id, principal)
    body = await read_body(request, "User")
    with as_misp(request, "edit", "User", target):
        user = await fresh_orgs(request, lambda: handlers.edit_user(
            SqlUnitOfWork(engine), principal, target, body, self_service=False))
    fields = user_fields(user)
    fields["password"] = "******"
    return misp_record("User", fields)


@router.api_route("/users/edit", methods=["POST", "PUT"])
@router.api_route("/users/edit/{user_id}", methods=["POST", "PUT"])
async def self_edit(request: Request, principal: CurrentPrincipal, engine: EngineDep,
                    user_id: str = "me") -> dict[str, Any]:
    target = resolve_user_id(user_id, principal)
    body = await read_body(request, "User")
    with as_misp(request, "edit", "User", target):
        user = await handlers.edit_user(SqlUnitOfWork(engine), principal, target, body,
                                        self_service=True)
    return await handlers.view_of(SqlUnitOfWork(engine), user)


@router.api_route("/admin/users/delete/{user_id}", methods=["POST", "DELETE"])
async def admin_delete(user_id: str, request: Request, principal: Admin,
                       engine: EngineDep) -> dict[str, Any]:
    target = resolve_user_id(user_id, principal)
    with as_misp(request, "delete", "User", target):
        await handlers.delete_user(SqlUnitOfWork(engine), principal, target)
    return success("delete", "User", f"/admin/users/delete/{target}", id=target,
                   message="User deleted.")


@router.post("/users/change_pw")
async def change_pw(request: Request, principal: CurrentPrincipal,
                    engine: EngineDep) -> dict[str, Any]:
    body = await read_body(request, "User")
    with as_misp(request, "change", "password"):
        await handlers.change_password(SqlUnitOfWork(engine), principal, body)
    return success("change_pw", "User", "/users/change_pw", id=principal.user_id,
                   message="Password Changed.")


@router.get("/users/heartbeat")
async def heartbeat() -> dict[str, str]:
    """Needs no authentication (MISP's keep-alive of the web UI)."""
    return {"message": "OK"}


@router.post("/users/resetauthkey/{user_id}")
async def reset_authkey(user_id: str, request: Request, principal: CurrentPrincipal,
                        engine: EngineDep, pepper: Pepper) -> dict[str, Any]:
    target = resolve_user_id(user_id, principal)
    with as_misp(request, "reset", "authkey", target):
        raw = await key_handlers.reset_key(SqlUnitOfWork(engine), principal, target,
                                           pepper=pepper)
    return success("resetauthkey", "User", request_url(request), id=target,
                   message=f"Authkey updated: {raw}")



@router.get("/users/statistics")
@router.get("/users/statistics/{page}")
async def statistics(principal: CurrentPrincipal, engine: EngineDep, named: NamedParams,
                     page: str = "data") -> dict[str, Any]:
    """MISP's statistics pages that identity's data answers (`data`, `orgs`, `users`)."""
    return await stats_handlers.statistics(SqlUnitOfWork(engine), principal, page, named)
