"""Routes of the mailer service; MISP paths are added here as the service grows.

`/api/v1/mailer/` and `/api/v1/mailer/whoami` come with every service (misp_platform.app).
"""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/mailer", tags=["mailer"])
