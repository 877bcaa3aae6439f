"""The relay's key -> partition cache: the partition aiokafka's own partitioner (murmur2, as
Java's) gives, remembered per key and partition count; the relay's murmur2 is aiokafka's."""

from __future__ import annotations

import random
import uuid

from aiokafka.partitioner import DefaultPartitioner, murmur2

from misp_platform import relay
from misp_platform.relay import partition_of


def test_a_key_goes_where_the_producers_partitioner_sends_it_for_every_partition_count() -> None:
    partitioner = DefaultPartitioner()
    keys = [str(uuid.uuid4()).encode() for _ in range(300)] + [b"", b"a", b"ab", b"abc"]
    for count in (1, 3, 7, 12):
        every = list(range(count))
        for key in keys:
            assert partition_of(key, count) == partitioner(key, every, every)


def test_known_keys_keep_javas_partitions() -> None:
    # Java's Utils.murmur2 of these keys (the figures the Kafka clients' tests use).
    assert murmur2(b"21") == -973932308 & 0xFFFFFFFF
    assert partition_of(b"21", 2**31 - 1) == (-973932308 & 0x7FFFFFFF) % (2**31 - 1)


def test_a_topic_that_grows_gets_its_keys_placed_anew() -> None:
    key = b"a-stream-of-one-user"
    before = partition_of(key, 3)
    after = partition_of(key, 12)
    assert before == (murmur2(key) & 0x7FFFFFFF) % 3
    assert after == (murmur2(key) & 0x7FFFFFFF) % 12
    assert partition_of(key, 3) == before  # both counts are remembered apart


def test_murmur2_runs_once_per_key_and_count() -> None:
    partition_of.cache_clear()
    key = str(uuid.uuid4()).encode()
    for _ in range(5):
        partition_of(key, 3)
    info = partition_of.cache_info()
    assert (info.misses, info.hits) == (1, 4)


def test_the_relays_murmur2_is_aiokafkas_for_every_length_and_byte() -> None:
    draw = random.Random(19)
    keys = [bytes(draw.randrange(256) for _ in range(length))
            for length in range(70) for _ in range(40)]
    keys += [b"\xff" * n for n in range(9)] + [b"\x00" * n for n in range(9)]
    keys += [str(uuid.uuid4()).encode() for _ in range(200)]
    for key in keys:
        assert relay.murmur2(key) == murmur2(key), key
    assert relay.murmur2(b"21") == -973932308 & 0xFFFFFFFF
