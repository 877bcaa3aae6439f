"""MISP's advanced authkey paths: auth_keys/add|index|view|edit|delete, and servers/createSync
(a sync user's new key with this instance's address)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from identity.adapters.store import SqlUnitOfWork
from identity.api.deps import EngineDep, Pepper, as_misp, resolve_user_id
from identity.domain.values import to_int
from identity.handlers import authkeys as handlers
from misp_platform.auth import CurrentPrincipal, Principal, require_perm
from misp_platform.misp import NotFound, misp_record, read_body, render_value, success
from misp_platform.misp.paging import Paging

router = APIRouter(tags=["authkeys"])
SyncUser = Annotated[Principal, Depends(require_perm("perm_sync"))]


def _key_id(value: str) -> int:
    number = to_int(value)
    if number is None:
        raise NotFound(handlers.INVALID_KEY)
    return number


@router.post("/auth_keys/add/{user_id}")
@router.post("/auth_keys/add")
async def add(request: Request, principal: CurrentPrincipal, engine: EngineDep, pepper: Pepper,
              user_id: str = "me") -> dict[str, Any]:
    target = resolve_user_id(user_id, principal)
    body = await read_body(request, "AuthKey")
    if "user_id" in body and user_id == "me":
        target = resolve_user_id(str(body["user_id"]), principal)
    with as_misp(request, "add", "AuthKey"):
        key = await handlers.add_key(SqlUnitOfWork(engine), principal, target, body,
                                     pepper=pepper)
    return misp_record("AuthKey", key)


@router.get("/auth_keys/index/{user_id}")
@router.get("/auth_keys/index")
async def index(principal: CurrentPrincipal, engine: EngineDep, page: Paging,
                user_id: str | None = None) -> list[dict[str, Any]]:
    target = None if user_id is None else resolve_user_id(user_id, principal)
    keys = await handlers.index_keys(SqlUnitOfWork(engine), principal, target, page)
    return [render_value(r) for r in keys]


@router.get("/auth_keys/view/{key_id}")
async def view(key_id: str, request: Request, principal: CurrentPrincipal,
               engine: EngineDep) -> dict[str, Any]:
    with as_misp(request, "view", "AuthKey"):
        return dict(render_value(await handlers.view_key(SqlUnitOfWork(engine), principal,
                                                         _key_id(key_id))))


@router.api_route("/auth_keys/edit/{key_id}", methods=["POST", "PUT"])
async def edit(key_id: str, request: Request, principal: CurrentPrincipal,
               engine: EngineDep) -> dict[str, Any]:
    number = _key_id(key_id)
    body = await read_body(request, "AuthKey")
    with as_misp(request, "edit", "AuthKey", number):
        return dict(render_value(await handlers.edit_key(SqlUnitOfWork(engine), principal,
                                                         number, body)))


@router.api_route("/auth_keys/delete/{key_id}", methods=["POST", "DELETE"])
async def delete(key_id: str, request: Request, principal: CurrentPrincipal,
                 engine: EngineDep) -> dict[str, Any]:
    number = _key_id(key_id)
    with as_misp(request, "delete", "AuthKey", number):
        await handlers.delete_key(SqlUnitOfWork(engine), principal, number)
    return success("delete", "AuthKey", f"/auth_keys/delete/{number}", id=number,
                   message="AuthKey deleted.")


@router.get("/servers/createSync")
async def create_sync(request: Request, principal: SyncUser, engine: EngineDep,
                      pepper: Pepper) -> dict[str, Any]:
    """A sync user's connection details for another instance, with a new key of theirs."""
    with as_misp(request, "add", "AuthKey"):
        return await handlers.create_sync(SqlUnitOfWork(engine), principal, pepper=pepper,
                                          request_base=str(request.base_url))
