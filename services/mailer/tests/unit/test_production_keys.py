"""In production the mailer signs with the deployment's instance key or not at all: the processes
that render mails or publish the key (api, consume and its DLQ replay, worker) refuse to start,
naming MAILER_GNUPG_INSTANCE_KEY_FILE, when it is unset or names no readable file, instead of
generating a key in their own GnuPG home. Development still generates one."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import click
import pytest

from mailer.bootstrap import create_app, spec
from mailer.settings import MailerSettings

PEPPER = secrets.token_hex(32)


def production(tmp_path: Path, **values: str) -> MailerSettings:
    return MailerSettings(environment="production", pepper=PEPPER, state_dir=str(tmp_path),
                          **values)


def test_production_without_the_key_file_setting_is_refused(tmp_path: Path) -> None:
    problem = production(tmp_path).instance_key_problem()
    assert problem and problem.startswith("set MAILER_GNUPG_INSTANCE_KEY_FILE")


def test_production_with_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    settings = production(tmp_path, gnupg_instance_key_file=str(tmp_path / "absent.asc"))
    problem = settings.instance_key_problem()
    assert problem and "MAILER_GNUPG_INSTANCE_KEY_FILE=" in problem and "absent.asc" in problem


def test_production_with_the_key_file_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "instance.asc").write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n")
    settings = production(tmp_path, gnupg_instance_key_file=str(tmp_path / "instance.asc"))
    assert settings.instance_key_problem() is None


def test_development_needs_no_key_file(tmp_path: Path) -> None:
    assert MailerSettings(environment="development",
                          state_dir=str(tmp_path)).instance_key_problem() is None


def test_the_consumer_and_its_dlq_replay_refuse(tmp_path: Path) -> None:
    settings = production(tmp_path)
    with pytest.raises(click.ClickException, match="MAILER_GNUPG_INSTANCE_KEY_FILE"):
        spec.handlers(settings)  # the consumer's, and `dlq replay`'s (single_handlers)
    with pytest.raises(click.ClickException, match="MAILER_GNUPG_INSTANCE_KEY_FILE"):
        spec.single_handlers(settings)
    assert spec.on_consumer_start is not None
    with pytest.raises(click.ClickException, match="MAILER_GNUPG_INSTANCE_KEY_FILE"):
        asyncio.run(spec.on_consumer_start(settings, None))


def test_the_api_refuses(tmp_path: Path) -> None:
    with pytest.raises(click.ClickException, match="MAILER_GNUPG_INSTANCE_KEY_FILE"):
        create_app(production(tmp_path))
    assert not (tmp_path / "mailer-gnupg").exists()


@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_production_process_without_the_key_stops_and_says_what_to_set(
        tmp_path: Path, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISP_", "MAILER_"))}
    env.update(MISP_ENVIRONMENT="production", MISP_PEPPER=PEPPER, MISP_STATE_DIR=str(tmp_path),
               MAILER_DATABASE_URL="postgresql+psycopg://x@127.0.0.1:1/db",
               MISP_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    done = subprocess.run([sys.executable, "-m", "mailer", command], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MAILER_GNUPG_INSTANCE_KEY_FILE" in done.stderr, done.stderr
    assert not (tmp_path / "mailer-gnupg").exists()
