"""Settings of the orgs service (environment prefix `ORGS_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class OrgsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORGS_", extra="ignore")

    service: ClassVar[str] = "orgs"
    http_port: int = 8102
    # Logo uploads: PNG only, checked by content; 48x48 is what the UI shows.
    logo_max_bytes: int = 256 * 1024
    logo_max_width: int = 512
    logo_max_height: int = 512
    # A merge answers once the saga finished (users moved, source closed), or after this long
    # with `"status": "running"` (read-your-writes off: at once).
    merge_wait_s: float = 10.0
