"""Production refuses a pepper that protects nothing (the built-in one, a short one, one character
repeated, as compose once defaulted to 64 zeros), and a real process stops with a message that
names what to set; development keeps its built-in pepper."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from pydantic import ValidationError

from misp_platform.config import DEV_PEPPER, ServiceSettings


@pytest.mark.parametrize("pepper", [DEV_PEPPER, "0" * 64, "short-but-random-" + "x" * 5])
def test_a_weak_pepper_is_refused_in_production(pepper: str) -> None:
    with pytest.raises(ValidationError, match="set MISP_PEPPER to a secret of at least 32"):
        ServiceSettings(environment="production", pepper=pepper)


def test_a_random_pepper_is_accepted_in_production_and_the_default_in_development() -> None:
    pepper = secrets.token_hex(32)
    assert ServiceSettings(environment="production",
                           pepper=pepper).pepper.get_secret_value() == pepper
    assert ServiceSettings(environment="development",
                           pepper=DEV_PEPPER).pepper.get_secret_value() == DEV_PEPPER


def test_a_production_process_without_a_pepper_stops_and_says_what_to_set() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISP_", "ORGS_"))}
    env.update(MISP_ENVIRONMENT="production", ORGS_DATABASE_URL="postgresql+psycopg://x@h/db",
               MISP_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    done = subprocess.run([sys.executable, "-m", "orgs", "api"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MISP_PEPPER" in done.stderr and "openssl rand -hex 32" in done.stderr
