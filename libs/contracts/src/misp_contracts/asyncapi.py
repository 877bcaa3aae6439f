"""The AsyncAPI 3.0 document of every topic, for the people who subscribe (SIEMs, other teams).

    python -m misp_contracts.asyncapi write   # regenerate libs/contracts/asyncapi.json
    python -m misp_contracts.asyncapi check   # exit 1 when the committed document is stale

Generated from the topic catalogue, the event registry and the envelope, so it cannot drift from
the code: `check` runs in the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from misp_contracts.envelope import ACTOR_EXTENSIONS, CONTENT_TYPE
from misp_contracts.events.base import DomainEvent
from misp_contracts.schemas import contract_models
from misp_contracts.topics import CATALOGUE, Topic

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "asyncapi.json"
KAFKA_BINDING_VERSION = "0.5.0"
HEADERS_SCHEMA = "CloudEventsHeaders"
DLQ_MESSAGE = "DeadLetter"

Document = dict[str, Any]

_ACTOR_HEADER_DESCRIPTIONS = {
    "user_id": "Id of the user who caused the event", "email": "E-mail of that user",
    "org_id": "Id of the user's organisation", "org_name": "Name of the user's organisation",
    "authkey_id": "Id of the authkey the request was authenticated with",
    "client_ip": "IP address of the client", "request_id": "Id of the HTTP request",
}


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def headers_schema() -> dict[str, Any]:
    """Kafka headers of the CloudEvents binary binding (values are UTF-8 strings)."""
    properties: dict[str, Any] = {
        "ce_id": _string("Unique id of the message (a UUID); consumers deduplicate on it"),
        "ce_source": _string("The service that produced it, e.g. /identity"),
        "ce_type": _string("Event type, misp.<context>.<aggregate>.<past-tense>.v<N>"),
        "ce_time": _string("When it happened, RFC 3339", format="date-time"),
        "ce_specversion": _string("CloudEvents version", const="1.0"),
        "content-type": _string("Content type of the value", const=CONTENT_TYPE),
        "ce_subject": _string("Id of the aggregate the event is about (the message key)"),
        "ce_streamversion": _string("Version of the aggregate's stream after this event",
                                    pattern="^[0-9]+$"),
        "ce_correlationid": _string("Id of the first message of the conversation"),
        "ce_causationid": _string("Id of the message that caused this one"),
        # The CloudEvents distributed tracing extension (W3C Trace Context).
        "ce_traceparent": _string(
            "W3C traceparent of the span that wrote the event (absent when tracing is off)",
            pattern="^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"),
        "ce_tracestate": _string("W3C tracestate that goes with ce_traceparent, if any"),
    }
    for field, extension in ACTOR_EXTENSIONS.items():
        properties[f"ce_{extension}"] = _string(_ACTOR_HEADER_DESCRIPTIONS[field])
    return {
        "type": "object",
        "description": "CloudEvents 1.0 attributes in Kafka binary content mode, plus the "
                       "extensions of this platform (stream version, correlation, causation "
                       "and the actor, flattened as CloudEvents requires) and the distributed "
                       "tracing extension (traceparent, tracestate).",
        "required": ["ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion",
                     "content-type"],
        "properties": properties,
    }


def _messages_of(topic: Topic, models: dict[str, type[DomainEvent]]) -> list[str]:
    """The event types a topic carries; auth events go to every service's auth topic."""
    if topic.name.endswith(".dlq.v1"):
        return [DLQ_MESSAGE]
    if topic.name.endswith(".auth.v1"):
        return [t for t, m in models.items()
                if (not m.topic and t.startswith("misp.auth.")) or m.topic == topic.name]
    return [t for t, m in models.items() if m.topic == topic.name]


def _summary(type_: str, model: type[BaseModel]) -> str:
    doc = (model.__doc__ or "").strip()
    if doc:
        return doc.splitlines()[0]
    _, context, aggregate, past, _version = type_.split(".")
    return f"{aggregate.capitalize()} {past.replace('-', ' ')} ({context})."


def build() -> Document:
    models: dict[str, type[DomainEvent]] = {
        t: m for t, m in contract_models().items()
        if isinstance(m, type) and issubclass(m, DomainEvent)
    }
    refs, top = models_json_schema([(m, "validation") for m in models.values()],
                                   ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = {HEADERS_SCHEMA: headers_schema(), **top.get("$defs", {})}

    messages: dict[str, Any] = {}
    for type_, model in models.items():
        messages[type_] = {
            "name": type_,
            "title": model.__name__,
            "summary": _summary(type_, model),
            "contentType": CONTENT_TYPE,
            "headers": {"allOf": [{"$ref": f"#/components/schemas/{HEADERS_SCHEMA}"},
                                  {"properties": {"ce_type": {"const": type_}}}]},
            "payload": refs[(model, "validation")],
            "correlationId": {"location": "$message.header#/ce_correlationid"},
            "bindings": {"kafka": {
                "key": {"type": "string", "description": "Id of the aggregate (keeps its "
                                                        "events in order in one partition)"},
                "bindingVersion": KAFKA_BINDING_VERSION}},
        }
    messages[DLQ_MESSAGE] = {
        "name": DLQ_MESSAGE,
        "title": "Dead letter",
        "summary": "A message a consumer could not decode or handle after retries.",
        "description": "The original value and key, unchanged, with the original headers plus "
                       "dlq_original_topic, dlq_original_partition, dlq_original_offset, "
                       "dlq_consumer, dlq_message_id, dlq_error and dlq_failed_at.",
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "payload": {"description": "The original message value, as received"},
    }

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in CATALOGUE:
        carried = _messages_of(topic, models)
        channel: dict[str, Any] = {
            "address": topic.name,
            "description": topic.description or topic.name,
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in carried},
            "bindings": {"kafka": {
                "topic": topic.name,
                "partitions": topic.partitions,
                "topicConfiguration": {"cleanup.policy": [topic.cleanup_policy],
                                       "retention.ms": topic.retention_ms},
                "bindingVersion": KAFKA_BINDING_VERSION}},
            "x-owner": topic.owner,
        }
        if not carried:
            channel["description"] += " (no message contract published yet)"
        channels[topic.name] = channel
        operation: dict[str, Any] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{topic.name}"},
            "summary": f"{topic.owner} publishes on {topic.name}",
        }
        if carried:
            operation["messages"] = [{"$ref": f"#/channels/{topic.name}/messages/{m}"}
                                     for m in carried]
        operations[f"{topic.owner}.publish.{topic.name}"] = operation

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "MISP administration plane: events and commands",
            "version": "1.0.0",
            "description": "Every Kafka topic of the administration plane. Messages are "
                           "CloudEvents 1.0 in Kafka binary mode: attributes in ce_* headers, "
                           "the JSON payload as the value. Readers ignore unknown fields and "
                           "skip unknown types; an incompatible change gets a new vN type.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                              "description": "The single-node broker that `make up` starts"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def render(document: Document) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def is_current(path: Path = DOCUMENT_PATH) -> bool:
    return path.exists() and path.read_text() == render(build())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m misp_contracts.asyncapi")
    parser.add_argument("command", choices=("write", "check"))
    parser.add_argument("--output", type=Path, default=DOCUMENT_PATH)
    args = parser.parse_args(argv)
    if args.command == "write":
        args.output.write_text(render(build()))
        print(f"AsyncAPI document written to {args.output}")
        return 0
    if not is_current(args.output):
        print(f"{args.output} is stale: run `python -m misp_contracts.asyncapi write`",
              file=sys.stderr)
        return 1
    print("AsyncAPI document is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
