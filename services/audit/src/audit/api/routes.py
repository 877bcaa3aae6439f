"""Routes of the audit service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "audit", "owns": "the searchable audit log, a projection of every other service's events"}
