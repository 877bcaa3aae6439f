"""The instance keyring over the real gpg (python-gnupg): the instance key (generated on first
run), users' public keys (imported and checked), detached signatures and sign+encrypt.

Every call spawns a gpg process: callers run these methods in a thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import gnupg
import structlog

from mailer.settings import MailerSettings

log = structlog.get_logger(__name__)

HASH_ALGOS = {"2": "pgp-sha1", "8": "pgp-sha256", "9": "pgp-sha384", "10": "pgp-sha512",
              "11": "pgp-sha224"}
# Every gpg run of a sign or encrypt reads the home's `random_seed` at start and rewrites it at
# exit under an fcntl lock, and a run that finds it locked sleeps 250 ms before trying again
# (libgcrypt's lock_seed_file): two runs at once mostly wait on each other, so parallel gpg
# was no faster than one at a time. Without the file, each run seeds libgcrypt's generator from
# the kernel (getrandom), as it does on a first run anyway: the same keys, algorithms and
# strength, only no pool carried over between runs.
NO_SEED_FILE = "--no-random-seed-file"
INSTANCE_KEY_WARNING = ("This key is used only to sign the instance's notifications: it must "
                        "not be used anywhere else and should not be valuable.")


SECRET_KEY_REFUSED = "secret key material is refused: paste the public key only"


class GpgError(Exception):
    """gpg refused to sign or encrypt."""


@dataclass(frozen=True)
class KeyCheck:
    """What a user's public key is worth: usable for encryption, or why not."""

    fingerprint: str | None
    usable: bool
    problem: str | None = None  # "invalid", "expired", "revoked", "no encryption subkey"
    expires: int | None = None


class Keyring:
    """One GnuPG home holding the instance key and the users' public keys."""

    def __init__(self, homedir: Path, *, binary: str = "gpg", passphrase: str = "",
                 instance_key_file: Path | None = None, timeout_s: float = 0) -> None:
        self.homedir = homedir
        self.passphrase = passphrase or None
        homedir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if timeout_s > 0:
            binary = str(_bounded(binary, homedir, timeout_s))
        self.gpg = gnupg.GPG(gpgbinary=binary, gnupghome=str(homedir))
        self.gpg.encoding = "utf-8"
        self._imported: dict[str, KeyCheck] = {}
        self._lock = threading.Lock()
        # Imports write the keyring: two at once into a new home can fail (one in ~40 seen,
        # "invalid" for a good key), so they take turns; signing and encrypting need not.
        self._import_lock = threading.Lock()
        self.fingerprint: str | None = None
        # A deployment's instance key (a mounted secret): every process, in any fresh home,
        # signs with it, so /gpg.asc matches every signature across restarts and replicas.
        self.instance_key_file = instance_key_file

    # ---- the instance key --------------------------------------------------------------------

    def ensure_instance_key(self, *, name: str, email: str) -> str:
        """The fingerprint of the instance key (the secret key of this home), generated when
        there is none; a file lock keeps two processes from generating two keys."""
        with open(self.homedir / ".instance-key.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.instance_key_file is not None:
                self.fingerprint = self._import_instance_key(self.instance_key_file)
                return self.fingerprint
            secret = self.gpg.list_keys(secret=True)
            if secret:
                self.fingerprint = str(secret[0]["fingerprint"])
                return self.fingerprint
            params = self.gpg.gen_key_input(
                name_real=name, name_email=email, key_type="EDDSA", key_curve="ed25519",
                subkey_type="ECDH", subkey_curve="cv25519", expire_date=0,
                name_comment="instance signing key",
                **({"passphrase": self.passphrase} if self.passphrase
                   else {"no_protection": True}))
            result = self.gpg.gen_key(params)
            if not result.fingerprint:
                raise GpgError(f"could not generate the instance key: {result.stderr[-300:]}")
            self.fingerprint = str(result.fingerprint)
            log.info("mailer.instance_key_generated", fingerprint=self.fingerprint)
            return self.fingerprint

    def _import_instance_key(self, path: Path) -> str:
        """Import the deployment's secret key from `path` (once per home) and return its
        fingerprint; GpgError when the file holds no single secret key."""
        try:
            armored = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GpgError(f"cannot read the instance key file {path}: {exc}") from None
        secret = [k for k in self.gpg.scan_keys_mem(armored) if k.get("type") == "sec"]
        if len(secret) != 1:
            raise GpgError(f"{path} must hold exactly one OpenPGP secret key "
                           f"(found {len(secret)})")
        fingerprint = str(secret[0]["fingerprint"])
        if not self.gpg.list_keys(secret=True, keys=[fingerprint]):
            result = self.gpg.import_keys(armored, passphrase=self.passphrase or None)
            if fingerprint not in (result.fingerprints or []):
                raise GpgError(f"could not import the instance key from {path}: "
                               f"{str(result.stderr)[-300:]}")
            log.info("mailer.instance_key_imported", fingerprint=fingerprint)
        return fingerprint

    def public_key(self) -> str:
        if self.fingerprint is None:
            return ""
        return str(self.gpg.export_keys(self.fingerprint))

    # ---- users' keys -------------------------------------------------------------------------

    def check_key(self, armored: str) -> KeyCheck:
        """Import a user's public key (idempotent; cached by its text) and say if it can be
        encrypted to."""
        digest = hashlib.sha256(armored.encode("utf-8", "replace")).hexdigest()
        with self._lock:
            cached = self._imported.get(digest)
        if cached is not None and (cached.expires is None or cached.expires > time.time()):
            return cached
        with self._import_lock:
            # Only public keys enter the instance's home: an imported secret key could become
            # its signing key (ensure_instance_key takes the first secret key it finds).
            scanned = self.gpg.scan_keys_mem(armored)
            if any(k.get("type") != "pub" for k in scanned):
                check = KeyCheck(None, False, SECRET_KEY_REFUSED)
            elif not scanned:
                check = KeyCheck(None, False, "invalid")
            else:
                result = self.gpg.import_keys(armored)
                fingerprints = [f for f in (result.fingerprints or []) if f]
                check = (self._status(fingerprints[0]) if fingerprints
                         else KeyCheck(None, False, "invalid"))
        with self._lock:
            self._imported[digest] = check
        return check

    def _status(self, fingerprint: str) -> KeyCheck:
        keys = self.gpg.list_keys(keys=[fingerprint])
        if not keys:
            return KeyCheck(fingerprint, False, "invalid")
        key = keys[0]
        trust = key.get("trust", "")
        expires = int(key["expires"]) if key.get("expires") else None
        if trust == "r":
            return KeyCheck(fingerprint, False, "revoked", expires)
        if trust == "e" or (expires is not None and expires <= time.time()):
            return KeyCheck(fingerprint, False, "expired", expires)
        # Capital letters in `cap` are what the key as a whole can still do.
        if "E" not in str(key.get("cap", "")):
            return KeyCheck(fingerprint, False, "no usable encryption subkey", expires)
        return KeyCheck(fingerprint, True, None, expires)

    # ---- operations --------------------------------------------------------------------------

    def sign_detached(self, data: bytes) -> tuple[str, str]:
        """`(armored detached signature, micalg)` by the instance key over `data`."""
        signed = self.gpg.sign(data, keyid=self.fingerprint, detach=True, binary=False,
                               passphrase=self.passphrase,
                               extra_args=["--digest-algo", "SHA256", NO_SEED_FILE])
        if not signed.data:
            raise GpgError(f"signing failed: {signed.status}")
        micalg = HASH_ALGOS.get(str(signed.hash_algo), "pgp-sha256")
        return str(signed), micalg

    def encrypt(self, data: bytes, recipient: str, *, sign: bool) -> str:
        """Armored ciphertext of `data` for `recipient`, signed inside by the instance key
        (RFC 3156 §6.2, one gpg call) when `sign`."""
        encrypted = self.gpg.encrypt(data, [recipient], sign=self.fingerprint if sign else None,
                                     passphrase=self.passphrase, always_trust=True, armor=True,
                                     extra_args=["--digest-algo", "SHA256", NO_SEED_FILE])
        if not encrypted.ok:
            raise GpgError(f"encryption failed: {encrypted.status}")
        return str(encrypted)

    def close(self) -> None:
        """Stop the gpg-agent of this home (tests and short-lived homes)."""
        subprocess.run(["gpgconf", "--homedir", str(self.homedir), "--kill", "all"],
                       check=False, capture_output=True, env={**os.environ})


def _bounded(binary: str, homedir: Path, timeout_s: float) -> Path:
    """A launcher in the home that runs `binary` under coreutils' `timeout`: a gpg that hangs
    (a stuck agent, a huge or hostile key) is sent TERM after `timeout_s`, KILL 5 s later, and
    the operation fails like any other gpg error (python-gnupg has no timeout of its own)."""
    real = shutil.which(binary)
    limiter = shutil.which("timeout")
    if real is None or limiter is None:
        raise GpgError(f"cannot run {binary!r} with a time limit: {binary} or timeout is missing")
    launcher = homedir / "gpg-bounded"
    script = (f"#!/bin/sh\nexec {shlex.quote(limiter)} --kill-after=5 {timeout_s:g} "
              f"{shlex.quote(real)} \"$@\"\n")
    if not launcher.exists() or launcher.read_text() != script:
        staged = launcher.with_name(f".{launcher.name}.{os.getpid()}")
        staged.write_text(script)
        staged.chmod(0o700)
        staged.replace(launcher)  # atomic: other processes of the home may be starting
    return launcher


def keyring_for(settings: MailerSettings) -> Keyring:
    """The instance keyring as the service's settings configure it."""
    return Keyring(settings.gnupg_homedir(), binary=settings.gpg_binary,
                   passphrase=settings.gnupg_passphrase.get_secret_value(),
                   instance_key_file=(Path(settings.gnupg_instance_key_file)
                                      if settings.gnupg_instance_key_file else None),
                   timeout_s=settings.gpg_timeout_s)
