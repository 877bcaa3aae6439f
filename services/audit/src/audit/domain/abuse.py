"""What the abuse detector counts: the strikes of one failed authentication (pure, no I/O).

A failed API authentication (`AuthenticationFailed`, any service) strikes its source address
and, for a well-formed key, the key's first four characters; a failed password login
(identity's `UserLoginFailed`) strikes its address. Addresses in the exempt networks strike
nothing (MISP_ABUSE_EXEMPT_NETWORKS, like fail2ban's ignoreip), nor does anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from misp_contracts.events.abuse import ADDRESS, KEY_PREFIX, subject_key
from misp_contracts.events.auth import AuthenticationFailed
from misp_contracts.events.identity import UserLoginFailed
from misp_platform.addresses import Network, is_trusted, parse_address

COUNTED = frozenset({AuthenticationFailed.type, UserLoginFailed.type})


@dataclass(frozen=True)
class Thresholds:
    """Failures in the window that block an address or a key prefix."""

    address: int
    key_prefix: int

    def of(self, key: str) -> int:
        return self.key_prefix if key.startswith(f"{KEY_PREFIX}:") else self.address


def strikes(event_type: str, data: Mapping[str, Any], exempt: Sequence[Network]) -> list[str]:
    """The subject keys (`address:<ip>`, `key_prefix:<abcd>`) one event counts against."""
    if event_type not in COUNTED:
        return []
    address = parse_address(str(data.get("ip") or ""))
    if address is None or is_trusted(address, exempt):
        return []
    found = [subject_key(ADDRESS, str(address))]
    start = data.get("key_start")
    if isinstance(start, str) and start:
        found.append(subject_key(KEY_PREFIX, start))
    return found
