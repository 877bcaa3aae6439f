"""Failed (and, when logged, successful) authentications, on each service's own auth topic.

Every service that authenticates a request records failures through its own outbox on
`misp.<service>.auth.v1`; the audit maps them to MISP's `auth_fail` / `auth` log rows.
"""

from __future__ import annotations

from typing import ClassVar

from misp_contracts.events.base import DomainEvent, register


def auth_topic(service: str) -> str:
    return f"misp.{service}.auth.v1"


@register
class AuthenticationFailed(DomainEvent):
    type: ClassVar[str] = "misp.auth.authentication.failed.v1"
    topic: ClassVar[str] = ""  # per service: auth_topic(service)
    # MISP's reasons: missing, bad_length, unknown, expired, ip_refused, disabled_user, read_only
    reason: str
    title: str  # MISP's Log title, the key already masked (`abcd****...wxyz`)
    key_start: str | None = None
    key_end: str | None = None
    authkey_id: int | None = None
    user_id: int | None = None
    email: str | None = None
    org_name: str | None = None
    ip: str | None = None
    http_method: str | None = None
    target: str | None = None
    user_agent: str | None = None


@register
class AuthenticationSucceeded(DomainEvent):
    type: ClassVar[str] = "misp.auth.authentication.succeeded.v1"
    topic: ClassVar[str] = ""
    title: str
    authkey_id: int
    user_id: int
    email: str
    org_name: str | None = None
    ip: str | None = None
    http_method: str | None = None
    target: str | None = None
