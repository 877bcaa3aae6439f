"""Settings of the audit service (environment prefix `AUDIT_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore")

    service: ClassVar[str] = "audit"
    http_port: int = 8103
