"""Advanced authkeys: the fields a client may set (comment, allowed IPs, expiration, read-only)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

from identity.domain.values import to_bool, to_int

MAX_COMMENT = 65535
MAX_IPS = 100


def _allowed_ips(value: Any) -> tuple[list[str] | None, str | None]:
    if value in (None, "", []):
        return None, None
    if isinstance(value, str):
        items = [p.strip() for p in value.replace(",", "\n").splitlines() if p.strip()]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        items = [p.strip() for p in value if p.strip()]
    else:
        return None, "allowed_ips must be a list of IP addresses or CIDR ranges."
    if len(items) > MAX_IPS:
        return None, f"At most {MAX_IPS} entries are allowed."
    out: list[str] = []
    for item in items:
        try:
            out.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            return None, f"Invalid IP address or CIDR range: {item[:100]}"
    return out or None, None


def _expiration(value: Any, *, now: datetime, max_days: int | None) -> tuple[int, str | None]:
    if value in (None, "", 0, "0"):
        stamp = 0
    elif (number := to_int(value)) is not None:
        stamp = number
    elif isinstance(value, str):
        try:
            day = datetime.strptime(value.strip()[:10], "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return 0, "Expiration must be a unix time or a date (YYYY-MM-DD)."
        stamp = int(day.timestamp())
    else:
        return 0, "Expiration must be a unix time or a date (YYYY-MM-DD)."
    if max_days:
        limit = int((now + timedelta(days=max_days)).timestamp())
        if stamp == 0:
            stamp = limit
        elif stamp > limit:
            return 0, f"Expiration cannot be more than {max_days} days in the future."
    if stamp > 253402300799:  # beyond year 9999
        return 0, "Expiration is too far in the future."
    return stamp, None


def parse_key_fields(body: dict[str, Any], *, now: datetime, max_days: int | None,
                     mandate_ips: bool, creating: bool) -> tuple[dict[str, Any],
                                                                 dict[str, list[str]]]:
    """The key fields of a body (add or edit), typed; errors in Cake's shape."""
    fields: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if "comment" in body:
        comment = body["comment"]
        if comment is None:
            fields["comment"] = ""
        elif not isinstance(comment, str) or len(comment) > MAX_COMMENT:
            errors["comment"] = ["Invalid comment."]
        else:
            fields["comment"] = comment
    if "allowed_ips" in body:
        ips, problem = _allowed_ips(body["allowed_ips"])
        if problem:
            errors["allowed_ips"] = [problem]
        else:
            fields["allowed_ips"] = ips
    if mandate_ips and (creating or "allowed_ips" in fields) and not fields.get("allowed_ips"):
        errors.setdefault("allowed_ips", []).append("Allowed IPs are mandatory on this instance.")
    if "expiration" in body or (creating and max_days):
        stamp, problem = _expiration(body.get("expiration"), now=now, max_days=max_days)
        if problem:
            errors["expiration"] = [problem]
        else:
            fields["expiration"] = stamp
    if "read_only" in body:
        flag = to_bool(body["read_only"])
        if flag is None:
            errors["read_only"] = ["Value is not a boolean."]
        else:
            fields["read_only"] = flag
    return fields, errors
