"""Fetch GnuPG key: search the key server of `GnuPG.keyServer` for an e-mail address's keys,
and fetch one key by fingerprint, accepted only as a valid, current public key."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from identity.adapters import gpg, hkp
from identity.adapters.ports import UnitOfWork
from identity.domain.errors import ForbiddenError, NotFoundError

FETCHING_DISABLED = "Key fetching is disabled."
NO_KEYS = "No keys found for given email at keyserver."
NO_KEY = "No key with given fingerprint found."
SECRET_KEY = ("The key server answered with a secret key (PRIVATE KEY BLOCK): only public "
              "keys are accepted, and this one was not kept.")
_FINGERPRINT = re.compile(r"^(0x)?[0-9A-Fa-f]{40}$")


class KeyServerUnavailableError(Exception):
    """The key server could not be reached or answered with an error (a 502 for the caller)."""


async def _keyserver(uow: UnitOfWork) -> str:
    async with uow.reads() as q:
        values = await q.settings(["GnuPG.keyServer", "GnuPG.key_fetching_disabled"])
    if values["GnuPG.key_fetching_disabled"]:
        raise ForbiddenError(FETCHING_DISABLED)
    return str(values["GnuPG.keyServer"] or "https://openpgp.circl.lu")


async def search_keys(uow: UnitOfWork, email: str) -> list[dict[str, Any]]:
    """MISP's candidates: `[{fingerprint, key_id, date, address}]` of the keys that are not
    expired, revoked or disabled."""
    if "@" not in email:  # the form searches an address; no key server is asked for less
        raise NotFoundError(NO_KEYS)
    server = await _keyserver(uow)
    try:
        body = await hkp.lookup(server, op="index", search=email)
    except hkp.KeyServerError as exc:
        raise KeyServerUnavailableError(str(exc)) from exc
    candidates = hkp.parse_index(body or "")
    if not candidates:
        raise NotFoundError(NO_KEYS)
    return [{"fingerprint": c.fingerprint, "key_id": c.fingerprint[-8:],
             "date": datetime.fromtimestamp(c.created, UTC).strftime("%Y-%m-%d"),
             "address": c.address} for c in candidates]


async def fetch_key(uow: UnitOfWork, fingerprint: str, *, email: str | None = None) -> str:
    """The armored public key of `fingerprint`, refused unless it is one current public key
    with that fingerprint (and, given `email`, a uid with that address)."""
    if not _FINGERPRINT.match(fingerprint):
        raise NotFoundError(NO_KEY)
    wanted = fingerprint.removeprefix("0x").removeprefix("0X").upper()
    server = await _keyserver(uow)
    try:
        armored = await hkp.lookup(server, op="get", search=f"0x{wanted}")
    except hkp.KeyServerError as exc:
        raise KeyServerUnavailableError(str(exc)) from exc
    if not armored or not armored.strip():
        raise NotFoundError(NO_KEY)
    if "PRIVATE KEY BLOCK" in armored:
        raise ForbiddenError(SECRET_KEY)
    info = await gpg.inspect_public_key(armored)
    if info is None:
        raise ForbiddenError(gpg.INVALID_KEY)
    if info.fingerprint.upper() != wanted:
        raise ForbiddenError("Requested fingerprint do not match with fetched key fingerprint "
                             f"({wanted} != {info.fingerprint})")
    if info.validity == "r":
        raise ForbiddenError(f"The GnuPG key {info.fingerprint} is revoked.")
    if info.validity == "e" or (info.expires is not None and info.expires <= time.time()):
        raise ForbiddenError(f"The GnuPG key {info.fingerprint} has expired.")
    if email is not None and not any(f"<{email.lower()}>" in uid.lower() or
                                     uid.strip().lower() == email.lower()
                                     for uid in info.uids):
        raise ForbiddenError(f"The GnuPG key {info.fingerprint} has no user id with the e-mail "
                             f"address {email}.")
    return armored.strip() + "\n"
