"""MISP's `events/queryACL/{type}` and `servers/queryACL/{type}` (site admins only): the
functions that have a route (every service's MISP paths) and their ACL entries (domain.acl)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request

from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import SiteAdmin
from misp_platform.misp import MethodNotAllowed, MispJSONResponse, NotFound
from misp_platform.misp.errors import MispHTTPError
from settings.adapters import queries
from settings.adapters.service_routes import ServiceRoutesUnavailableError, service_paths
from settings.domain import acl

router = APIRouter(tags=["servers"])
log = structlog.get_logger()


async def routed_paths(request: Request, settings: Any) -> list[str]:
    """This service's own path templates and every other service's (their OpenAPI)."""
    own = list(request.app.openapi().get("paths", {}))
    try:
        others = await service_paths(dict(settings.openapi_urls),
                                     settings.diagnostics_timeout_s)
    except ServiceRoutesUnavailableError as exc:
        log.warning("acl.routes_unavailable", error=str(exc))
        raise MispHTTPError(503, str(exc)) from exc
    return own + [path for paths in others.values() for path in paths]


async def query_acl(debug_type: str, content: str | None, request: Request,
                    engine: Any, settings: Any) -> Any:
    if debug_type not in acl.DEBUG_TYPES:
        raise MethodNotAllowed("Invalid function call.")
    if debug_type == "printRoleAccess":
        role_id = int(content) if content and content.isdigit() else None
        async with engine.connect() as conn:
            found = await queries.roles(conn, role_id)
        if not found:
            raise NotFound("Role not found.")
        return {str(rid): {"name": name, "urls": acl.role_urls(flags)}
                for rid, name, flags in found}
    routed = acl.functions(await routed_paths(request, settings))
    return routed if debug_type == "printAllFunctionNames" else acl.missing(routed)


@router.get("/events/queryACL/{debug_type}")
@router.get("/events/queryACL/{debug_type}/{content}")
@router.get("/servers/queryACL/{debug_type}")
@router.get("/servers/queryACL/{debug_type}/{content}")
async def query_acl_route(debug_type: str, _admin: SiteAdmin, request: Request,
                          engine: EngineDep, settings: SettingsDep,
                          content: str | None = None) -> MispJSONResponse:
    return MispJSONResponse(await query_acl(debug_type, content, request, engine, settings))
