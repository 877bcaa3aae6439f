"""Settings of the jobs service (environment prefix `JOBS_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class JobsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOBS_", extra="ignore")

    service: ClassVar[str] = "jobs"
    http_port: int = 8104
