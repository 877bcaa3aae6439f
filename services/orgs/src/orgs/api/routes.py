"""Routes of the orgs service: MISP's organisation paths, and logos and merges under
`/api/v1/orgs` (MISP has no REST endpoint for them)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import pycountry
from fastapi import APIRouter, Request
from starlette.responses import Response

from misp_contracts.events.identity import USER_TOPIC
from misp_contracts.settings_catalogue import definition
from misp_platform.app import EngineDep, SettingsDep
from misp_platform.auth import CurrentPrincipal, Principal, SiteAdmin
from misp_platform.consistency import consistency_of, published_so_far
from misp_platform.misp import (
    Forbidden,
    NamedParams,
    NotFound,
    as_misp,
    misp_record,
    read_body,
    success,
)
from misp_platform.misp.paging import Paging
from misp_platform.server_settings import setting as get_setting
from orgs.adapters import queries
from orgs.api.deps import UowDep
from orgs.api.render import organisation_record
from orgs.domain.errors import INVALID_ORG, LogoTooLargeError
from orgs.handlers import organisations as commands
from orgs.settings import OrgsSettings

SINGULAR = "Organisation"
HIDE_INDEX = "Security.hide_organisation_index_from_users"
MERGE_POLL_S = 0.02
assert definition(HIDE_INDEX)  # a typo in the name would silently show the index

misp = APIRouter(tags=["organisations"])
router = APIRouter(prefix="/api/v1/orgs", tags=["orgs"])


async def _hidden_from(conn: Any, principal: Principal) -> bool:
    """Whether the setting hides other organisations from this caller."""
    if principal.is_site_admin or principal.has("perm_sharing_group"):
        return False
    return bool(await get_setting(conn, HIDE_INDEX))


def _record(row: Any, principal: Principal) -> dict[str, Any]:
    return organisation_record(row, user_count=row.user_count,
                               site_admin=principal.is_site_admin,
                               created_by_email=row.created_by_email)


async def _visible_id(conn: Any, key: str, principal: Principal) -> int:
    org_id = await queries.find_id(conn, key, by_name=True)
    if org_id is None:
        raise NotFound(INVALID_ORG)
    if org_id != principal.org_id and await _hidden_from(conn, principal):
        raise NotFound(INVALID_ORG)
    return org_id


# ---- MISP paths -------------------------------------------------------------------------------


@misp.get("/organisations/index")
async def index(principal: CurrentPrincipal, engine: EngineDep, named: NamedParams,
                page: Paging) -> list[dict[str, Any]]:
    scope = named.get("scope", "local")
    if scope not in ("local", "external", "all"):
        scope = "local"
    async with engine.connect() as conn:
        if await _hidden_from(conn, principal):
            raise Forbidden()
        rows = await queries.list_organisations(
            conn, scope=scope, search=named.get("searchall") or None, offset=page.offset,
            limit=page.limit)
    return [_record(row, principal) for row in rows]


@misp.get("/organisations/view/{key}")
async def view(key: str, principal: CurrentPrincipal, engine: EngineDep) -> dict[str, Any]:
    async with engine.connect() as conn:
        org_id = await _visible_id(conn, key, principal)
        row = await queries.get_organisation(conn, org_id)
    if row is None:
        raise NotFound(INVALID_ORG)
    return _record(row, principal)


async def _view_as_admin(engine: Any, org_id: int, principal: Principal) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = await queries.get_organisation(conn, org_id)
    if row is None:  # deleted in between: the change was made, but there is nothing to show
        raise NotFound(INVALID_ORG)
    return _record(row, principal)


@misp.post("/admin/organisations/add")
async def add(request: Request, principal: SiteAdmin, engine: EngineDep,
              uow: UowDep) -> dict[str, Any]:
    with as_misp(request, "add", SINGULAR):
        body = await read_body(request, "Organisation")
        org = await commands.add_organisation(uow, body=body, actor=principal.actor(),
                                              created_by=principal.user_id)
    return await _view_as_admin(engine, org.state.id, principal)


@misp.api_route("/admin/organisations/edit/{key}", methods=["POST", "PUT"])
async def edit(key: str, request: Request, principal: SiteAdmin,
               engine: EngineDep, uow: UowDep) -> dict[str, Any]:
    with as_misp(request, "edit", SINGULAR):
        body = await read_body(request, "Organisation")
        org = await commands.edit_organisation(uow, key=key, body=body,
                                               actor=principal.actor())
    return await _view_as_admin(engine, org.state.id, principal)


@misp.api_route("/admin/organisations/delete/{key}", methods=["POST", "DELETE"])
async def delete(key: str, request: Request, principal: SiteAdmin,
                 uow: UowDep) -> dict[str, Any]:
    with as_misp(request, "delete", SINGULAR):
        # Users just added, moved or deleted in identity count as they are now: decide once this
        # projection of them holds what Kafka holds (a few ms when it does already).
        consistency = consistency_of(request.app)
        if consistency is not None:
            await consistency.caught_up(request.app.state.settings.main_group, [USER_TOPIC])
        org_id = await commands.delete_organisation(uow, key=key, actor=principal.actor())
    return success("delete", SINGULAR, f"/admin/organisations/delete/{org_id}", id=org_id)


_TARGET_KEYS = ("target_id", "target", "targetId", "org_id", "orgsLocal", "orgsExternal")


def _merge_target(body: dict[str, Any], path_target: str | None) -> Any:
    """The target: from the path (`merge/{id}/{target}`), a plain key, or MISP's form fields
    (`targetType` 0 = `orgsLocal`, 1 = `orgsExternal`)."""
    if path_target:
        return path_target
    if "targetType" in body:
        chosen = "orgsExternal" if str(body.get("targetType")) == "1" else "orgsLocal"
        if body.get(chosen) not in (None, ""):
            return body[chosen]
    for name in _TARGET_KEYS:
        value = body.get(name)
        if value not in (None, ""):
            if isinstance(value, bool) or not isinstance(value, str | int):
                return "invalid"
            return value
    return None


async def _merge_outcome(request: Request, engine: Any, merge_id: str) -> str:
    """The merge's status once the saga has finished (identity moved the users, orgs closed the
    source), or as it stands at the bound: MISP merges in one request, and a client that waits
    for the answer expects the users in the target on its next call."""
    if not await published_so_far(request.app):
        return "running"
    deadline = time.monotonic() + request.app.state.settings.merge_wait_s
    while True:
        async with engine.connect() as conn:
            row = await queries.get_merge(conn, merge_id)
        status = str(row.status) if row is not None else "running"
        if status == "completed" or time.monotonic() > deadline:
            return status
        await asyncio.sleep(MERGE_POLL_S)


async def _merge(source: str, target: str | None, request: Request, principal: Principal,
                 engine: Any, uow: UowDep) -> dict[str, Any]:
    with as_misp(request, "merge", SINGULAR):
        body = await read_body(request, "Organisation")
        started = await commands.start_merge(
            uow, source_key=source, target_key=_merge_target(body, target),
            actor=principal.actor(), requested_by=principal.user_id,
            correlation_id=(request.scope.get("state") or {}).get("correlation_id"))
    status = await _merge_outcome(request, engine, started.merge_id)
    out = success("merge", SINGULAR, f"/admin/organisations/merge/{started.source_id}",
                  id=started.source_id, message="Organisation merge started." if status !=
                  "completed" else "Organisation merged.")
    out["merge_id"] = started.merge_id
    out["status"] = status
    out["target_id"] = str(started.target_id)
    out["status_url"] = f"/api/v1/orgs/merges/{started.merge_id}"
    return out


@misp.post("/admin/organisations/merge/{key}")
async def merge(key: str, request: Request, principal: SiteAdmin,
                engine: EngineDep, uow: UowDep) -> dict[str, Any]:
    return await _merge(key, None, request, principal, engine, uow)


@misp.post("/admin/organisations/merge/{key}/{target}")
async def merge_into(key: str, target: str, request: Request, principal: SiteAdmin,
                     engine: EngineDep, uow: UowDep) -> dict[str, Any]:
    return await _merge(key, target, request, principal, engine, uow)


# ---- /api/v1/orgs -----------------------------------------------------------------------------


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes without reading it all (413)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LogoTooLargeError(f"The logo is too large: at most {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


@router.api_route("/organisations/{key}/logo", methods=["POST", "PUT"])
async def upload_logo(key: str, request: Request, principal: SiteAdmin, engine: EngineDep,
                      uow: UowDep, settings: SettingsDep) -> dict[str, Any]:
    """The request body is the PNG itself (any content type: the content is what counts)."""
    assert isinstance(settings, OrgsSettings)
    limits = commands.LogoLimits(settings.logo_max_bytes, settings.logo_max_width,
                                 settings.logo_max_height)
    with as_misp(request, "upload", "Logo"):
        data = await _read_limited(request, limits.max_bytes)
        org = await commands.set_logo(uow, key=key, data=data, actor=principal.actor(),
                                      limits=limits)
    return await _view_as_admin(engine, org.state.id, principal)


@router.delete("/organisations/{key}/logo")
async def remove_logo(key: str, request: Request, principal: SiteAdmin,
                      engine: EngineDep, uow: UowDep, settings: SettingsDep) -> dict[str, Any]:
    assert isinstance(settings, OrgsSettings)
    limits = commands.LogoLimits(settings.logo_max_bytes, settings.logo_max_width,
                                 settings.logo_max_height)
    with as_misp(request, "delete", "Logo"):
        org = await commands.set_logo(uow, key=key, data=None, actor=principal.actor(),
                                      limits=limits)
    return await _view_as_admin(engine, org.state.id, principal)


_ETAG = re.compile(r'"?([0-9a-f]{64})"?')


@router.get("/organisations/{key}/logo.png")
async def logo(key: str, request: Request, principal: CurrentPrincipal,
               engine: EngineDep) -> Response:
    async with engine.connect() as conn:
        org_id = await _visible_id(conn, key, principal)
        row = await queries.get_logo(conn, org_id)
    if row is None or row.logo is None:
        raise NotFound("This organisation has no logo.")
    etag = f'"{row.logo_sha256}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=300"}
    wanted = request.headers.get("if-none-match", "")
    if any(m.group(1) == row.logo_sha256 for m in _ETAG.finditer(wanted)):
        return Response(status_code=304, headers=headers)
    return Response(content=bytes(row.logo), media_type="image/png", headers=headers)


@router.get("/merges/{merge_id}")
async def merge_status(merge_id: str, principal: SiteAdmin, engine: EngineDep) -> dict[str, Any]:
    try:
        uuid.UUID(merge_id)
    except ValueError:
        raise NotFound("Invalid merge") from None
    async with engine.connect() as conn:
        row = await queries.get_merge(conn, merge_id)
    if row is None:
        raise NotFound("Invalid merge")
    return misp_record("Merge", {
        "id": str(row.merge_id), "source_id": row.source_id, "target_id": row.target_id,
        "status": row.status, "users_moved": row.users_moved, "requested_by": row.requested_by,
        "started_at": row.started_at, "completed_at": row.completed_at})


@router.get("/countries")
async def countries(_principal: CurrentPrincipal) -> list[str]:
    """The nationality drop-down: ISO 3166 country names. Nationality itself stays free text,
    as in MISP, whose clients may send any value."""
    return COUNTRIES


COUNTRIES = sorted(country.name for country in pycountry.countries)

routers = [misp, router]
