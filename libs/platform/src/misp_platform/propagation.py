"""Writes that other services decide by answer once those services have applied them.

A server setting is read by identity, orgs, the audit and the mailer, on many paths (logins,
registrations, the organisation index, every mail). Rather than make each of those reads ask
Kafka whether a setting changed a moment ago, the rare write pays: the settings service holds
its answer until every service named in the topic's `readers` (the topic catalogue) has applied
the change, bounded by the read timeout (docs/consistency.md).

How far a service has applied a topic is its consumer group's committed offset in Kafka: a
group commits only after the transaction of its effects (consumer.py), so an offset past an
event means the effect is in that service's database. A group that has committed on the topic
is always waited for; one that has not is waited for only while the broker lists it (a service
starting), so a service not deployed costs nothing. One that does not move (a service down) is
waited for up to the bound, then the answer goes out and the wait counts as timed out.

The broker's list of groups is not trusted alone: under load it has left out a group that was
up and committing (3 of 261 waits, stop 28), and the write then answered before that service had
applied it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import structlog
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from misp_contracts.topics import topic as catalogue_entry
from misp_platform import metrics
from misp_platform.kafka import client_options

log = structlog.get_logger(__name__)

POLL_S = 0.02


def reader_groups(topic: str) -> list[str]:
    """The consumer groups whose progress on `topic` a write to it waits for."""
    return [f"misp.{service}" for service in catalogue_entry(topic).readers]


class CommittedOffsets:
    """Consumer groups' committed offsets, from Kafka (one admin connection, made when first
    needed and remade after a failure)."""

    def __init__(self, bootstrap_servers: str, *, timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.timeout_s = timeout_s
        self._admin: AIOKafkaAdminClient | None = None
        self._coordinators: dict[str, int] = {}
        self._connecting = asyncio.Lock()

    async def _client(self) -> AIOKafkaAdminClient:
        async with self._connecting:
            if self._admin is None:
                admin = AIOKafkaAdminClient(**client_options(self.bootstrap_servers),
                                            request_timeout_ms=int(self.timeout_s * 1000))
                await admin.start()
                self._admin = admin
        return self._admin

    async def existing(self, groups: Iterable[str]) -> list[str]:
        """Those of `groups` the cluster knows (with members or committed offsets)."""
        known = {name for name, _protocol in await (await self._client()).list_consumer_groups()}
        return [g for g in groups if g in known]

    async def of(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """`group`'s committed offset on each partition (-1 where it has committed none)."""
        admin = await self._client()
        if group not in self._coordinators:
            self._coordinators[group] = await admin.find_coordinator(group)
        committed = await admin.list_consumer_group_offsets(
            group, group_coordinator_id=self._coordinators[group], partitions=partitions)
        return {tp: committed[tp].offset if tp in committed else -1 for tp in partitions}

    async def reset(self) -> None:
        admin, self._admin = self._admin, None
        self._coordinators.clear()
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()


async def wait_for_readers(committed: CommittedOffsets, ends: dict[TopicPartition, int],
                           groups: list[str], *, timeout_s: float) -> bool:
    """Wait until each of `groups` has committed `ends` (True), or `timeout_s` (False)."""
    begin = time.monotonic()
    deadline = begin + timeout_s
    targets = {tp: end for tp, end in ends.items() if end > 0}
    try:
        waiting = list(groups) if targets else []
        listed: set[str] | None = None
        while waiting:
            behind: list[str] = []
            for group in waiting:
                offsets = await committed.of(group, list(targets))
                if all(offset < 0 for offset in offsets.values()):
                    if listed is None:  # asked once, and only for a group with no offset
                        listed = set(await committed.existing(groups))
                    if group not in listed:
                        continue  # not deployed: nothing to wait for
                if any(offsets[tp] < end for tp, end in targets.items()):
                    behind.append(group)
                else:
                    metrics.projection_wait_seconds.labels(group, "done").observe(
                        time.monotonic() - begin)
            waiting = behind
            if waiting and time.monotonic() >= deadline:
                log.warning("propagation.readers_behind", groups=waiting,
                            topics=sorted({tp.topic for tp in targets}))
                for group in waiting:
                    metrics.projection_wait_seconds.labels(group, "timed_out").observe(
                        time.monotonic() - begin)
                return False
            if waiting:
                await asyncio.sleep(POLL_S)
    except Exception as exc:  # Kafka away: the write stands; its readers follow eventually
        log.warning("propagation.readers_unknown", error=f"{type(exc).__name__}: {exc}")
        await committed.reset()
        return False
    return True
