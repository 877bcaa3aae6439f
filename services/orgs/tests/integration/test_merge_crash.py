"""Crash tests: the real `python -m orgs consume` process SIGKILLed between the saga's steps
(at a failpoint) and restarted completes the merge exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import USER_TOPIC, UserCreated
from misp_contracts.topics import topic as catalogued
from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.kafka import client_options
from misp_platform.testing import eventually, start_group_at_end
from orgs.adapters.store import SqlUnitOfWork
from orgs.consumer import handlers, topics
from orgs.handlers.organisations import add_organisation, start_merge
from orgs.settings import OrgsSettings

from ..support import Publish, created, moved, new_user

ADMIN = Actor(user_id=42, email="admin@admin.test", org_id=1, org_name="ORGNAME")


def consume(orgs_db: str, group: str, log: Path, failpoint: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MISP_FAILPOINTS"}
    env.update({"ORGS_DATABASE_URL": orgs_db, "ORGS_CONSUMER_GROUP": group,
                "MISP_LOG_FORMAT": "json"})
    if failpoint:
        env["MISP_FAILPOINTS"] = failpoint
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "orgs", "consume"], env=env, stdout=out,
                            stderr=subprocess.STDOUT)


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(**client_options(bootstrap))
    await consumer.start()
    try:
        partitions = range(catalogued(topic).partitions)
        offsets: dict[TopicPartition, int] = await consumer.end_offsets(
            [TopicPartition(topic, p) for p in partitions])
        return offsets
    finally:
        await consumer.stop()


async def caught_up(bootstrap: str, group: str, wanted: dict[TopicPartition, int]) -> bool:
    admin = AIOKafkaAdminClient(**client_options(bootstrap))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return all(tp in committed and committed[tp].offset >= end
               for tp, end in wanted.items() if end > 0)


async def merge_status(engine: AsyncEngine, merge_id: str) -> str:
    async with engine.connect() as conn:
        return str((await conn.execute(text(
            "SELECT status FROM org_merge WHERE merge_id = :m"), {"m": merge_id})).scalar())


@pytest.mark.parametrize("failpoint", ["orgs.merge.before_complete", "consumer.after_commit"])
async def test_a_consume_process_killed_mid_saga_completes_the_merge_exactly_once(
        orgs_db: str, orgs_engine: AsyncEngine, orgs_settings: OrgsSettings, publish: Publish,
        kafka_bootstrap: str, tmp_path: Path, failpoint: str) -> None:
    source = await add_organisation(SqlUnitOfWork(orgs_engine),
                                    body={"name": f"S {uuid.uuid4().hex[:8]}"},
                                    actor=ADMIN, created_by=42)
    target = await add_organisation(SqlUnitOfWork(orgs_engine),
                                    body={"name": f"T {uuid.uuid4().hex[:8]}"},
                                    actor=ADMIN, created_by=42)
    users = [new_user(source.state.id) for _ in range(2)]
    # The users are in orgs' projection before the merge starts (as a running orgs has them).
    apply = handlers(orgs_settings)[UserCreated.type]
    async with orgs_engine.begin() as conn:
        for user in users:
            await apply(conn, Envelope(source="/identity", type=UserCreated.type,
                                       data=UserCreated(user=user).model_dump(mode="json")))
    started = await start_merge(SqlUnitOfWork(orgs_engine), source_key=str(source.state.id),
                                target_key=str(target.state.id), actor=ADMIN, requested_by=42)
    # The process's group reads what this test publishes, not what earlier runs left.
    group = f"test-orgs-crash-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, sorted({*PRINCIPAL_TOPICS,
                                                             *topics(orgs_settings)}))
    await publish([created(u) for u in users] + [moved(u, target.state.id) for u in users])
    published = await end_offsets(kafka_bootstrap, USER_TOPIC)
    assert any(published.values())

    log = tmp_path / "consume.log"
    crashed = consume(orgs_db, group, log, failpoint)
    try:
        code = await asyncio.to_thread(crashed.wait, 120)
    finally:
        if crashed.poll() is None:
            crashed.kill()
    assert code == -signal.SIGKILL, log.read_text()[-3000:]
    if failpoint == "orgs.merge.before_complete":
        assert await merge_status(orgs_engine, started.merge_id) == "running"

    restarted = consume(orgs_db, group, log, None)
    try:
        await eventually(lambda: _is(merge_status(orgs_engine, started.merge_id), "completed"),
                         timeout_s=60)
        # Until the restarted process has committed past identity's events (redelivered to
        # it when the first process died before committing): a duplicate would show by then.
        await eventually(lambda: caught_up(kafka_bootstrap, group, published), timeout_s=60)
    finally:
        restarted.send_signal(signal.SIGTERM)
        await asyncio.to_thread(restarted.wait, 30)
    assert restarted.returncode == 0, log.read_text()[-3000:]

    async with orgs_engine.connect() as conn:
        types = [r.type for r in await conn.execute(text(
            "SELECT e.type FROM event e JOIN organisation o ON o.stream_id = e.stream_id "
            "WHERE o.id = :id ORDER BY e.version"), {"id": source.state.id})]
        status = (await conn.execute(text(
            "SELECT status, merged_into FROM organisation WHERE id = :id"),
            {"id": source.state.id})).one()
        in_target = (await conn.execute(text(
            "SELECT count(*) FROM org_member WHERE org_id = :id"),
            {"id": target.state.id})).scalar()
        queued = (await conn.execute(text(
            "SELECT count(*) FROM outbox WHERE position(:m in convert_from(payload, 'UTF8')) > 0"),
            {"m": started.merge_id})).scalar()
    assert types == [
        "misp.orgs.organisation.created.v1", "misp.orgs.organisation.merge-started.v1",
        "misp.orgs.organisation.merged.v1", "misp.orgs.organisation.deleted.v1"]
    assert (status.status, status.merged_into) == ("deleted", target.state.id)
    assert in_target == 2
    assert queued == 2  # merge-started and merged, each published once


async def _is(value: object, expected: object) -> bool:
    return bool(await value == expected)  # type: ignore[misc]
