"""Routes of the jobs service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "jobs", "owns": "background jobs, workers and scheduled tasks"}
