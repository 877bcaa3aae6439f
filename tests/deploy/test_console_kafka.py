"""The web console's Kafka principal (`misp_console`, for its live updates) reads its feeds'
topics without a consumer group, and nothing else: it may write no topic and read no service's
data."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from aiokafka.structs import TopicPartition

from console.feeds import feed_topics

from .test_kafka_security import as_principal


async def test_the_console_reads_its_feeds_from_their_end_without_a_group() -> None:
    consumer = AIOKafkaConsumer(**as_principal("misp_console"), group_id=None,
                                enable_auto_commit=False, request_timeout_ms=5000)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, 0) for topic in feed_topics()]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        records = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 20)
        assert isinstance(records, dict)  # no authorisation error on fetch
    finally:
        await consumer.stop()


async def test_the_console_reads_no_service_data_and_uses_no_group() -> None:
    for topic, group in (("misp.identity.user.v1", None), ("misp.jobs.job.v1", "misp.console")):
        consumer = AIOKafkaConsumer(topic, **as_principal("misp_console"), group_id=group,
                                    auto_offset_reset="earliest", request_timeout_ms=5000)
        with pytest.raises((TopicAuthorizationFailedError, GroupAuthorizationFailedError)):
            await consumer.start()
            await asyncio.wait_for(consumer.getone(), 20)
        await consumer.stop()


async def test_the_console_writes_nothing() -> None:
    producer = AIOKafkaProducer(**as_principal("misp_console"), request_timeout_ms=5000)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(producer.send_and_wait("misp.jobs.job.v1", b"{}"), 20)
    finally:
        await producer.stop()
