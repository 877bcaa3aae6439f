"""Base settings of every service (pydantic-settings), one env prefix per service.

Deployment-wide values (Kafka, the PostgreSQL server, the authkey pepper) come from `MISP_*`
variables unless the service's own prefix overrides them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from misp_platform.addresses import LOOPBACK, Network, parse_networks, render_networks

DEV_PEPPER = "insecure-development-pepper"
MIN_PEPPER = 32
DEVELOPMENT = "development"
# The local stack's addresses: the built-in defaults, fine in development only.
LOCAL_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:55432"
LOCAL_KAFKA = "127.0.0.1:9092"
# What a command may need (ServiceSettings.unconfigured).
DATABASE = "database"
KAFKA = "kafka"


class ServiceSettings(BaseSettings):
    """Subclass per service with `service = "<name>"` and `env_prefix="<NAME>_"`."""

    model_config = SettingsConfigDict(extra="ignore")

    service: ClassVar[str] = "platform"

    environment: str = DEVELOPMENT
    database_url: str = ""
    kafka_bootstrap_servers: str = LOCAL_KAFKA
    pepper: SecretStr = SecretStr(DEV_PEPPER)
    http_host: str = "127.0.0.1"
    http_port: int = 8100
    log_format: str = "console"
    log_level: str = "info"
    state_dir: str = ".local"
    # Consumer tuning: retries of a failing message before it goes to the DLQ.
    consumer_max_attempts: int = 3
    consumer_retry_backoff_s: float = 0.2
    # The consumer group (default `misp.<service>`); a crash test runs a real process in its own.
    consumer_group: str = ""
    # Read-your-writes (consistency.py): a 2xx answer waits for its events to reach Kafka (at
    # most publish_wait_s), a read that misses waits for its projection (at most
    # projection_wait_s). Off, both fall back to "eventually" (in-process tests turn it off).
    read_your_writes: bool = True
    publish_wait_s: float = 2.0
    projection_wait_s: float = 5.0
    # Job workers (`python -m <service> worker`, worker_command.py): the consumer group of a
    # queue's workers (default `misp.<service>.worker.<queue>`; a test runs a real worker in a
    # group of its own), the heartbeat period, and how many jobs a worker claims at once.
    worker_group: str = ""
    worker_heartbeat_s: float = 2.0
    worker_prefetch: int = 1
    # The cap of one Kafka message in bytes, checked when it is written to the outbox (well
    # below the broker's `message.max.bytes`, so the relay never holds a row Kafka refuses).
    max_message_bytes: int = 512 * 1024
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (client_address.py),
    # comma-separated networks in CIDR notation (loopback by default); empty: none.
    trusted_proxies: str = LOOPBACK
    # Abuse limits (auth/abuse.py): networks never limited nor counted (loopback by default,
    # like fail2ban's ignoreip); the failed authentications an address may make in a window
    # before this process answers it 429 without a lookup or a write (0: no budget); whether the
    # API follows the abuse detector's blocks (in-process tests turn it off).
    abuse_exempt_networks: str = LOOPBACK
    auth_fail_budget: int = 30
    auth_fail_window_s: float = 60.0
    follow_abuse_blocks: bool = True
    # PostgreSQL (db.py), in seconds: opening a connection, one statement (0: no limit), waiting
    # for a pooled connection; the operator commands and job workers whose statements may
    # rightly run long (audit verify, prune, rebuild) use db_long_statement_timeout_s.
    db_connect_timeout_s: float = 5.0
    db_statement_timeout_s: float = 30.0
    db_long_statement_timeout_s: float = 3600.0
    db_pool_timeout_s: float = 10.0
    # The health and metrics port of the roles that serve no HTTP (relay, consume, worker,
    # scheduler; ops_port.py): 0, none (the local stack runs them all on one machine).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"

    @model_validator(mode="before")
    @classmethod
    def _deployment_defaults(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        shared = {
            "kafka_bootstrap_servers": "MISP_KAFKA_BOOTSTRAP_SERVERS",
            "pepper": "MISP_PEPPER",
            "log_format": "MISP_LOG_FORMAT",
            "log_level": "MISP_LOG_LEVEL",
            "state_dir": "MISP_STATE_DIR",
            "environment": "MISP_ENVIRONMENT",
            "read_your_writes": "MISP_READ_YOUR_WRITES",
            "max_message_bytes": "MISP_MAX_MESSAGE_BYTES",
            "trusted_proxies": "MISP_TRUSTED_PROXIES",
            "abuse_exempt_networks": "MISP_ABUSE_EXEMPT_NETWORKS",
            "auth_fail_budget": "MISP_AUTH_FAIL_BUDGET",
            "auth_fail_window_s": "MISP_AUTH_FAIL_WINDOW_S",
            "follow_abuse_blocks": "MISP_FOLLOW_ABUSE_BLOCKS",
            "db_connect_timeout_s": "MISP_DB_CONNECT_TIMEOUT_S",
            "db_statement_timeout_s": "MISP_DB_STATEMENT_TIMEOUT_S",
            "db_long_statement_timeout_s": "MISP_DB_LONG_STATEMENT_TIMEOUT_S",
            "db_pool_timeout_s": "MISP_DB_POOL_TIMEOUT_S",
            "metrics_port": "MISP_METRICS_PORT",
            "metrics_host": "MISP_METRICS_HOST",
        }
        for field, env in shared.items():
            if field not in values and env in os.environ:
                values[field] = os.environ[env]
        if not values.get("database_url"):
            # LOCAL_PG_URL spelled out: deploy/configuration_doc.py reads literal defaults.
            base = os.environ.get("MISP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:55432")
            values["database_url"] = f"{base}/misp_{cls.service}"
        return values

    @field_validator("trusted_proxies", "abuse_exempt_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        """A bad entry stops the process: trusting the wrong peers is not a default to fall to."""
        return render_networks(parse_networks(value))

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @property
    def abuse_exempt(self) -> tuple[Network, ...]:
        return parse_networks(self.abuse_exempt_networks)

    @property
    def main_group(self) -> str:
        """The consumer group of the service's own projections and reactions."""
        return self.consumer_group or f"misp.{self.service}"

    @property
    def principals_group(self) -> str:
        """The consumer group of the principals projection (a consumer of its own)."""
        return f"{self.main_group}.principals"

    def unconfigured(self, needs: Iterable[str]) -> list[str]:
        """The variables to set before `needs` (DATABASE, KAFKA) may be used: those whose value
        is still the built-in local default with none of their variables in the environment."""
        prefix = str(self.model_config.get("env_prefix", ""))
        candidates = {
            DATABASE: (self.database_url == f"{LOCAL_PG_URL}/misp_{self.service}",
                       [f"{prefix}DATABASE_URL", "MISP_PG_URL"]),
            KAFKA: (self.kafka_bootstrap_servers == LOCAL_KAFKA,
                    ["MISP_KAFKA_BOOTSTRAP_SERVERS", f"{prefix}KAFKA_BOOTSTRAP_SERVERS"]),
        }
        present = {name.upper() for name in os.environ}
        missing = []
        for need in needs:
            is_default, names = candidates[need]
            if is_default and not present & set(names):
                missing.append(f"{names[0]} (or {names[1]})")
        return missing

    def production_key_file_problem(self, variable: str, value: str, *, unset: str,
                                    what: str) -> str | None:
        """Why a process that needs the deployment's key file `value` (its setting `variable`)
        may not start, or None: in production the key is a file mounted from a secret, never
        one the process generates. `unset` is the message when no file is set, `what` names the
        key in the others."""
        if self.environment.strip().lower() != "production":
            return None
        if not value:
            return unset
        path = Path(value)
        if not path.is_file():
            return (f"{variable}={path} is no file: mount {what} there (production generates "
                    "no key)")
        if not os.access(path, os.R_OK):
            return f"{variable}={path} cannot be read by this process"
        return None

    @model_validator(mode="after")
    def _no_default_secrets_in_production(self) -> ServiceSettings:
        if self.environment == "production":
            problem = weak_pepper(self.pepper.get_secret_value())
            if problem:
                raise ValueError(f"set MISP_PEPPER to a secret of at least {MIN_PEPPER} random "
                                 f"characters (e.g. `openssl rand -hex 32`): {problem}")
        return self


def weak_pepper(pepper: str) -> str | None:
    """Why a pepper may not protect production's keys and passwords, or None."""
    if pepper == DEV_PEPPER:
        return "the development pepper is refused in production"
    if len(pepper) < MIN_PEPPER:
        return f"it has {len(pepper)} characters"
    if len(set(pepper)) == 1:
        return "it is one character repeated"
    return None


def settings_class(service: str) -> type[ServiceSettings]:
    """A settings class for a service that needs nothing beyond the base."""
    return type(
        f"{service.title()}Settings",
        (ServiceSettings,),
        {"service": service, "model_config": SettingsConfigDict(env_prefix=f"{service.upper()}_",
                                                                 extra="ignore")},
    )
