"""The lean decoder and encoder of Kafka records give what the contracts' CloudEvents binding
gives, and decline every shape they do not read exactly as it does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.adapters.records import decode, encode
from misp_contracts.envelope import Actor, Envelope, from_kafka, to_kafka

FULL = Actor(user_id=7, email="admin@org.test", org_id=3, org_name="Org é", authkey_id=9,
             client_ip="192.0.2.1", request_id="req-1")
ENVELOPES = [
    Envelope(source="/identity", type="misp.identity.user.updated.v1", subject="5", actor=FULL,
             streamversion=4, correlationid="c-1", causationid="c-0",
             data={"user": {"id": 5, "email": "ü@x.test"}, "n": 1.5, "none": None}),
    Envelope(source="/orgs", type="misp.orgs.organisation.created.v1", data={}),
    Envelope(source="/jobs", type="misp.jobs.job.added.v1", subject="j", actor=Actor.system(),
             time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))),
             traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
             tracestate="a=b", data={"list": [1, "two", {"3": [True, False]}], "s": "\t\"\\"}),
    Envelope(source="/auth", type="misp.auth.x.v1", actor=Actor(user_id=-1, email=""),
             time=datetime(2026, 1, 2, 3, 4, 5, 123000, tzinfo=UTC), data={"big": 2**59}),
]


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_a_platform_record_decodes_as_from_kafka_decodes_it(envelope: Envelope) -> None:
    headers, value = to_kafka(envelope)
    lean = decode(headers, value)
    assert lean is not None
    assert lean == from_kafka(headers, value) == envelope
    assert lean.actor == envelope.actor and lean.time == envelope.time


def _record(envelope: Envelope) -> tuple[list[tuple[str, bytes]], bytes]:
    return to_kafka(envelope)


def _with(headers: list[tuple[str, bytes]], name: str, value: bytes | None
          ) -> list[tuple[str, bytes]]:
    out = [(n, v) for n, v in headers if n != name]
    return out if value is None else [*out, (name, value)]


BASE_HEADERS, BASE_VALUE = _record(ENVELOPES[0])
DECLINED = {
    "unknown extension": (_with(BASE_HEADERS, "ce_other", b"x"), BASE_VALUE),
    "upper-case header": (_with(BASE_HEADERS, "CE_ID", b"x"), BASE_VALUE),
    "no time": (_with(BASE_HEADERS, "ce_time", None), BASE_VALUE),
    "time with a space": (_with(BASE_HEADERS, "ce_time", b"2026-01-01 00:00:00Z"), BASE_VALUE),
    "naive time": (_with(BASE_HEADERS, "ce_time", b"2026-01-01T00:00:00"), BASE_VALUE),
    "actor id with an underscore": (_with(BASE_HEADERS, "ce_actoruserid", b"1_0"), BASE_VALUE),
    "actor id not a number": (_with(BASE_HEADERS, "ce_actoruserid", b"one"), BASE_VALUE),
    "stream version with a plus": (_with(BASE_HEADERS, "ce_streamversion", b"+4"), BASE_VALUE),
    "empty subject": (_with(BASE_HEADERS, "ce_subject", b""), BASE_VALUE),
    "no id": (_with(BASE_HEADERS, "ce_id", None), BASE_VALUE),
    "other spec version": (_with(BASE_HEADERS, "ce_specversion", b"0.3"), BASE_VALUE),
    "text content": (_with(BASE_HEADERS, "content-type", b"text/plain"), BASE_VALUE),
    "header not UTF-8": (_with(BASE_HEADERS, "ce_source", b"\xff"), BASE_VALUE),
    "data an array": (BASE_HEADERS, b"[1, 2]"),
    "data NaN": (BASE_HEADERS, b'{"n": NaN}'),
    "data a lone surrogate": (BASE_HEADERS, b'{"s": "\\ud800"}'),
    "data an int beyond 64 bits": (BASE_HEADERS, b'{"n": 123456789012345678901234567890}'),
    "no data": (BASE_HEADERS, b""),
    "not JSON": (BASE_HEADERS, b"\x00garbage"),
}


@pytest.mark.parametrize("case", DECLINED)
def test_any_other_shape_is_left_to_from_kafka(case: str) -> None:
    headers, value = DECLINED[case]
    assert decode(headers, value) is None


def test_what_it_declines_from_kafka_either_decodes_or_refuses() -> None:
    decoded = from_kafka(*DECLINED["data a lone surrogate"])  # JSON allows it
    assert decoded.data == {"s": "\ud800"}
    with pytest.raises(Exception):  # noqa: B017 - CloudEvents' or pydantic's error
        from_kafka(*DECLINED["actor id not a number"])


@pytest.mark.parametrize("envelope", [e for e in ENVELOPES if e.traceparent is None])
def test_encode_writes_the_headers_and_data_to_kafka_writes(envelope: Envelope) -> None:
    headers, value = encode(
        id=envelope.id, source=envelope.source, type=envelope.type, subject=envelope.subject,
        time=envelope.time, correlationid=envelope.correlationid,
        causationid=envelope.causationid, actor=envelope.actor.__dict__, data=envelope.data)
    if envelope.streamversion is not None:  # encode writes no stream version
        envelope = envelope.model_copy(update={"streamversion": None})
    ref_headers, ref_value = to_kafka(envelope)
    as_bytes = [(name, text.encode()) for name, text in headers]
    assert dict(as_bytes) == dict(ref_headers)
    assert json.loads(value) == json.loads(ref_value)
    assert from_kafka(as_bytes, value) == envelope
