"""The CloudEvents 1.0 envelope every event and command travels in, and its Kafka binary binding.

The actor (who did it, from which org and IP) travels as flat lowercase extension attributes, as
CloudEvents requires; so does the W3C trace context of the span that wrote the event
(`traceparent` and `tracestate`, the CloudEvents distributed tracing extension). The payload is
the JSON of a frozen contract model.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

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
    """Kafka binary content mode: attributes as `ce_*` headers, data as the value."""
    message = ce_kafka.to_binary(envelope.to_cloudevent(), JSON_FORMAT, key_mapper=lambda _e: None)
    return list(message.headers.items()), message.value


def from_kafka(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...],
               value: bytes | None) -> Envelope:
    """Decode a binary-mode CloudEvent; ValueError (or a CloudEvents error) if it is not one."""
    message = ce_kafka.KafkaMessage(headers=dict(headers), key=None, value=value or b"")
    event = ce_kafka.from_binary(message, JSON_FORMAT, CloudEvent)
    return Envelope.from_cloudevent(event)  # type: ignore[arg-type]
