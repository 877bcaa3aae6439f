"""Authkeys: generation, the peppered HMAC that is stored and published, and MISP's masking."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

AUTHKEY_LENGTH = 40
AUTHKEY_ALPHABET = string.ascii_letters + string.digits
AUTHKEY_PATTERN = re.compile(r"^[a-zA-Z0-9]{40}$")


def generate_authkey() -> str:
    """40 random characters of `[a-zA-Z0-9]`, as MISP generates them."""
    return "".join(secrets.choice(AUTHKEY_ALPHABET) for _ in range(AUTHKEY_LENGTH))


def is_well_formed(key: str) -> bool:
    return AUTHKEY_PATTERN.fullmatch(key) is not None


def authkey_hmac(pepper: str, key: str) -> str:
    """Hex HMAC-SHA256 of the key under the deployment pepper: what tables and events hold."""
    return hmac.new(pepper.encode("utf-8"), key.encode("utf-8"), hashlib.sha256).hexdigest()


def mask_authkey(key: str) -> str:
    """MISP's display form: first 4 characters, 32 stars, last 4 (`abcd****…wxyz`)."""
    return f"{key[:4]}{'*' * 32}{key[-4:]}"


def authkey_start(key: str) -> str:
    return key[:4]


def authkey_end(key: str) -> str:
    return key[-4:]
