"""A new consumer group starts where another one stands (the principals consumer of an
upgraded deployment starts where the main group stood, instead of replaying history), and only
while it has committed nothing of its own."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from misp_platform.kafka import adopt_committed_offsets, client_options, create_producer


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        return {tp: m.offset for tp, m in
                (await admin.list_consumer_group_offsets(group)).items()}
    finally:
        await admin.close()


async def commit(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(**client_options(bootstrap), group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_a_new_group_adopts_the_offsets_of_another_once(
        kafka_bootstrap: str, new_topic) -> None:  # type: ignore[no-untyped-def]
    topic, other = await new_topic(partitions=1), await new_topic(partitions=1)
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    for n in range(5):
        await producer.send_and_wait(topic, str(n).encode(), key=b"k")
        await producer.send_and_wait(other, str(n).encode(), key=b"k")
    await producer.stop()
    main, principals = f"g-{uuid.uuid4().hex}", f"g-{uuid.uuid4().hex}"
    await commit(kafka_bootstrap, main, {TopicPartition(topic, 0): 3,
                                         TopicPartition(other, 0): 5})

    assert await adopt_committed_offsets(kafka_bootstrap, source_group=main,
                                         target_group=principals, topics=[topic]) == 1
    assert await committed(kafka_bootstrap, principals) == {TopicPartition(topic, 0): 3}

    # Once the group has offsets of its own, they are its own.
    await commit(kafka_bootstrap, main, {TopicPartition(topic, 0): 5})
    assert await adopt_committed_offsets(kafka_bootstrap, source_group=main,
                                         target_group=principals, topics=[topic]) == 0
    assert await committed(kafka_bootstrap, principals) == {TopicPartition(topic, 0): 3}
    # A source with nothing to adopt leaves a new group to start from the beginning.
    assert await adopt_committed_offsets(kafka_bootstrap, source_group=f"g-{uuid.uuid4().hex}",
                                         target_group=f"g-{uuid.uuid4().hex}",
                                         topics=[topic]) == 0
