"""Routes of the orgs service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/orgs", tags=["orgs"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "orgs", "owns": "organisations (local and remote), logos and merges"}
