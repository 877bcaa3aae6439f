"""Settings of the audit service (environment prefix `AUDIT_`)."""

from pathlib import Path
from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings

# Every misp.* topic except the audit's own outputs and the dead-letter topics.
TOPIC_PATTERN = r"^misp\.(?!audit\.log\.|audit\.checkpoint\.)(?!.*\.dlq\.v\d+$)[^.]+\..+"


class AuditSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="AUDIT_", extra="ignore")

    service: ClassVar[str] = "audit"
    http_port: int = 8103
    # The Ed25519 checkpoint key: a file outside the audit database (default
    # <state_dir>/audit-signing.key, created once with mode 0600 by the consumer). Production
    # generates none: the processes that sign refuse to start without it (signing_key_problem).
    signing_key_path: str = ""
    # The published public half (PEM, `python -m audit public-key` prints it): when set, the API,
    # the verify command and job check with it alone, so verifiers need no secret.
    verify_key_path: str = ""
    checkpoint_interval_s: float = 30.0
    # Entries older than this many days are pruned, whole checkpoint ranges at a time (0: never).
    retention_days: int = 0
    prune_interval_s: float = 3600.0
    publish_siem: bool = True
    # The abuse detector (`python -m audit detect`, audit/detector.py): failed authentications
    # counted per address and per key prefix over a sliding window of abuse_window_s seconds
    # (moving by abuse_window_step_s); reaching a threshold blocks the address or the prefix in
    # every service for abuse_block_s seconds.
    abuse_window_s: int = 60
    abuse_window_step_s: int = 5
    abuse_address_threshold: int = 20
    abuse_key_prefix_threshold: int = 50
    abuse_block_s: int = 300

    @property
    def verify_key(self) -> Path | None:
        return Path(self.verify_key_path) if self.verify_key_path else None

    @property
    def key_path(self) -> Path:
        return Path(self.signing_key_path or Path(self.state_dir) / "audit-signing.key")

    def signing_key_problem(self) -> str | None:
        """Why a process that signs checkpoints (consume, worker, checkpoint, prune, rebuild)
        may not start, or None. In production the key is the deployment's, a file mounted from a
        secret into every audit process: one generated in a container's state directory would
        sign checkpoints that no other process, and no later container, verifies."""
        return self.production_key_file_problem(
            "AUDIT_SIGNING_KEY_PATH", self.signing_key_path, what="the audit's signing key",
            unset=("set AUDIT_SIGNING_KEY_PATH to the audit's Ed25519 signing key (a PEM file "
                   "mounted from a secret, e.g. made by `openssl genpkey -algorithm ed25519`): "
                   "production generates no key"))
