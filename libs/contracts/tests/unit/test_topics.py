"""The topic catalogue: one declaration per topic, and safe cleanup policies."""

import pytest

from misp_contracts.events.abuse import ABUSE_TOPIC
from misp_contracts.events.identity import SESSION_TOPIC
from misp_contracts.topics import BY_NAME, CATALOGUE, SERVICES, dlq_topic, owned_by, topic

AUDIT_TOPICS = ["misp.audit.log.v1", *(f"misp.{s}.auth.v1" for s in SERVICES)]
# The abuse detector's blocks last minutes: their topic keeps a day, nothing to rebuild from it.
DECISION_TOPICS = [ABUSE_TOPIC]
# Browser sessions last hours: a week of them rebuilds every session that can still be live.
SESSION_TOPICS = ["misp.identity.session.v1"]
DOMAIN_TOPICS = [t.name for t in CATALOGUE
                 if not t.name.endswith((".dlq.v1", ".auth.v1", ".commands.v1"))
                 and t.name not in AUDIT_TOPICS + DECISION_TOPICS + SESSION_TOPICS]


def test_topic_names_are_unique() -> None:
    assert len(BY_NAME) == len(CATALOGUE)


@pytest.mark.parametrize("name", AUDIT_TOPICS + DOMAIN_TOPICS + SESSION_TOPICS)
def test_audit_and_domain_topics_are_deleted_never_compacted(name: str) -> None:
    assert topic(name).config()["cleanup.policy"] == "delete"


@pytest.mark.parametrize("name", DOMAIN_TOPICS)
def test_domain_topics_keep_their_events_by_default(name: str) -> None:
    assert topic(name).config()["retention.ms"] == "-1"


def test_every_topic_follows_the_naming_rule_and_has_an_owner() -> None:
    for t in CATALOGUE:
        assert t.name.startswith(f"misp.{t.owner}.") and t.name.split(".")[-1] == "v1"
        assert t.owner in SERVICES


def test_every_service_owns_its_dlq_and_auth_topics() -> None:
    for service in SERVICES:
        names = {t.name for t in owned_by(service)}
        assert dlq_topic(service) in names
        assert f"misp.{service}.auth.v1" in names


def test_an_undeclared_topic_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        topic("misp.nobody.thing.v1")


def test_the_session_topic_outlives_every_session() -> None:
    assert SESSION_TOPICS == [SESSION_TOPIC]
    assert int(topic(SESSION_TOPIC).config()["retention.ms"]) >= 2 * 24 * 3600 * 1000
