"""TOTP secrets at rest: AES-GCM under a key derived by HKDF-SHA256 from the deployment pepper,
bound to the user's id (a sealed secret moved to another user's row does not open)."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"misp identity totp secret v1"
_NONCE = 12


def _key(pepper: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(
        pepper.encode("utf-8"))


def _bound_to(user_id: int) -> bytes:
    return f"user:{user_id}".encode()


def seal(pepper: str, user_id: int, secret: str) -> str:
    """`nonce || ciphertext`, base64: what identity stores of a secret."""
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_key(pepper)).encrypt(nonce, secret.encode("ascii"), _bound_to(user_id))
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(pepper: str, user_id: int, stored: str) -> str:
    """The secret (cryptography's InvalidTag when the pepper or the user is not the sealer's)."""
    raw = base64.b64decode(stored)
    return AESGCM(_key(pepper)).decrypt(raw[:_NONCE], raw[_NONCE:],
                                        _bound_to(user_id)).decode("ascii")
