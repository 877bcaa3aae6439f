"""The audit's hot path through Kafka's CloudEvents binary binding: the records it reads decoded
and the SIEM records it writes encoded without the generic CloudEvents machinery (its attribute
checks, dateutil, the standard library's JSON).

Both give what `misp_contracts.envelope.from_kafka` / `to_kafka` give, for the records the
platform writes (tests/unit/test_records.py holds them to it). `decode` answers None for any
other shape (an unknown header, a time it does not read, a number it would not read as pydantic
does, data that is not a JSON object): the caller then decodes with `from_kafka`, which is the
reference and raises for what is undecodable (the dead-letter path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from misp_contracts.envelope import ACTOR_EXTENSIONS, CONTENT_TYPE, Actor, Envelope

# The integer actor fields; the others are text.
_INT_FIELDS = frozenset({"user_id", "org_id", "authkey_id"})
_ACTOR_HEADERS = {f"ce_{ext}": field for field, ext in ACTOR_EXTENSIONS.items()}
_TEXT_HEADERS = frozenset({"ce_subject", "ce_correlationid", "ce_causationid",
                           "ce_traceparent", "ce_tracestate"})
_KNOWN = frozenset({"ce_id", "ce_source", "ce_type", "ce_specversion", "ce_time",
                    "ce_streamversion", "content-type", *_TEXT_HEADERS, *_ACTOR_HEADERS})
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # what pydantic and int() both read the same way
# orjson reads an integer beyond 64 bits as a float (json as an int): such data is declined.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
# What `to_kafka` writes (isoformat, UTC as Z), which dateutil and fromisoformat read alike.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?"
                   r"(Z|[+-][0-9]{2}:[0-9]{2})")


def decode(headers: Sequence[tuple[str, bytes]], value: bytes | None) -> Envelope | None:
    """The envelope of a record in the platform's usual shape, or None (use `from_kafka`)."""
    try:
        attributes = {name: raw.decode("utf-8") for name, raw in headers}
        if not _KNOWN.issuperset(attributes) or attributes.get("ce_specversion") != "1.0":
            return None
        id_, source, type_ = (attributes.get(k) for k in ("ce_id", "ce_source", "ce_type"))
        if not id_ or not source or not type_ or attributes.get("ce_subject") == "":
            return None
        if attributes.get("content-type", CONTENT_TYPE) != CONTENT_TYPE:
            return None
        if not _TIME.fullmatch(attributes["ce_time"]):
            return None
        time = datetime.fromisoformat(attributes["ce_time"])
        data = orjson.loads(value) if value and not _LONG_DIGITS.search(value) else None
        if type(data) is not dict:
            return None
        actor: dict[str, Any] = {}
        for header, field in _ACTOR_HEADERS.items():
            if (text := attributes.get(header)) is not None:
                if field in _INT_FIELDS:
                    if not _INTEGER.fullmatch(text):
                        return None
                    actor[field] = int(text)
                else:
                    actor[field] = text
        version = attributes.get("ce_streamversion")
        if version is not None and not _INTEGER.fullmatch(version):
            return None
        # Validated as from_kafka validates it (pydantic's core builds it faster than
        # model_construct would); a ValidationError is a ValueError.
        return Envelope(
            id=id_, source=source, type=type_, subject=attributes.get("ce_subject"),
            time=time, streamversion=int(version) if version is not None else None,
            correlationid=attributes.get("ce_correlationid"),
            causationid=attributes.get("ce_causationid"),
            traceparent=attributes.get("ce_traceparent") or None,
            tracestate=attributes.get("ce_tracestate") or None,
            actor=Actor(**actor), data=data)
    except (KeyError, ValueError):  # orjson.JSONDecodeError and UnicodeDecodeError included
        return None


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
