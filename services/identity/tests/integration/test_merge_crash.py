"""Crash test: the real `python -m identity consume` process SIGKILLed while it applies
`OrganisationMergeStarted` (the one transaction that closes the source and moves its users) and
restarted moves every user of the source exactly once (services/orgs/README.md, step 2).

The process runs in its own consumer group and its own database, but on the real topics (other
traffic may reach it): every assertion is scoped to this test's organisations (random large ids)
and users. The group starts at the end of its topics (offsets committed for it, as a process that
had read them all would have left them), so its first batch after the merge is published holds
the merge (one broker: one fetch returns every partition's records), and `consumer.before_commit=1`
/ `consumer.after_commit=1` kill it in that batch: the move written but not committed, or
committed with its processed mark but its Kafka offset not.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from sqlalchemy import func, select

from identity.adapters.tables import org, user_account
from identity.bootstrap import spec
from identity.settings import IdentitySettings
from misp_contracts.envelope import to_kafka
from misp_contracts.events.identity import USER_TOPIC, UserUpdated
from misp_contracts.events.orgs import ORGANISATION_TOPIC, OrganisationMergeStarted
from misp_platform.db import event, outbox, processed_message
from misp_platform.kafka import create_producer
from misp_platform.testing import committed_offsets, eventually, start_group_at_end

from .test_merge_saga import as_orgs, ref

USERS = 30


def consume(db: str, group: str, state_dir: str, log: Path,
            failpoint: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "MISP_FAILPOINTS"}
    env.update({"IDENTITY_DATABASE_URL": db, "IDENTITY_CONSUMER_GROUP": group,
                # The first run's key file (and its recovery) stay in the test's directory.
                "IDENTITY_STATE_DIR": state_dir, "MISP_STATE_DIR": state_dir,
                "MISP_LOG_FORMAT": "json"})
    if failpoint:
        env["MISP_FAILPOINTS"] = failpoint
    out = log.open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "identity", "consume"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()  # the child holds its own descriptor


async def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)
    return process.returncode


async def caught_up(bootstrap: str, group: str, wanted: dict[TopicPartition, int]) -> bool:
    done = await committed_offsets(bootstrap, group)
    return all(done.get(tp, -1) >= end for tp, end in wanted.items() if end > 0)


@pytest.mark.parametrize("failpoint", ["consumer.before_commit", "consumer.after_commit"])
async def test_a_consume_process_killed_mid_merge_moves_every_user_exactly_once(
        identity: Any, add_org: Any, kafka_bootstrap: str, tmp_path: Path,
        failpoint: str) -> None:
    db = identity.engine.url.render_as_string(hide_password=False)
    source_id, target_id = random.sample(range(10**9, 2 * 10**9), 2)
    source, target = await add_org(source_id), await add_org(target_id)
    users = [int((await identity.add_user(org_id=source.id, role_id=3))["id"])
             for _ in range(USERS)]

    group = f"test-identity-crash-{uuid.uuid4().hex}"
    log = tmp_path / "consume.log"
    state_dir = identity.settings.state_dir
    topics = spec.topics(IdentitySettings())
    assert ORGANISATION_TOPIC in topics

    def tail() -> str:
        return log.read_text(errors="replace")[-4000:]

    # 1. The group is at the end of its topics (what it would have read before is not ours).
    await start_group_at_end(kafka_bootstrap, group, topics)

    # 2. The merge starts (as orgs publishes it); the armed process dies in the batch holding it.
    merge_id = str(uuid.uuid4())
    started = as_orgs(OrganisationMergeStarted(merge_id=merge_id, source=ref(source),
                                               target=ref(target)),
                      subject=source.uuid, correlation=f"corr-{merge_id}")
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    try:
        headers, value = to_kafka(started)
        sent = await producer.send_and_wait(ORGANISATION_TOPIC, value=value,
                                            key=source.uuid.encode(), headers=headers)
    finally:
        await producer.stop()
    merge_tp = TopicPartition(ORGANISATION_TOPIC, sent.partition)

    crashed = consume(db, group, state_dir, log, f"{failpoint}=1")
    try:
        code = await asyncio.to_thread(crashed.wait, 40)
    finally:
        if crashed.poll() is None:
            crashed.kill()
            await asyncio.to_thread(crashed.wait, 10)
    assert code == -signal.SIGKILL, tail()
    # Killed with the merge's offset not committed: Kafka redelivers it to the next process.
    assert (await committed_offsets(kafka_bootstrap, group)).get(merge_tp, -1) <= sent.offset
    assert '"identity.merge.users_moved"' in log.read_text(errors="replace"), tail()
    if failpoint == "consumer.before_commit":  # the move was written, then rolled back
        assert await orgs_of(identity, users) == {source.id: USERS}
        assert await marks(identity, group, started.id) == 0
    else:  # the move and its processed mark were committed, the offset was not
        assert await orgs_of(identity, users) == {target.id: USERS}
        assert await marks(identity, group, started.id) == 1

    # 3. Restarted without the failpoint: it gets the merge again and ends with one move each.
    restarted = consume(db, group, state_dir, log, None)
    try:
        await eventually(lambda: _equals(orgs_of(identity, users), {target.id: USERS}),
                         timeout_s=40)
        # Until it has committed past the redelivered merge (a duplicate would show by then).
        await eventually(lambda: caught_up(kafka_bootstrap, group,
                                           {merge_tp: sent.offset + 1}), timeout_s=40)
    finally:
        code = await stop(restarted)
    assert code == 0, tail()

    moves = await user_moves(identity, source.id, target.id)
    assert sorted(int(m.data["user"]["id"]) for m in moves) == sorted(users)  # once each
    for row in moves:
        assert row.data["changes"] == {"org_id": [source.id, target.id]}
        assert row.data["user"]["org_id"] == target.id
        assert row.metadata["correlationid"] == f"corr-{merge_id}"
        assert row.metadata["causationid"] == started.id
    async with identity.engine.connect() as conn:
        queued = (await conn.execute(
            select(outbox.c.message_key, func.count()).where(
                outbox.c.topic == USER_TOPIC,
                outbox.c.message_key.in_([str(m.stream_id) for m in moves]))
            .group_by(outbox.c.message_key))).all()
        closed = (await conn.execute(select(org.c.merging_into, org.c.merge_id, org.c.deleted)
                                     .where(org.c.org_id == source.id))).one()
    assert len(queued) == USERS and all(n == 2 for _, n in queued)  # creation + one move
    assert tuple(closed) == (target.id, merge_id, False)
    assert await marks(identity, group, started.id) == 1


async def orgs_of(identity: Any, user_ids: list[int]) -> dict[int, int]:
    """How many of these users each organisation holds."""
    async with identity.engine.connect() as conn:
        rows = (await conn.execute(
            select(user_account.c.org_id, func.count()).where(
                user_account.c.user_id.in_(user_ids)).group_by(user_account.c.org_id))).all()
    return {int(o): int(n) for o, n in rows}


async def marks(identity: Any, group: str, message_id: str) -> int:
    async with identity.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(processed_message).where(
            processed_message.c.consumer == group,
            processed_message.c.message_id == message_id))).scalar_one())


async def user_moves(identity: Any, source_id: int, target_id: int) -> list[Any]:
    async with identity.engine.connect() as conn:
        return list(await conn.execute(
            select(event.c.stream_id, event.c.data, event.c.metadata).where(
                event.c.type == UserUpdated.type,
                event.c.data.contains({"changes": {"org_id": [source_id, target_id]}}))))


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)
