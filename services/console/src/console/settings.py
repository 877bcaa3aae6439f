"""Settings of the console (environment prefix `CONSOLE_`, and `MISP_*` for what is shared)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from misp_platform.client_address import LOOPBACK


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8107
    # Where the console calls MISP's API, as the browser's user: the gateway, so that every
    # call takes the path (limits, routing, logs) a script's would.
    gateway_url: str = Field(
        default="http://127.0.0.1:8080",
        validation_alias=AliasChoices("CONSOLE_GATEWAY_URL", "MISP_GATEWAY_URL"))
    # When gateway_url is https: a PEM file of the certificates the console trusts for the
    # gateway (none: the system's CAs). Each one is an anchor of its own (a partial chain), so
    # the gateway's own certificate works, whoever signed it (compose and Kubernetes mount it).
    gateway_ca: str | None = None
    # The name the gateway's certificate is for, when gateway_url's host is not it (the
    # container's `gateway`): the TLS handshake sends it (SNI) and checks the certificate
    # against it, while connecting to gateway_url's host.
    gateway_tls_name: str | None = None
    api_timeout_s: float = 15.0
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto the console believes (the
    # gateway), as the services do (misp_platform.client_address).
    trusted_proxies: str = Field(
        default=LOOPBACK,
        validation_alias=AliasChoices("CONSOLE_TRUSTED_PROXIES", "MISP_TRUSTED_PROXIES"))
    log_format: str = Field(default="console",
                            validation_alias=AliasChoices("CONSOLE_LOG_FORMAT", "MISP_LOG_FORMAT"))
    log_level: str = Field(default="info",
                           validation_alias=AliasChoices("CONSOLE_LOG_LEVEL", "MISP_LOG_LEVEL"))
    # Live updates (live.py): the console's own read-only Kafka principal. No bootstrap servers:
    # no live updates (the pages work as before, reloaded by hand).
    kafka_bootstrap_servers: str = ""
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str = "misp_console"
    kafka_password: SecretStr = SecretStr("")
    kafka_ca_file: str | None = None
