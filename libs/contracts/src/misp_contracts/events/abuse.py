"""Blocks decided by the audit's abuse detector (`python -m audit detect`), which counts failed
authentications from every service's auth topic per source address and per key prefix in
sliding windows. Every service's API follows this topic and refuses a blocked address, or a key
with a blocked prefix, with a 429 until `blocked_until`; the audit logs each block as an
`auth_alert` row, which reaches the SIEM topic like every other row.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from misp_contracts.events.base import DomainEvent, register

ABUSE_TOPIC = "misp.audit.abuse.v1"

ADDRESS = "address"
KEY_PREFIX = "key_prefix"
Subject = Literal["address", "key_prefix"]


def subject_key(subject: str, value: str) -> str:
    """The message key (and the detector's table key) of one blocked thing: `address:192.0.2.7`."""
    return f"{subject}:{value}"


@register
class AbuseBlocked(DomainEvent):
    """Too many failed authentications from one address (or with one key prefix) in a window."""

    type: ClassVar[str] = "misp.audit.abuse.blocked.v1"
    topic: ClassVar[str] = ABUSE_TOPIC
    subject: Subject
    value: str  # the address, or the key's first four characters
    failures: int  # failures counted in the window when the threshold was reached
    window_s: int
    blocked_until: datetime
