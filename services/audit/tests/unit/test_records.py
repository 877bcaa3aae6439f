"""The SIEM records' encoder writes what the contracts' `to_kafka` writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit.adapters.records import encode
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
