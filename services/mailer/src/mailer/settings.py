"""Settings of the mailer service (environment prefix `MAILER_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class MailerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MAILER_", extra="ignore")

    service: ClassVar[str] = "mailer"
    http_port: int = 8105
