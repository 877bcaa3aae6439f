"""argon2id password hashing, off the event loop (a hash costs tens of milliseconds)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# RFC 9106's second recommended option (64 MiB, 3 passes), argon2-cffi's default profile.
_HASHER = PasswordHasher()
# Compared against when there is no usable hash, so an unknown user costs as much as a known one.
_DUMMY = _HASHER.hash("no such user: this hash only spends time")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """False for a wrong password or an unusable (None) hash; constant work either way."""
    return await asyncio.to_thread(_verify, stored, password)
