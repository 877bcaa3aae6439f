"""MISP's self-registration paths: users/register (no auth), users/registrations/index,
users/acceptRegistrations/{id}, users/discardRegistrations/{id} (site admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from identity.adapters.store import SqlUnitOfWork
from identity.api.auth import client_ip_of, request_id_of
from identity.api.deps import EngineDep, as_misp
from identity.domain import registrations as rules
from identity.handlers import registrations as handlers
from misp_platform.auth import SiteAdmin
from misp_platform.misp import read_body, success
from misp_platform.misp.paging import Paging

router = APIRouter(tags=["registrations"])


@router.post("/users/register")
async def register(request: Request, engine: EngineDep) -> dict[str, Any]:
    """No authentication: anyone may ask for an account when the instance allows it."""
    body = await read_body(request, "User")
    with as_misp(request, "register", "User"):
        await handlers.register(SqlUnitOfWork(engine), body, ip=client_ip_of(request),
                                user_agent=request.headers.get("user-agent"),
                                request_id=request_id_of(request))
    return success("register", "User", "/users/register", message=rules.SUBMITTED)


@router.get("/users/registrations/index")
@router.get("/users/registrations")
async def registrations(principal: SiteAdmin, engine: EngineDep,
                        page: Paging) -> list[dict[str, Any]]:
    return await handlers.index(SqlUnitOfWork(engine), page)


@router.post("/users/acceptRegistrations/{registration_id}")
async def accept(registration_id: str, request: Request, principal: SiteAdmin,
                 engine: EngineDep) -> dict[str, Any]:
    body = await read_body(request, "User")
    with as_misp(request, "acceptRegistrations", "User", registration_id):
        number, _user_id = await handlers.accept(
            SqlUnitOfWork(engine), principal, handlers.registration_key(registration_id), body)
    return success("acceptRegistrations", "User", f"/users/acceptRegistrations/{number}",
                   id=number, message="Added 1 user(s).")


@router.api_route("/users/discardRegistrations/{registration_id}", methods=["POST", "DELETE"])
async def discard(registration_id: str, request: Request, principal: SiteAdmin,
                  engine: EngineDep) -> dict[str, Any]:
    with as_misp(request, "discardRegistrations", "User", registration_id):
        number = await handlers.discard(SqlUnitOfWork(engine), principal,
                                        handlers.registration_key(registration_id))
    return success("discardRegistrations", "User", f"/users/discardRegistrations/{number}",
                   id=number, message="1 registration(s) discarded.")
