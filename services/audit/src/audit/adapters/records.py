"""The SIEM records the audit writes, encoded for Kafka's CloudEvents binary binding without the
generic machinery (an Envelope, its attribute checks, the standard library's JSON): what
`misp_contracts.envelope.to_kafka` gives for them (tests/unit/test_records.py holds it to it).

The records it reads are decoded by the platform's consumer (`misp_contracts.envelope.from_kafka`,
whose direct decoder reads the platform's usual shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from misp_contracts.envelope import ACTOR_EXTENSIONS, CONTENT_TYPE


def _header_time(value: datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


_ACTOR_NAMES = tuple((field, f"ce_{extension}") for field, extension in ACTOR_EXTENSIONS.items())


def encode(*, id: str, source: str, type: str, subject: str | None, time: datetime,
           correlationid: str | None, causationid: str | None, actor: Mapping[str, Any],
           data: dict[str, Any]) -> tuple[list[tuple[str, str]], bytes]:
    """The headers (as text, as the outbox keeps them) and value `to_kafka` gives for an
    envelope of these fields and actor fields (no stream version, no trace context), the value
    in compact JSON."""
    headers = [("ce_id", id), ("ce_source", source), ("ce_type", type),
               ("ce_time", _header_time(time)), ("ce_specversion", "1.0"),
               ("content-type", CONTENT_TYPE)]
    if subject is not None:
        headers.append(("ce_subject", subject))
    if correlationid is not None:
        headers.append(("ce_correlationid", correlationid))
    if causationid is not None:
        headers.append(("ce_causationid", causationid))
    for field, name in _ACTOR_NAMES:
        if (value := actor.get(field)) is not None:
            headers.append((name, value if isinstance(value, str) else str(value)))
    return headers, orjson.dumps(data)
