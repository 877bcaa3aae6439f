"""Routes of the jobs service; MISP paths are added here as the service grows.

`/api/v1/jobs/` and `/api/v1/jobs/whoami` come with every service (misp_platform.app).
"""

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
