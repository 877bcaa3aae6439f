"""The envelope survives the Kafka binary binding, actor included."""

from datetime import UTC, datetime

from misp_contracts.envelope import ACTOR_EXTENSIONS, Actor, Envelope, from_kafka, to_kafka


def _full_envelope() -> Envelope:
    return Envelope(
        source="/identity", type="misp.identity.user.created.v1", subject="stream-1",
        time=datetime(2024, 10, 21, 12, 30, 1, 123456, tzinfo=UTC), streamversion=7,
        correlationid="corr-1", causationid="cause-1",
        actor=Actor(user_id=5, email="admin@admin.test", org_id=1, org_name="ORGNAME",
                    authkey_id=9, client_ip="192.0.2.10", request_id="req-1"),
        data={"user": {"id": 5, "email": "a@b.test"}, "changes": {"email": ["x", "y"]}},
    )


def test_a_full_envelope_round_trips_through_kafka_headers() -> None:
    envelope = _full_envelope()

    headers, value = to_kafka(envelope)

    assert from_kafka(headers, value) == envelope


def test_the_actor_travels_as_flat_ce_extension_headers() -> None:
    headers = dict(to_kafka(_full_envelope())[0])

    for extension in ACTOR_EXTENSIONS.values():
        assert f"ce_{extension}" in headers
    assert headers["ce_actoremail"] == b"admin@admin.test"
    assert headers["ce_actororgid"] == b"1"
    assert headers["ce_type"] == b"misp.identity.user.created.v1"
    assert headers["content-type"] == b"application/json"


def test_a_minimal_envelope_round_trips_without_optional_attributes() -> None:
    envelope = Envelope(source="/orgs", type="misp.orgs.organisation.deleted.v1",
                        data={"org_id": 2})

    headers, value = to_kafka(envelope)
    decoded = from_kafka(headers, value)

    names = {name for name, _ in headers}
    assert not any(name.startswith("ce_actor") for name in names)
    assert "ce_subject" not in names and "ce_streamversion" not in names
    assert decoded == envelope
    assert decoded.actor == Actor()


def test_a_system_actor_round_trips() -> None:
    envelope = Envelope(source="/orgs", type="misp.orgs.organisation.created.v1",
                        actor=Actor.system())

    assert from_kafka(*to_kafka(envelope)).actor == Actor.system()


def test_a_caused_message_keeps_the_conversation() -> None:
    first = _full_envelope()

    second = first.caused(source="/orgs", type="misp.orgs.organisation.updated.v1",
                          subject="org-1", data={})

    assert second.correlationid == first.correlationid
    assert second.causationid == first.id
    assert second.actor == first.actor


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_the_trace_context_travels_as_ce_traceparent_and_ce_tracestate_headers() -> None:
    envelope = _full_envelope().model_copy(
        update={"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"})

    headers, value = to_kafka(envelope)

    assert dict(headers)["ce_traceparent"] == TRACEPARENT.encode()
    assert dict(headers)["ce_tracestate"] == b"vendor=opaque"
    assert from_kafka(headers, value) == envelope


def test_an_envelope_written_without_tracing_has_no_trace_headers() -> None:
    headers, value = to_kafka(_full_envelope())

    assert not {"ce_traceparent", "ce_tracestate"} & dict(headers).keys()
    assert from_kafka(headers, value).traceparent is None
