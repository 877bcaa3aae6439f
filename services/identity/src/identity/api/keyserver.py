"""MISP's "Fetch GnuPG key": users/searchGpgKey (and its older name users/fetchPGPKey) list a
key server's keys for an e-mail address; users/fetchGpgKey answers one armored public key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from identity.adapters.store import SqlUnitOfWork
from identity.api.deps import EngineDep
from identity.handlers import keyserver as handlers
from misp_platform.auth import Admin
from misp_platform.misp.errors import MispHTTPError

router = APIRouter(tags=["users"])


@router.get("/users/searchGpgKey/{email}")
@router.get("/users/fetchPGPKey/{email}")
async def search_gpg_key(email: str, principal: Admin, engine: EngineDep) -> list[dict[str, Any]]:
    try:
        return await handlers.search_keys(SqlUnitOfWork(engine), email)
    except handlers.KeyServerUnavailableError as exc:
        raise MispHTTPError(502, str(exc)) from exc


@router.get("/users/fetchGpgKey/{fingerprint}")
@router.get("/users/fetchPGPKey/{email}/{fingerprint}")
async def fetch_gpg_key(fingerprint: str, principal: Admin, engine: EngineDep,
                        email: str | None = None) -> PlainTextResponse:
    try:
        key = await handlers.fetch_key(SqlUnitOfWork(engine), fingerprint, email=email)
    except handlers.KeyServerUnavailableError as exc:
        raise MispHTTPError(502, str(exc)) from exc
    return PlainTextResponse(key)
