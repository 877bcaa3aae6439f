"""Settings of the orgs service (environment prefix `ORGS_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class OrgsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORGS_", extra="ignore")

    service: ClassVar[str] = "orgs"
    http_port: int = 8102
