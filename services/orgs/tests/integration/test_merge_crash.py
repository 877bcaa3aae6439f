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
from aiokafka import TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from misp_contracts.envelope import Actor, Envelope, from_kafka
from misp_contracts.events.identity import USER_TOPIC, UserCreated, UserUpdated
from misp_platform.auth.principals import PRINCIPAL_TOPICS
from misp_platform.testing import (
    committed_offsets,
    eventually,
    killed_at_failpoint,
    read_since,
    start_group_at_end,
    topic_ends,
)
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


async def caught_up(bootstrap: str, group: str, wanted: dict[TopicPartition, int]) -> bool:
    committed = await committed_offsets(bootstrap, group)
    return all(tp in committed and committed[tp] >= end for tp, end in wanted.items() if end > 0)


async def state_at_the_crash(engine: AsyncEngine, bootstrap: str, group: str,
                             started: dict[TopicPartition, int], sent: list[Envelope],
                             target: int) -> None:
    """Killed after the database commit of its first batch, before Kafka's: the batch's effects,
    processed marks and recorded positions are all there, and Kafka still holds the offsets
    the group started at (the restart gets the batch again)."""
    assert await committed_offsets(bootstrap, group) == started
    async with engine.connect() as conn:
        positions = {TopicPartition(r.topic, r.partition): r.next_offset
                     for r in await conn.execute(text(
                         "SELECT topic, partition, next_offset FROM consumer_position "
                         "WHERE consumer = :g"), {"g": group})}
        marks = set((await conn.execute(text(
            "SELECT message_id FROM processed_message WHERE consumer = :g"),
            {"g": group})).scalars())
        members: dict[int, int] = dict((await conn.execute(text(
            "SELECT user_id, org_id FROM org_member"))).tuples().all())
    assert any(positions.get(tp, 0) > offset for tp, offset in started.items())
    ours = {e.id: e for e in sent}
    for record in await read_since(bootstrap, {tp: started[tp] for tp in started
                                              if tp.topic == USER_TOPIC}):
        envelope = ours.get(from_kafka(record.headers, record.value).id)
        if envelope is None:
            continue
        tp = TopicPartition(record.topic, record.partition)
        applied = record.offset < positions.get(tp, started[tp])
        assert (envelope.id in marks) == applied
        if envelope.type == UserUpdated.type:
            user_id = envelope.data["user"]["id"]
            assert (members[user_id] == target) == applied, (user_id, applied)


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
    merge = await start_merge(SqlUnitOfWork(orgs_engine), source_key=str(source.state.id),
                                target_key=str(target.state.id), actor=ADMIN, requested_by=42)
    # The process's group reads what this test publishes, not what earlier runs left.
    group = f"test-orgs-crash-{uuid.uuid4().hex}"
    await start_group_at_end(kafka_bootstrap, group, sorted({*PRINCIPAL_TOPICS,
                                                             *topics(orgs_settings)}))
    started = await committed_offsets(kafka_bootstrap, group)
    sent = await publish([created(u) for u in users] + [moved(u, target.state.id) for u in users])
    published = await topic_ends(kafka_bootstrap, USER_TOPIC)
    assert any(published.values())

    log = tmp_path / "consume.log"
    crashed = consume(orgs_db, group, log, failpoint)
    await killed_at_failpoint(crashed, log, 120)
    if failpoint == "orgs.merge.before_complete":
        assert await merge_status(orgs_engine, merge.merge_id) == "running"
    else:
        await state_at_the_crash(orgs_engine, kafka_bootstrap, group, started, sent,
                                 target.state.id)

    restarted = consume(orgs_db, group, log, None)
    try:
        await eventually(lambda: _is(merge_status(orgs_engine, merge.merge_id), "completed"),
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
            {"m": merge.merge_id})).scalar()
    assert types == [
        "misp.orgs.organisation.created.v1", "misp.orgs.organisation.merge-started.v1",
        "misp.orgs.organisation.merged.v1", "misp.orgs.organisation.deleted.v1"]
    assert (status.status, status.merged_into) == ("deleted", target.state.id)
    assert in_target == 2
    assert queued == 2  # merge-started and merged, each published once


async def _is(value: object, expected: object) -> bool:
    return bool(await value == expected)  # type: ignore[misc]
