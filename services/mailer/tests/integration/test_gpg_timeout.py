"""A gpg that hangs is killed after MAILER_GPG_TIMEOUT_S and the operation fails like any gpg
error, instead of holding a mail (and the worker's slot) forever. The hang is a real gpg run
behind a launcher that stalls signing; everything else goes to the real gpg."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from mailer.adapters.gpg import GpgError, Keyring

# Longer than pytest's own timeout (300 s): without the limit the test fails, it never
# passes late. The stalled run leaves its pid, so the test can see it was killed.
STALLS_SIGNING = """#!/bin/sh
case " $* " in *" --sign "*|*" -s "*|*" --detach-sign "*) echo $$ > {pid}; exec sleep 900;; esac
exec {gpg} "$@"
"""


@pytest.fixture
def stalling_gpg(tmp_path: Path) -> str:
    real = shutil.which("gpg")
    assert real, "gpg is not installed"
    script = tmp_path / "gpg-stalls"
    script.write_text(STALLS_SIGNING.format(gpg=real, pid=tmp_path / "stalled.pid"))
    script.chmod(0o755)
    return str(script)


def test_a_hanging_gpg_is_killed_and_the_signature_fails(tmp_path: Path,
                                                         stalling_gpg: str) -> None:
    keyring = Keyring(tmp_path / "home", binary=stalling_gpg, timeout_s=1)
    try:
        keyring.ensure_instance_key(name="Test", email="misp@example.test")
        with pytest.raises(GpgError, match="signing failed"):
            keyring.sign_detached(b"hello\r\n")
        stalled = int((tmp_path / "stalled.pid").read_text())
        with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
            os.kill(stalled, 0)
    finally:
        keyring.close()


def test_within_the_limit_gpg_runs_as_ever(tmp_path: Path) -> None:
    keyring = Keyring(tmp_path / "home", timeout_s=30)
    try:
        keyring.ensure_instance_key(name="Test", email="misp@example.test")
        signature, micalg = keyring.sign_detached(b"hello\r\n")
        assert "BEGIN PGP SIGNATURE" in signature and micalg == "pgp-sha256"
        assert (tmp_path / "home" / "gpg-bounded").read_text().count("timeout") == 1
    finally:
        keyring.close()
