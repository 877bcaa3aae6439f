"""The committed AsyncAPI document is current and describes every topic."""

import json

from misp_contracts import asyncapi
from misp_contracts.events import event_registry
from misp_contracts.topics import CATALOGUE


def test_the_committed_document_is_current() -> None:
    assert asyncapi.main(["check"]) == 0


def test_every_topic_is_a_channel_and_every_event_a_message() -> None:
    document = json.loads(asyncapi.DOCUMENT_PATH.read_text())

    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == {t.name for t in CATALOGUE}
    carried = {m for c in document["channels"].values() for m in c["messages"]}
    assert set(event_registry) <= carried
    assert set(event_registry) | {asyncapi.DLQ_MESSAGE} == set(document["components"]["messages"])


def test_auth_topics_carry_the_auth_events_and_dlqs_a_dead_letter() -> None:
    channels = asyncapi.build()["channels"]

    assert set(channels["misp.mailer.auth.v1"]["messages"]) == {
        "misp.auth.authentication.failed.v1", "misp.auth.authentication.succeeded.v1"}
    assert set(channels["misp.identity.dlq.v1"]["messages"]) == {asyncapi.DLQ_MESSAGE}
    assert set(channels["misp.identity.user.v1"]["messages"]) == {
        "misp.identity.user.created.v1", "misp.identity.user.updated.v1",
        "misp.identity.user.deleted.v1", "misp.identity.user.totp-set.v1",
        "misp.identity.user.totp-removed.v1"}


def test_every_local_reference_resolves() -> None:
    document = asyncapi.build()

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(document):
        target: object = document
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict) and part in target, ref
            target = target[part]


def test_the_cloudevents_headers_include_the_actor() -> None:
    headers = asyncapi.headers_schema()["properties"]

    for name in ("ce_id", "ce_source", "ce_type", "ce_time", "ce_specversion", "content-type",
                 "ce_streamversion", "ce_correlationid", "ce_causationid", "ce_actoruserid",
                 "ce_actoremail", "ce_actororgid", "ce_actororgname", "ce_actorclientip"):
        assert name in headers
