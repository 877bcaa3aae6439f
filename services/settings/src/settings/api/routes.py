"""Routes of the settings service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "settings", "owns": "setting overrides, import blocklists and regexps, diagnostics"}
