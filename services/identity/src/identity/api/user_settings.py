"""MISP's user-setting paths: userSettings/index, setSetting, getSetting, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from identity.adapters.store import SqlUnitOfWork
from identity.api.deps import EngineDep, as_misp
from identity.domain import user_settings as rules
from identity.domain.values import to_int
from identity.handlers import user_settings as handlers
from misp_platform.auth import CurrentPrincipal
from misp_platform.misp import NamedParams, NotFound, read_body, success
from misp_platform.misp.paging import Paging

router = APIRouter(tags=["user settings"])


async def _body(request: Request, user_id: str | None, setting: str | None) -> dict[str, Any]:
    """The body (flat or `{"UserSetting": ...}`); path parameters win, as in MISP."""
    body = await read_body(request, "UserSetting") if request.method != "GET" else {}
    if user_id not in (None, ""):
        body["user_id"] = user_id
    if setting not in (None, ""):
        body["setting"] = setting
    return body


@router.get("/userSettings/index")
async def index(principal: CurrentPrincipal, engine: EngineDep, named: NamedParams,
                page: Paging) -> list[dict[str, Any]]:
    return await handlers.index(SqlUnitOfWork(engine), principal, named, page)


@router.post("/userSettings/setSetting/{user_id}/{setting}")
@router.post("/userSettings/setSetting/{user_id}")
@router.post("/userSettings/setSetting")
async def set_setting(request: Request, principal: CurrentPrincipal, engine: EngineDep,
                      user_id: str | None = None, setting: str | None = None) -> dict[str, Any]:
    body = await _body(request, user_id, setting)
    with as_misp(request, "setSetting", "UserSettings"):
        return await handlers.set_setting(SqlUnitOfWork(engine), principal, body)


@router.api_route("/userSettings/getSetting/{user_id}/{setting}", methods=["GET", "POST"])
@router.api_route("/userSettings/getSetting", methods=["GET", "POST"])
async def get_setting(request: Request, principal: CurrentPrincipal, engine: EngineDep,
                      user_id: str | None = None, setting: str | None = None) -> dict[str, Any]:
    body = await _body(request, user_id, setting)
    with as_misp(request, "getSetting", "UserSettings"):
        return await handlers.get_setting(SqlUnitOfWork(engine), principal, body)


@router.api_route("/userSettings/delete/{setting_id}", methods=["POST", "DELETE"])
@router.api_route("/userSettings/delete", methods=["POST", "DELETE"])
async def delete(request: Request, principal: CurrentPrincipal, engine: EngineDep,
                 setting_id: str | None = None) -> dict[str, Any]:
    number: int | None = None
    if setting_id is not None:
        number = to_int(setting_id)
        if number is None:
            raise NotFound(rules.INVALID_USER_SETTING)
    body = await _body(request, None, None)
    with as_misp(request, "delete", "UserSettings", number):
        deleted = await handlers.delete_setting(SqlUnitOfWork(engine), principal, number, body)
    return success("delete", "UserSettings", f"/UserSettings/delete/{deleted}", id=deleted,
                   message=rules.SETTING_DELETED)
