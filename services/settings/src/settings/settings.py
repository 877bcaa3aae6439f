"""Settings of the settings service (environment prefix `SETTINGS_`)."""

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings

# Each service's api port (deploy/services.tsv): where its operator endpoints answer.
DEFAULT_PORTS: dict[str, int] = {"identity": 8101, "orgs": 8102, "audit": 8103, "jobs": 8104,
                                 "mailer": 8105, "settings": 8106}


def default_diagnostics_urls() -> dict[str, str]:
    return {name: f"http://127.0.0.1:{port}/_svc/{name}/diagnostics"
            for name, port in DEFAULT_PORTS.items()}


def default_openapi_urls() -> dict[str, str]:
    return {name: f"http://127.0.0.1:{port}/api/v1/{name}/openapi"
            for name, port in DEFAULT_PORTS.items() if name != "settings"}


class SettingsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SETTINGS_", extra="ignore")

    service: ClassVar[str] = "settings"
    http_port: int = 8106
    # Where each service's diagnostics answer, as JSON: SETTINGS_DIAGNOSTICS_URLS='{"orgs":
    # "http://10.0.0.5:8102/_svc/orgs/diagnostics", ...}' (services missing here are not asked).
    diagnostics_urls: dict[str, str] = Field(default_factory=default_diagnostics_urls)
    diagnostics_timeout_s: float = 4.0
    # Where the other services' OpenAPI documents answer (MISP's queryACL lists their routes;
    # this service's own are read in-process), same form as diagnostics_urls.
    openapi_urls: dict[str, str] = Field(default_factory=default_openapi_urls)
