"""A client of an OpenPGP key server's HKP interface (draft-shaw-openpgp-hkp): the
machine-readable index of keys for an e-mail address, and one key by its fingerprint."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

MAX_BYTES = 1_000_000  # a key server's answer bigger than this is refused, not read
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


class KeyServerError(Exception):
    """The key server could not be reached or answered with an error."""


@dataclass(frozen=True)
class Candidate:
    fingerprint: str
    created: int
    address: str


async def lookup(keyserver: str, *, op: str, search: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> str | None:
    """The body of `GET <keyserver>/pks/lookup?op=..&options=mr&search=..`; None on 404."""
    url = f"{keyserver.rstrip('/')}/pks/lookup"
    params = {"op": op, "options": "mr", "search": search}
    if op == "index":
        params["fingerprint"] = "on"
    shown = str(httpx.URL(url, params=params))
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, transport=transport,
                                     follow_redirects=True) as client, \
                client.stream("GET", url, params=params) as response:
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise KeyServerError(f"Fetching the '{shown}' failed with HTTP error "
                                     f"{response.status_code}: {response.reason_phrase}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise KeyServerError(f"Fetching the '{shown}' failed: the answer is larger "
                                         f"than {MAX_BYTES} bytes.")
            return body.decode("utf-8", errors="replace")
    except httpx.HTTPError as exc:
        raise KeyServerError(f"Could not fetch '{shown}'.") from exc


def parse_index(body: str, *, now: float | None = None) -> list[Candidate]:
    """The keys of a machine-readable index, without the expired, revoked or disabled ones;
    each with the address of its last uid (as MISP shows it)."""
    now = time.time() if now is None else now
    found: list[Candidate] = []
    current: dict[str, object] | None = None

    def close() -> None:
        if current is not None:
            found.append(Candidate(fingerprint=str(current["fingerprint"]),
                                   created=int(str(current["created"])),
                                   address=str(current.get("address", ""))))

    for line in body.splitlines():
        parts = line.strip().split(":")
        if parts[0] == "pub" and len(parts) >= 2:
            close()
            current = None
            fields = parts + [""] * (7 - len(parts))
            expires = fields[5]
            if any(flag in fields[6] for flag in "rde") or \
                    (expires.isdigit() and int(expires) <= now):
                continue
            current = {"fingerprint": fields[1].upper(),
                       "created": int(fields[4]) if fields[4].isdigit() else 0}
        elif parts[0] == "uid" and current is not None and len(parts) >= 2:
            current["address"] = unquote(parts[1])
    close()
    return found
