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


Headers = list[tuple[str, str]]


def encode_headers(*, id: str, source: str, type: str, time: datetime,
                   correlationid: str | None, causationid: str | None,
                   actor: Mapping[str, Any]) -> tuple[Headers, Headers]:
    """The headers `encode` writes, but the subject's: those before it and those after it (made
    ahead of a record whose subject is not known yet)."""
    before = [("ce_id", id), ("ce_source", source), ("ce_type", type),
              ("ce_time", _header_time(time)), ("ce_specversion", "1.0"),
              ("content-type", CONTENT_TYPE)]
    after = []
    if correlationid is not None:
        after.append(("ce_correlationid", correlationid))
    if causationid is not None:
        after.append(("ce_causationid", causationid))
    for field, name in _ACTOR_NAMES:
        if (value := actor.get(field)) is not None:
            after.append((name, value if isinstance(value, str) else str(value)))
    return before, after


def with_subject(before: Headers, subject: str | None, after: Headers) -> Headers:
    return [*before, ("ce_subject", subject), *after] if subject is not None else [
        *before, *after]


def encode(*, id: str, source: str, type: str, subject: str | None, time: datetime,
           correlationid: str | None, causationid: str | None, actor: Mapping[str, Any],
           data: dict[str, Any]) -> tuple[Headers, bytes]:
    """The headers (as text, as the outbox keeps them) and value `to_kafka` gives for an
    envelope of these fields and actor fields (no stream version, no trace context), the value
    in compact JSON."""
    before, after = encode_headers(id=id, source=source, type=type, time=time,
                                   correlationid=correlationid, causationid=causationid,
                                   actor=actor)
    return with_subject(before, subject, after), orjson.dumps(data)
