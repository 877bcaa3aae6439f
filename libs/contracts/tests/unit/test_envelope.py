"""The envelope survives the Kafka binary binding, actor included; the direct codec writes and
reads what the CloudEvents binding does."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.exceptions import CloudEventValidationError
from cloudevents.core.v1.event import CloudEvent

from misp_contracts.envelope import (
    ACTOR_EXTENSIONS,
    JSON_FORMAT,
    Actor,
    Envelope,
    decode_usual,
    from_kafka,
    to_kafka,
    to_kafka_text,
)


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


# ---- the direct codec against the CloudEvents binding (the reference) ---------------------------

def _by_binding(envelope: Envelope) -> tuple[list[tuple[str, bytes]], bytes]:
    message = ce_kafka.to_binary(envelope.to_cloudevent(), JSON_FORMAT, key_mapper=lambda _e: None)
    return list(message.headers.items()), message.value


def _decoded_by_binding(headers: list[tuple[str, bytes]], value: bytes) -> Envelope:
    message = ce_kafka.KafkaMessage(headers=dict(headers), key=None, value=value)
    return Envelope.from_cloudevent(ce_kafka.from_binary(message, JSON_FORMAT, CloudEvent))


SHAPES = {
    "full": _full_envelope(),
    "minimal": Envelope(source="/orgs", type="misp.orgs.org.deleted.v1"),
    "offset time": _full_envelope().model_copy(update={
        "time": datetime(2024, 1, 1, 8, tzinfo=timezone(timedelta(hours=2)))}),
    "whole second": _full_envelope().model_copy(update={
        "time": datetime(2024, 1, 1, 8, tzinfo=UTC)}),
    "traced, unicode data": Envelope(
        source="/x", type="misp.x.v1", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01",
        tracestate="k=v",
        data={"name": "Zoë \u2603", "n": -(10**18) + 1, "f": 0.1, "l": [None, True]}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_direct_encoding_is_the_bindings(shape: str) -> None:
    assert to_kafka(SHAPES[shape]) == _by_binding(SHAPES[shape])


@pytest.mark.parametrize("shape", SHAPES)
def test_the_direct_decoding_is_the_bindings(shape: str) -> None:
    headers, value = to_kafka(SHAPES[shape])
    direct = decode_usual(dict(headers), value)
    assert direct is not None
    reference = _decoded_by_binding(headers, value)
    assert direct == reference == SHAPES[shape]
    assert direct.actor == reference.actor and direct.time == reference.time


@pytest.mark.parametrize("shape", SHAPES)
def test_the_text_headers_are_the_kafka_headers_in_utf8(shape: str) -> None:
    written = to_kafka_text(SHAPES[shape])
    assert written is not None
    headers, value = written
    assert ([(name, text.encode()) for name, text in headers], value) == to_kafka(SHAPES[shape])


def test_a_shape_only_the_binding_writes_has_no_text_form() -> None:
    assert to_kafka_text(Envelope(source="/x", type="misp.x.v1",
                                  time=datetime(2024, 1, 1, 8))) is None
    assert to_kafka_text(Envelope(source="/x", type="misp.x.v1",
                                  data={"at": datetime(2024, 1, 1, tzinfo=UTC)})) is None


def test_a_naive_time_is_refused_as_the_binding_refuses_it() -> None:
    envelope = Envelope(source="/x", type="misp.x.v1", time=datetime(2024, 1, 1, 8))
    with pytest.raises(CloudEventValidationError):
        _by_binding(envelope)
    with pytest.raises(CloudEventValidationError):
        to_kafka(envelope)


def _headers_with(**changes: bytes | None) -> dict[str, bytes]:
    headers = dict(to_kafka(_full_envelope())[0])
    for name, value in changes.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    return headers


UNUSUAL = {
    "an unknown header": (_headers_with(ce_other=b"x"), b"{}"),
    "a time without seconds' fraction rules": (_headers_with(ce_time=b"2024-01-01 08:00Z"), b"{}"),
    "data not an object": (_headers_with(), b"[1]"),
    "no data": (_headers_with(), b""),
    "actor id not a number": (_headers_with(ce_actoruserid=b"five"), b"{}"),
    "stream version not a number": (_headers_with(ce_streamversion=b"7.0"), b"{}"),
    "another spec version": (_headers_with(ce_specversion=b"0.3"), b"{}"),
    "no id": (_headers_with(ce_id=None), b"{}"),
    "not UTF-8": (_headers_with(ce_subject=b"\xff"), b"{}"),
    "an upper-case header": (_headers_with(CE_OTHER=b"x"), b"{}"),
    "a naive time": (_headers_with(ce_time=b"2024-01-01T08:00:00"), b"{}"),
    "an actor id with an underscore": (_headers_with(ce_actoruserid=b"1_0"), b"{}"),
    "a stream version with a plus": (_headers_with(ce_streamversion=b"+7"), b"{}"),
    "an empty subject": (_headers_with(ce_subject=b""), b"{}"),
    "text content": (_headers_with(**{"content-type": b"text/plain"}), b"{}"),
    "data not JSON": (_headers_with(), b"\x00garbage"),
    # orjson reads these otherwise than the binding's json (or not at all): declined.
    "data with NaN": (_headers_with(), b'{"n": NaN}'),
    "data with a lone surrogate": (_headers_with(), b'{"s": "\\ud800"}'),
    "data with an integer beyond 64 bits": (
        _headers_with(), b'{"n": 123456789012345678901234567890}'),
    "data with a 19-digit integer": (_headers_with(), b'{"n": 9223372036854775808}'),
}


def test_integers_beyond_64_bits_are_read_as_the_binding_reads_them_exact() -> None:
    headers = _headers_with()
    value = b'{"n": 123456789012345678901234567890, "m": -10000000000000000000}'
    assert decode_usual(headers, value) is None
    assert from_kafka(headers, value).data == {"n": 123456789012345678901234567890,
                                               "m": -10000000000000000000}


@pytest.mark.parametrize("case", UNUSUAL)
def test_any_other_shape_is_left_to_the_binding_which_decodes_or_refuses_it(case: str) -> None:
    headers, value = UNUSUAL[case]
    assert decode_usual(headers, value) is None
    try:
        expected: Envelope | type[Exception] = _decoded_by_binding(list(headers.items()), value)
    except Exception as exc:  # whatever the reference raises, so must we
        expected = type(exc)
    if isinstance(expected, Envelope):  # (the binding makes up a missing id)
        assert (from_kafka(headers, value).model_dump(exclude={"id"})
                == expected.model_dump(exclude={"id"}))
    else:
        with pytest.raises(expected):
            from_kafka(headers, value)
