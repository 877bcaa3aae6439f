"""Identity's endpoints that MISP does not have: forced logout, lifting a login block.

`/api/v1/identity` and `/whoami` come with every service (misp_platform.app)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from identity.adapters.store import SqlUnitOfWork
from identity.api.deps import EngineDep, as_misp, resolve_user_id
from identity.handlers import login as login_handlers
from identity.handlers.users import manageable_user
from misp_platform.auth import Admin, SiteAdmin
from misp_platform.misp import BadRequest, read_body, success

router = APIRouter(prefix="/api/v1/identity", tags=["identity"])


@router.post("/users/{user_id}/logout")
async def force_logout(user_id: str, request: Request, principal: Admin,
                       engine: EngineDep) -> dict[str, Any]:
    """End every session of a user (site admin, or the org admin of the user's org)."""
    target = resolve_user_id(user_id, principal)
    with as_misp(request, "logout", "User", target):
        loaded = await manageable_user(SqlUnitOfWork(engine), principal, target)
        ended = await login_handlers.force_logout(engine, principal.actor(), loaded.state,
                                                  loaded.stream_id)
    return success("logout", "User", request.url.path, id=target,
                   message=f"{ended} session(s) ended.")


@router.post("/bruteforce/lift")
async def lift_block(request: Request, principal: SiteAdmin,
                     engine: EngineDep) -> dict[str, Any]:
    """Lift a brute-force block: `{"username": ..., "ip": ...}` (no ip: from every IP)."""
    body = await read_body(request)
    username, ip = body.get("username"), body.get("ip")
    if not isinstance(username, str) or not username.strip() or (
            ip is not None and not isinstance(ip, str)):
        raise BadRequest("username (and optionally ip) are required.")
    lifted = await login_handlers.lift_block(engine, principal.actor(), username=username,
                                             ip=ip)
    return success("lift", "Block", request.url.path,
                   message=f"Login block lifted ({lifted} attempt(s) forgotten).")
