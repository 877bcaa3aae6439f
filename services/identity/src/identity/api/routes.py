"""Routes of the identity service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

from misp_platform.auth import CurrentPrincipal
from misp_platform.misp import misp_record

router = APIRouter(prefix="/api/v1/identity", tags=["identity"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "identity", "owns": "users, roles, authkeys, passwords, logins and sessions"}


@router.get("/whoami")
async def whoami(principal: CurrentPrincipal) -> dict[str, object]:
    """Who this service takes the caller to be, from its own principals projection."""
    return misp_record(
        "User", {"id": principal.user_id, "email": principal.email},
        Organisation={"id": principal.org_id, "name": principal.org_name},
        Role={"id": principal.role.id, "name": principal.role.name},
    )
