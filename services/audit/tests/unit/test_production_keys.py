"""In production the audit signs with the deployment's key or not at all: the processes that sign
(consume, worker, checkpoint, prune, rebuild) refuse to start, naming AUDIT_SIGNING_KEY_PATH,
when it is unset or names no readable file, instead of generating a key in their state directory
that no other process would share. Development still generates one."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from pathlib import Path

import click
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from audit.adapters.keys import load_or_create_key
from audit.bootstrap import SIGNING_COMMANDS, spec
from audit.settings import AuditSettings

PEPPER = secrets.token_hex(32)


def production(tmp_path: Path, **values: str) -> AuditSettings:
    return AuditSettings(environment="production", pepper=PEPPER, state_dir=str(tmp_path),
                         **values)


def write_key(path: Path) -> Path:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def test_production_without_a_signing_key_path_is_refused(tmp_path: Path) -> None:
    problem = production(tmp_path).signing_key_problem()
    assert problem and problem.startswith("set AUDIT_SIGNING_KEY_PATH")


def test_production_with_a_missing_key_file_is_refused(tmp_path: Path) -> None:
    problem = production(tmp_path,
                         signing_key_path=str(tmp_path / "absent.key")).signing_key_problem()
    assert problem and "AUDIT_SIGNING_KEY_PATH=" in problem and "absent.key" in problem


def test_production_with_the_key_file_is_accepted(tmp_path: Path) -> None:
    key = write_key(tmp_path / "signing.key")
    assert production(tmp_path, signing_key_path=str(key)).signing_key_problem() is None


def test_development_still_generates_a_key_in_the_state_directory(tmp_path: Path) -> None:
    settings = AuditSettings(environment="development", state_dir=str(tmp_path))
    assert settings.signing_key_problem() is None
    load_or_create_key(settings.key_path)
    assert settings.key_path == tmp_path / "audit-signing.key" and settings.key_path.is_file()


def test_the_consumer_refuses_before_it_signs_anything(tmp_path: Path) -> None:
    assert spec.on_consumer_start is not None
    with pytest.raises(click.ClickException, match="AUDIT_SIGNING_KEY_PATH"):
        asyncio.run(spec.on_consumer_start(production(tmp_path), None))
    assert not (tmp_path / "audit-signing.key").exists()


def production_env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MISP_", "AUDIT_"))}
    env.update(MISP_ENVIRONMENT="production", MISP_PEPPER=PEPPER, MISP_STATE_DIR=str(tmp_path),
               AUDIT_DATABASE_URL="postgresql+psycopg://x@127.0.0.1:1/db",
               MISP_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", **more)
    return env


@pytest.mark.parametrize("command", [["worker"], ["checkpoint"], ["prune", "--days", "1", "-y"],
                                     ["rebuild", "-y"]])
def test_a_production_process_without_the_key_stops_and_says_what_to_set(
        tmp_path: Path, command: list[str]) -> None:
    assert command[0] in SIGNING_COMMANDS
    done = subprocess.run([sys.executable, "-m", "audit", *command], env=production_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "AUDIT_SIGNING_KEY_PATH" in done.stderr, done.stderr
    assert not (tmp_path / "audit-signing.key").exists()


def test_a_verifier_needs_only_the_published_key_in_production(tmp_path: Path) -> None:
    """What the API and the verifiers run with: the public key, no signing secret."""
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "verify.pem").write_bytes(pem)
    done = subprocess.run([sys.executable, "-m", "audit", "public-key"],
                          env=production_env(tmp_path,
                                             AUDIT_VERIFY_KEY_PATH=str(tmp_path / "verify.pem")),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.encode() == pem
