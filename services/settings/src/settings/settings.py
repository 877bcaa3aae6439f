"""Settings of the settings service (environment prefix `SETTINGS_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class SettingsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SETTINGS_", extra="ignore")

    service: ClassVar[str] = "settings"
    http_port: int = 8106
