"""Kafka clients as the platform uses them: an idempotent producer and topic creation."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from misp_contracts.topics import Topic

log = structlog.get_logger(__name__)


def create_producer(bootstrap_servers: str, **overrides: object) -> AIOKafkaProducer:
    """Idempotent, acks=all: a retried send never duplicates or reorders within a partition."""
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


async def ensure_topics(bootstrap_servers: str, topics: Iterable[Topic]) -> list[str]:
    """Create the missing topics with their catalogue settings; returns the names created."""
    wanted = {t.name: t for t in topics}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for name, t in wanted.items() if name not in existing]
        created: list[str] = []
        for t in missing:
            try:
                await admin.create_topics([NewTopic(
                    name=t.name, num_partitions=t.partitions, replication_factor=1,
                    topic_configs=t.config())])
                created.append(t.name)
            except TopicAlreadyExistsError:
                pass  # another instance of the owner created it first
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
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
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
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=target_group,
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
