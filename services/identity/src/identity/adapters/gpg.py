"""Users' GnuPG keys, checked with the real gpg binary in a throwaway home directory."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import gnupg

INVALID_KEY = "GnuPG key not valid, please enter a valid key."
FETCH_OFFLINE = ("Fetching a GnuPG key from a key server is not available on this instance "
                 "(no outgoing connection): paste the public key instead.")


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    uids: tuple[str, ...]
    validity: str = ""  # gpg's validity letter: "e" expired, "r" revoked
    expires: int | None = None  # seconds since the epoch; None: never


def _inspect(armored: str) -> KeyInfo | None:
    # Short home paths: gpg's agent socket must fit in ~108 bytes.
    home = tempfile.mkdtemp(prefix="gpg", dir="/tmp")
    try:
        gpg = gnupg.GPG(gnupghome=home)
        gpg.encoding = "utf-8"
        result = gpg.import_keys(armored)
        public = [k for k in gpg.list_keys() if k.get("type") == "pub"]
        if not result.fingerprints or len(public) != 1 or gpg.list_keys(True):
            return None
        key = public[0]
        expires = str(key.get("expires") or "")
        return KeyInfo(fingerprint=key["fingerprint"], uids=tuple(key.get("uids", ())),
                       validity=str(key.get("trust") or ""),
                       expires=int(expires) if expires.isdigit() else None)
    except (OSError, ValueError):
        return None
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                       capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


async def inspect_public_key(armored: str) -> KeyInfo | None:
    """The key's fingerprint if `armored` is exactly one OpenPGP public key, else None."""
    if "-----BEGIN PGP PUBLIC KEY BLOCK-----" not in armored:
        return None
    return await asyncio.to_thread(_inspect, armored)
