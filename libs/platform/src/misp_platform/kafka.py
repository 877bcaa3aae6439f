"""Kafka clients as the platform uses them: the connection options every client takes (SASL and
TLS from the process's environment), an idempotent producer and topic creation."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterable
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from misp_contracts.topics import Topic

log = structlog.get_logger(__name__)


def security_options() -> dict[str, Any]:
    """How this process authenticates to Kafka, from `MISP_KAFKA_SECURITY_PROTOCOL` (PLAINTEXT,
    SASL_PLAINTEXT, SASL_SSL or SSL), `MISP_KAFKA_SASL_MECHANISM` (SCRAM-SHA-512 by default),
    `MISP_KAFKA_USERNAME` / `MISP_KAFKA_PASSWORD` (each service its own principal) and
    `MISP_KAFKA_CA_FILE` (the broker's CA, for TLS). Read at each call: a deployment sets them per
    process, tests as the broker's admin."""
    protocol = os.environ.get("MISP_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").strip().upper()
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.startswith("SASL_"):
        options.update(
            sasl_mechanism=os.environ.get("MISP_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            sasl_plain_username=os.environ.get("MISP_KAFKA_USERNAME", ""),
            sasl_plain_password=os.environ.get("MISP_KAFKA_PASSWORD", ""))
    if protocol.endswith("SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=os.environ.get("MISP_KAFKA_CA_FILE") or None)
    return options


def client_options(bootstrap_servers: str) -> dict[str, Any]:
    """`bootstrap_servers` and the security options: what every Kafka client is made with."""
    return {"bootstrap_servers": bootstrap_servers, **security_options()}


def create_producer(bootstrap_servers: str, **overrides: object) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition."""
    options: dict[str, object] = {
        **client_options(bootstrap_servers),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def commit_assigned(consumer: AIOKafkaConsumer,
                          offsets: dict[TopicPartition, int]) -> KafkaError | None:
    """Commit `offsets` for the partitions still assigned (a rebalance may have taken some
    while their records were handled: their next owner reads them again). Returns the error a
    refused commit raised (CommitFailedError: the group rebalanced meanwhile), or None."""
    assigned = consumer.assignment()
    offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if not offsets:
        return None
    try:
        await consumer.commit(offsets)
    except KafkaError as exc:
        return exc
    return None


async def topic_partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions, from the broker's metadata (none for a topic that does not exist
    yet). Through the consumer's client: `topics()` gives names only, and
    `partitions_for_topic()` knows only the topics the consumer was told about."""
    cluster = await consumer._client.fetch_all_metadata()
    return [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]


def durability() -> tuple[int, dict[str, str]]:
    """The replication factor of new topics and their `min.insync.replicas`, from
    `MISP_KAFKA_REPLICATION_FACTOR` and `MISP_KAFKA_MIN_INSYNC_REPLICAS` (1 and 1: the local
    single broker; a cluster of three takes 3 and 2, so acks=all survives one broker's loss)."""
    factor = int(os.environ.get("MISP_KAFKA_REPLICATION_FACTOR", "1"))
    insync = int(os.environ.get("MISP_KAFKA_MIN_INSYNC_REPLICAS", "1"))
    if not 1 <= insync <= factor:
        raise ValueError(f"MISP_KAFKA_MIN_INSYNC_REPLICAS={insync} must be between 1 and "
                         f"MISP_KAFKA_REPLICATION_FACTOR={factor}")
    return factor, {"min.insync.replicas": str(insync)}


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic]) -> list[str]:
    """Create the missing topics with their catalogue settings and the deployment's
    durability; returns the names created."""
    factor, durable = durability()
    wanted = {t.name: t for t in topics}
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers), request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for name, t in wanted.items() if name not in existing]
        created: list[str] = []
        for t in missing:
            try:
                response = await admin.create_topics([NewTopic(
                    name=t.name, num_partitions=t.partitions, replication_factor=factor,
                    topic_configs={**durable, **t.config()})])
            except TopicAlreadyExistsError:
                continue  # another instance of the owner created it first
            # The broker answers per topic: an error there is not raised by the client.
            for _name, code, *message in getattr(response, "topic_errors", []):
                if code == TopicAlreadyExistsError.errno:
                    break
                if code:
                    raise for_code(code)(f"topic {t.name} not created: "
                                         f"{message[0] if message else ''}")
            else:
                created.append(t.name)
        if created:
            log.info("kafka.topics_created", topics=created)
        return created
    finally:
        await admin.close()


async def adopt_committed_offsets(bootstrap_servers: str, *, source_group: str,
                                  target_group: str, topics: Iterable[str]) -> int:
    """Start a new group where another one stands on `topics` (when it has committed nothing
    yet): an upgrade that gives a projection a consumer of its own must not replay its history
    from the start, as rows of unknown version would briefly go back in time. Returns how many
    partitions were adopted."""
    wanted = set(topics)
    admin = AIOKafkaAdminClient(**client_options(bootstrap_servers), request_timeout_ms=15000)
    await admin.start()
    try:
        if await admin.list_consumer_group_offsets(target_group):
            return 0
        source = {tp: meta for tp, meta in
                  (await admin.list_consumer_group_offsets(source_group)).items()
                  if tp.topic in wanted and meta.offset >= 0}
    finally:
        await admin.close()
    if not source:
        return 0
    consumer = AIOKafkaConsumer(**client_options(bootstrap_servers), group_id=target_group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(source))
        await consumer.commit({tp: OffsetAndMetadata(meta.offset, "")
                               for tp, meta in source.items()})
    finally:
        await consumer.stop()
    log.info("kafka.offsets_adopted", source=source_group, target=target_group,
             partitions=len(source))
    return len(source)
