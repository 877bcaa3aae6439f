"""Topics are created with the deployment's durability (MISP_KAFKA_REPLICATION_FACTOR and
MISP_KAFKA_MIN_INSYNC_REPLICAS), not a hard-coded single copy."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidReplicationFactorError

from misp_contracts.topics import Topic
from misp_platform.kafka import client_options, durability, ensure_topics


async def test_a_new_topic_gets_the_configured_min_insync_replicas(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_KAFKA_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("MISP_KAFKA_MIN_INSYNC_REPLICAS", "1")
    name = f"test.durable.{uuid.uuid4().hex[:10]}"
    assert await ensure_topics(kafka_bootstrap, [Topic(name, owner="test", partitions=1)]) == [
        name]
    admin = AIOKafkaAdminClient(**client_options(kafka_bootstrap))
    await admin.start()
    try:
        [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC,
                                                                   name)])
        entries = {e[0]: e[1] for e in described.resources[0][4]}
    finally:
        await admin.close()
    assert entries["min.insync.replicas"] == "1"


async def test_a_replication_factor_the_cluster_cannot_hold_is_asked_for_not_ignored(
        kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("MISP_KAFKA_MIN_INSYNC_REPLICAS", "2")
    assert durability() == (3, {"min.insync.replicas": "2"})
    with pytest.raises(InvalidReplicationFactorError):  # one broker here: three copies refused
        await ensure_topics(kafka_bootstrap, [Topic(f"test.r3.{uuid.uuid4().hex[:10]}",
                                                    owner="test", partitions=1)])


def test_min_insync_replicas_above_the_factor_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_KAFKA_REPLICATION_FACTOR", "1")
    monkeypatch.setenv("MISP_KAFKA_MIN_INSYNC_REPLICAS", "2")
    with pytest.raises(ValueError, match="between 1 and"):
        durability()
