"""Routes of the mailer service; MISP paths are added here as the service grows."""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/mailer", tags=["mailer"])


@router.get("/")
async def about() -> dict[str, str]:
    """What this service is (for operators; MISP clients never call it)."""
    return {"service": "mailer", "owns": "outgoing mail to users and the instance GnuPG key"}
