"""The checkpoint signing key: an Ed25519 key in a file of its own, never in the database; and
the key that verifies: the published public half (AUDIT_VERIFY_KEY_PATH), or the signing key's."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)


class SigningKeyError(RuntimeError):
    """The key file is missing or unreadable."""


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise SigningKeyError(f"no signing key at {path}") from None
    except ValueError as exc:
        raise SigningKeyError(f"unreadable signing key at {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 key")
    return key


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The key at `path`, generated first (mode 0600, never overwritten) if there is none."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_key(path)  # another process made it first
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return key
    return load_key(path)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A published verification key (PEM, SubjectPublicKeyInfo)."""
    try:
        key = load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise SigningKeyError(f"no verification key at {path}") from None
    except ValueError as exc:
        raise SigningKeyError(f"unreadable verification key at {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} does not hold an Ed25519 public key")
    return key


def verification_key(signing_key: Path, published: Path | None) -> Ed25519PublicKey:
    """What checks the checkpoints: the published public key when one is configured (a
    verifier needs no secret), else the public half of the signing key."""
    if published is not None:
        return load_public_key(published)
    return load_key(signing_key).public_key()


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode("ascii")
