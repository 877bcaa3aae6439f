"""Settings of the jobs service (environment prefix `JOBS_`)."""

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class JobsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="JOBS_", extra="ignore")

    service: ClassVar[str] = "jobs"
    http_port: int = 8104
    # The scheduler: how often it looks for due ticks and retries, and how many heartbeats a
    # worker may miss before its job is retried or failed.
    scheduler_poll_s: float = 0.2
    missed_heartbeats: float = 3.0
    # How often a scheduler records that it is alive (`servers/getWorkers`, the diagnostics).
    scheduler_beat_s: float = 2.0
