"""The CloudEvents 1.0 envelope every event and command travels in, and its Kafka binary binding.

`to_kafka` and `from_kafka` write and read the shape the platform writes directly (every
consumer's hot path); any other shape goes through the CloudEvents SDK's binding, the reference.

The actor (who did it, from which org and IP) travels as flat lowercase extension attributes, as
CloudEvents requires; so does the W3C trace context of the span that wrote the event
(`traceparent` and `tracestate`, the CloudEvents distributed tracing extension). The payload is
the JSON of a frozen contract model.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ConfigDict, Field

JSON_FORMAT = JSONFormat()
CONTENT_TYPE = "application/json"

# Extension attribute name for each Actor field (flat, lowercase, alphanumeric: CloudEvents rules).
ACTOR_EXTENSIONS: dict[str, str] = {
    "user_id": "actoruserid",
    "email": "actoremail",
    "org_id": "actororgid",
    "org_name": "actororgname",
    "authkey_id": "actorauthkeyid",
    "client_ip": "actorclientip",
    "request_id": "actorrequestid",
}

# The CloudEvents distributed tracing extension's attributes (W3C Trace Context).
TRACE_EXTENSIONS = ("traceparent", "tracestate")


class Actor(BaseModel):
    """Who caused an event: every audit row needs who, from which org and from which IP."""

    model_config = ConfigDict(frozen=True)

    user_id: int | None = None
    email: str | None = None
    org_id: int | None = None
    org_name: str | None = None
    authkey_id: int | None = None
    client_ip: str | None = None
    request_id: str | None = None

    @classmethod
    def system(cls) -> Actor:
        """The actor of changes nobody asked for (first run, sagas, schedules)."""
        return cls(email="SYSTEM", org_name="SYSTEM")


class Envelope(BaseModel):
    """One event or command as it crosses Kafka: CloudEvents attributes, extensions and data."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    source: str
    type: str
    subject: str | None = None
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    specversion: str = "1.0"
    datacontenttype: str = CONTENT_TYPE
    streamversion: int | None = None
    correlationid: str | None = None
    causationid: str | None = None
    actor: Actor = Field(default_factory=Actor)
    data: dict[str, Any] = Field(default_factory=dict)
    # The distributed tracing extension: the W3C trace context the event was written in (set by
    # the platform's outbox from the active span; None when tracing is off).
    traceparent: str | None = None
    tracestate: str | None = None

    def caused(self, *, source: str, type: str, subject: str | None, data: dict[str, Any],
               streamversion: int | None = None, actor: Actor | None = None) -> Envelope:
        """A follow-up message in the same conversation: same correlation, caused by this one."""
        return Envelope(
            source=source, type=type, subject=subject, data=data, streamversion=streamversion,
            correlationid=self.correlationid or self.id, causationid=self.id,
            actor=actor or self.actor,
        )

    def to_cloudevent(self) -> CloudEvent:
        attributes: dict[str, Any] = {
            "id": self.id, "source": self.source, "type": self.type, "time": self.time,
            "specversion": self.specversion, "datacontenttype": self.datacontenttype,
        }
        if self.subject is not None:
            attributes["subject"] = self.subject
        for name in ("streamversion", "correlationid", "causationid", *TRACE_EXTENSIONS):
            value = getattr(self, name)
            if value is not None:
                attributes[name] = value
        for field, extension in ACTOR_EXTENSIONS.items():
            value = getattr(self.actor, field)
            if value is not None:
                attributes[extension] = value
        return CloudEvent(attributes=attributes, data=self.data)

    @classmethod
    def from_cloudevent(cls, event: CloudEvent) -> Envelope:
        attributes = event.get_attributes()
        actor = {field: attributes.get(ext) for field, ext in ACTOR_EXTENSIONS.items()}
        data = event.get_data()
        if not isinstance(data, dict):
            raise ValueError("event data is not a JSON object")
        version = attributes.get("streamversion")
        return cls(
            id=attributes["id"], source=attributes["source"], type=attributes["type"],
            subject=attributes.get("subject"), time=attributes.get("time") or datetime.now(UTC),
            specversion=attributes.get("specversion", "1.0"),
            datacontenttype=attributes.get("datacontenttype") or CONTENT_TYPE,
            streamversion=int(version) if version is not None else None,
            correlationid=attributes.get("correlationid"),
            causationid=attributes.get("causationid"),
            traceparent=attributes.get("traceparent") or None,
            tracestate=attributes.get("tracestate") or None,
            actor=Actor(**{k: v for k, v in actor.items() if v is not None}),
            data=data,
        )


def to_kafka(envelope: Envelope) -> tuple[list[tuple[str, bytes]], bytes]:
    """Kafka binary content mode: attributes as `ce_*` headers, data as the value (JSON).

    Written directly: the CloudEvents binding's headers in its order and its JSON, for a time
    with an offset and data of JSON's types; anything else (a naive time, a datetime in the
    data) goes through the binding.
    """
    written = to_kafka_text(envelope)
    if written is None:
        return _to_kafka_by_binding(envelope)
    headers, value = written
    return [(name, attribute.encode()) for name, attribute in headers], value


def to_kafka_text(envelope: Envelope) -> tuple[list[tuple[str, str]], bytes] | None:
    """`to_kafka`'s headers as text (each header's value is that text in UTF-8) and its value,
    for the shape written directly; None for one only the binding writes. What the outbox
    stores (its headers are text): no header is encoded only to be decoded back."""
    time = envelope.time
    offset = time.utcoffset()
    if offset is None:
        return None
    try:
        value = json.dumps(envelope.data).encode()
    except TypeError:
        return None
    stamp = time.isoformat()
    if not offset:
        stamp = stamp[:-6] + "Z"
    headers = [("ce_id", envelope.id), ("ce_source", envelope.source),
               ("ce_type", envelope.type), ("ce_time", stamp),
               ("ce_specversion", envelope.specversion),
               ("content-type", envelope.datacontenttype)]
    attributes = envelope.__dict__
    for header, name in _OPTIONAL_HEADERS:
        attribute = attributes[name]
        if attribute is not None:
            headers.append((header, str(attribute)))
    headers += _actor_headers(envelope.actor)
    return headers, value


@functools.lru_cache(maxsize=1024)
def _actor_headers(actor: Actor) -> tuple[tuple[str, str], ...]:
    """The actor's extension headers, remembered per actor (frozen: equal actors, equal
    headers): a writer's events mostly share theirs."""
    return tuple((header, str(attribute)) for header, field in _ACTOR_FIELDS
                 if (attribute := getattr(actor, field)) is not None)


def _to_kafka_by_binding(envelope: Envelope) -> tuple[list[tuple[str, bytes]], bytes]:
    message = ce_kafka.to_binary(envelope.to_cloudevent(), JSON_FORMAT, key_mapper=lambda _e: None)
    return list(message.headers.items()), message.value


def from_kafka(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes],
               value: bytes | None) -> Envelope:
    """Decode a binary-mode CloudEvent; ValueError (or a CloudEvents error) if it is not one.

    The shape the platform writes is read directly (`decode_usual`); any other goes through
    the CloudEvents binding and pydantic, which are the reference and refuse what is invalid.
    """
    attributes = headers if isinstance(headers, Mapping) else dict(headers)
    envelope = decode_usual(attributes, value)
    if envelope is not None:
        return envelope
    message = ce_kafka.KafkaMessage(headers=dict(attributes), key=None, value=value or b"")
    event = ce_kafka.from_binary(message, JSON_FORMAT, CloudEvent)
    return Envelope.from_cloudevent(event)  # type: ignore[arg-type]


_OPTIONAL_ATTRIBUTES = ("subject", "streamversion", "correlationid", "causationid",
                        *TRACE_EXTENSIONS)
_OPTIONAL_HEADERS = tuple(("ce_" + name, name) for name in _OPTIONAL_ATTRIBUTES)
_ACTOR_FIELDS = tuple(("ce_" + extension, field) for field, extension in ACTOR_EXTENSIONS.items())
_ACTOR_HEADERS = {"ce_" + extension: field for field, extension in ACTOR_EXTENSIONS.items()}
_ACTOR_NUMBERS = frozenset({"user_id", "org_id", "authkey_id"})
_USUAL_HEADERS = frozenset({
    "ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion", "content-type",
    *("ce_" + name for name in _OPTIONAL_ATTRIBUTES), *_ACTOR_HEADERS})
# Integers as both int() and pydantic read them.
_INTEGER = re.compile(r"-?[0-9]{1,18}")
# orjson reads an integer beyond 64 bits as a float where the binding's json reads an int: data
# holding such a run of digits (anywhere, a string's too: cheaper than knowing) is declined.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
# The times `to_kafka` writes, which fromisoformat and the binding's parser read alike.
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?"
                   r"(Z|[+-][0-9]{2}:[0-9]{2})")


def decode_usual(headers: Mapping[str, bytes], value: bytes | None) -> Envelope | None:
    """The envelope of a record in the shape `to_kafka` writes, built without the CloudEvents
    binding (a consumer's hot path: orjson, and pydantic's core building the model), or None
    for any other shape (an unknown header, an unusual time or number, data that is not a JSON
    object or that orjson would read otherwise than json does: NaN, a lone surrogate, an
    integer of 19 digits or more): the caller then decodes with the reference, which refuses
    what is invalid. Equal to what the reference gives for the same record."""
    try:
        if not _USUAL_HEADERS.issuperset(headers):
            return None
        text = {name: raw.decode() for name, raw in headers.items()}
        id_, source, type_ = text.get("ce_id"), text.get("ce_source"), text.get("ce_type")
        stamp = text.get("ce_time")
        if (not id_ or not source or not type_ or stamp is None or not _TIME.fullmatch(stamp)
                or text.get("ce_specversion") != "1.0" or text.get("ce_subject") == ""
                or text.get("content-type", CONTENT_TYPE) != CONTENT_TYPE):
            return None
        version = text.get("ce_streamversion")
        if version is not None and not _INTEGER.fullmatch(version):
            return None
        actor: dict[str, Any] = {}
        for header, field in _ACTOR_HEADERS.items():
            attribute = text.get(header)
            if attribute is None:
                continue
            if field in _ACTOR_NUMBERS:
                if not _INTEGER.fullmatch(attribute):
                    return None
                actor[field] = int(attribute)
            else:
                actor[field] = attribute
        if not value or _LONG_DIGITS.search(value):
            return None
        data = orjson.loads(value)
        if type(data) is not dict:
            return None
        # Validated as the reference validates it (pydantic's core builds it faster than
        # model_construct would); a ValidationError is a ValueError.
        return Envelope(
            id=id_, source=source, type=type_, subject=text.get("ce_subject"),
            time=datetime.fromisoformat(stamp),
            streamversion=int(version) if version is not None else None,
            correlationid=text.get("ce_correlationid"), causationid=text.get("ce_causationid"),
            traceparent=text.get("ce_traceparent") or None,
            tracestate=text.get("ce_tracestate") or None,
            actor=Actor(**actor), data=data)
    except ValueError:  # UnicodeDecodeError, orjson's JSONDecodeError and pydantic's included
        return None
