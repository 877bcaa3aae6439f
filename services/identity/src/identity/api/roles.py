"""MISP's role paths: roles/index, roles/view, admin/roles/add|edit|delete|set_default."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from identity.adapters.store import SqlUnitOfWork
from identity.api.deps import EngineDep, as_misp
from identity.domain.values import to_bool, to_int
from identity.handlers import roles as handlers
from misp_platform.auth import CurrentPrincipal, SiteAdmin
from misp_platform.misp import Forbidden, NamedParams, NotFound, read_body, render_value, success
from misp_platform.misp.errors import request_url
from misp_platform.misp.paging import Paging

router = APIRouter(tags=["roles"])


def _role_id(value: str) -> int:
    number = to_int(value)
    if number is None:
        raise NotFound(handlers.INVALID_ROLE)
    return number


@router.get("/roles/index")
async def index(principal: CurrentPrincipal, engine: EngineDep, named: NamedParams,
                page: Paging) -> list[dict[str, Any]]:
    return [render_value(r) for r in await handlers.index(SqlUnitOfWork(engine), named, page)]


@router.get("/roles/view/{role_id}")
async def view(role_id: str, request: Request, principal: CurrentPrincipal,
               engine: EngineDep) -> dict[str, Any]:
    with as_misp(request, "view", "Role"):
        return dict(render_value(await handlers.view(SqlUnitOfWork(engine), _role_id(role_id))))


@router.post("/admin/roles/add")
async def add(request: Request, principal: SiteAdmin, engine: EngineDep) -> dict[str, Any]:
    body = await read_body(request, "Role")
    with as_misp(request, "add", "role"):
        return dict(render_value(await handlers.add(SqlUnitOfWork(engine), principal.actor(),
                                                    body)))


@router.api_route("/admin/roles/edit/{role_id}", methods=["POST", "PUT"])
async def edit(role_id: str, request: Request, principal: SiteAdmin,
               engine: EngineDep) -> dict[str, Any]:
    number = _role_id(role_id)
    body = await read_body(request, "Role")
    with as_misp(request, "edit", "role", number):
        return dict(render_value(await handlers.edit(SqlUnitOfWork(engine), principal.actor(),
                                                     number, body)))


@router.api_route("/admin/roles/delete/{role_id}", methods=["POST", "DELETE"])
async def delete(role_id: str, request: Request, principal: SiteAdmin,
                 engine: EngineDep) -> dict[str, Any]:
    number = _role_id(role_id)
    with as_misp(request, "delete", "Role", number):
        await handlers.delete(SqlUnitOfWork(engine), principal.actor(), number)
    body = success("delete", "Role", f"/roles/delete/{number}", id=number,
                   message="Role deleted.")
    body["id"] = number  # MISP sends this one as a number
    return body


@router.api_route("/admin/roles/set_default/{role_id}", methods=["GET", "POST", "PUT"])
@router.api_route("/admin/roles/set_default", methods=["GET", "POST", "PUT"])
async def set_default(request: Request, principal: SiteAdmin, engine: EngineDep,
                      role_id: str = "false") -> dict[str, Any]:
    if request.method == "GET":
        raise Forbidden(handlers.INVALID_ROLE)
    unset = role_id in ("false", "0") or to_bool(role_id) is False
    number = None if unset else _role_id(role_id)
    with as_misp(request, "set_default", "Role", number):
        await handlers.set_default(SqlUnitOfWork(engine), principal.actor(), number)
    message = "Default role unset." if number is None else "Default role set."
    return success("set_default", "Role", request_url(request), id=number if number else None,
                   message=message)
