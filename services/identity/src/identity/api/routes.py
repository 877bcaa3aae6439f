"""Routes of the identity service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/identity", tags=["identity"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "identity", "owns": "users, roles, authkeys, passwords, logins and sessions"}
