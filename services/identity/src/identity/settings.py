"""Settings of the identity service (environment prefix `IDENTITY_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class IdentitySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="IDENTITY_", extra="ignore")

    service: ClassVar[str] = "identity"
    http_port: int = 8101
