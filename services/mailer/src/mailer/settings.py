"""Settings of the mailer service (environment prefix `MAILER_`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from misp_platform.config import ServiceSettings


class MailerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MAILER_", extra="ignore")

    service: ClassVar[str] = "mailer"
    http_port: int = 8105

    # SMTP relay.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_starttls: bool = False
    smtp_implicit_tls: bool = False  # SMTPS (port 465): TLS from the first byte
    smtp_ca_file: str = ""  # a private CA's PEM bundle for the relay's certificate
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_s: float = 10.0
    # Delivery: transient failures (4xx, connection errors) are retried with exponential
    # backoff, `max_attempts` in all; 5xx refusals fail at once.
    max_attempts: int = 6
    backoff_base_s: float = 5.0
    backoff_max_s: float = 3600.0
    lease_s: float = 120.0
    poll_interval_s: float = 1.0
    deliver_batch: int = 20
    smtp_connections: int = 2
    # Mails an SMTP session sends before it records them in one transaction: the most a crash
    # can make it send twice (same Message-ID). 1: record each mail as it goes (the default);
    # 8 doubles the delivery's speed for that bound (handlers/deliver.py).
    record_batch: int = 1
    # Whether the API process runs the delivery loop (it is safe in several processes).
    deliver_in_api: bool = True
    # The instance GnuPG home (empty: <state_dir>/mailer-gnupg; keep it short, sockets live
    # there) and the passphrase of its key, if it has one.
    gnupg_home: str = ""
    gnupg_passphrase: SecretStr = SecretStr("")
    # The instance's secret key as a file (an armored export, mounted from a secret): every
    # process imports it into its home and signs with it. Empty: generated once per home, in
    # development only (production refuses to start without it: instance_key_problem).
    gnupg_instance_key_file: str = ""
    gpg_binary: str = "gpg"
    # How many gpg processes may sign/encrypt at once.
    gpg_parallelism: int = 4
    # How long one gpg run may take before it is killed and fails (0: no limit).
    gpg_timeout_s: float = 30.0

    @property
    def gateway_url(self) -> str:
        """Where the gateway answers (MISP_GATEWAY_URL): the base of the links a mail carries
        when the server setting MISP.baseurl is empty."""
        return os.environ.get("MISP_GATEWAY_URL", "")

    def gnupg_homedir(self) -> Path:
        return Path(self.gnupg_home) if self.gnupg_home else Path(self.state_dir) / "mailer-gnupg"

    def instance_key_problem(self) -> str | None:
        """Why a process that may sign or publish the instance key (api, consume, worker) may
        not start, or None. In production the key is the deployment's, a file mounted from a
        secret: one generated in a process's GnuPG home would sign differently from the other
        processes and from /gpg.asc after a restart. Whether mails are signed (GnuPG.sign, on by
        default) is a setting in the database, unknown at start, and encrypted mails are signed
        and /gpg.asc published whatever it says: production always needs the file."""
        return self.production_key_file_problem(
            "MAILER_GNUPG_INSTANCE_KEY_FILE", self.gnupg_instance_key_file,
            what="the instance key",
            unset=("set MAILER_GNUPG_INSTANCE_KEY_FILE to the instance's OpenPGP secret key (an "
                   "armored export, `gpg --armor --export-secret-keys FINGERPRINT`, mounted from "
                   "a secret): production generates no key"))
