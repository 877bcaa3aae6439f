"""The projection from real Kafka topics into the real database: every misp.* topic by pattern,
effectively once, the logging settings followed, and the SIEM topic as a SIEM reads it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable

from aiokafka import AIOKafkaConsumer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.projections.log import Options
from audit.testing import (
    Namespace,
    count_entries,
    envelope_of,
    running_consumer,
    running_relay,
    wait_until,
)
from misp_contracts.envelope import Actor, Envelope, from_kafka
from misp_contracts.events.audit import AuditLogRecorded
from misp_contracts.events.auth import AuthenticationSucceeded
from misp_contracts.events.identity import USER_TOPIC, UserState, UserUpdated
from misp_contracts.events.settings import SETTING_TOPIC, SettingChanged
from misp_contracts.topics import Topic
from misp_platform.kafka import client_options, ensure_topics

ADMIN = Actor(user_id=1, email="admin@admin.test", org_id=1, org_name="ORGNAME",
              authkey_id=4, client_ip="192.0.2.7")


def user_updated(uid: int, old: str, new: str) -> UserUpdated:
    return UserUpdated(user=UserState(id=uid, uuid=str(uuid.uuid4()), email=new, org_id=1,
                                      role_id=3), changes={"email": (old, new)})


async def test_events_become_log_rows_once_even_when_redelivered(
        audit_engine: AsyncEngine, namespace: Namespace) -> None:
    first = envelope_of(user_updated(5, "testusr-changed@user.local", "testusr@user.local"),
                        actor=ADMIN)

    def marker(n: int) -> Envelope:  # same key, same partition: applied after what precedes it
        return envelope_of(user_updated(5, f"m{n}@user.local", f"m{n}@user.local"),
                           actor=ADMIN, subject=first.subject)

    await namespace.publish([(USER_TOPIC, first)])
    async with running_consumer(audit_engine, namespace) as runner:
        await wait_until(lambda: count_entries(audit_engine), what="the first row")
        # The same event again (a relay that re-sent after a crash) and a fresh consumer group
        # would both redeliver it: neither makes a second row.
        await namespace.publish([(USER_TOPIC, first), (USER_TOPIC, marker(1))])
        await wait_until(lambda: count_entries(audit_engine, "change LIKE :m", {"m": "%m1@%"}),
                         what="marker 1")
        assert runner.applied == 2
    async with running_consumer(audit_engine, namespace) as replay:  # a new group: from the start
        await namespace.publish([(USER_TOPIC, marker(2))])
        await wait_until(lambda: count_entries(audit_engine, "change LIKE :m", {"m": "%m2@%"}),
                         what="marker 2")
        assert replay.applied == 3  # it did read `first` and marker 1 again, before marker 2
    async with audit_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM log_entry ORDER BY id"))).all()
    assert [r.change for r in rows] == [
        "email (testusr-changed@user.local) => (testusr@user.local)",
        "email (m1@user.local) => (m1@user.local)", "email (m2@user.local) => (m2@user.local)"]
    row = rows[0]
    assert (row.model, row.model_id, row.action, row.user_id) == ("User", 5, "edit", 1)
    assert row.change == "email (testusr-changed@user.local) => (testusr@user.local)"
    assert row.title == "User (5): testusr@user.local" and row.ip is None
    assert row.chain.startswith(namespace.prefix) and row.seq == 1


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_a_new_topic_is_picked_up_and_unknown_types_are_logged_generically(
        audit_engine: AsyncEngine, namespace: Namespace) -> None:
    await namespace.ensure(namespace.topic_of(USER_TOPIC))
    async with running_consumer(audit_engine, namespace):
        later = Envelope(source="/jobs", type="misp.jobs.task.executed.v1", subject="t1",
                         actor=ADMIN, data={"task": {"id": 3, "name": "pull feeds"}})
        await namespace.publish([("misp.jobs.task.v1", later)])  # a topic created just now
        await wait_until(lambda: count_entries(audit_engine), timeout_s=40,
                         what="the new topic's event")
    async with audit_engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM log_entry"))).one()
    assert (row.model, row.action, row.title) == ("Task", "execute", "Task (3): pull feeds")


async def test_log_auth_and_log_client_ip_follow_setting_changes(
        audit_engine: AsyncEngine, namespace: Namespace) -> None:
    def auth(n: int) -> Envelope:
        return envelope_of(AuthenticationSucceeded(
            title=f"Successful authentication using API key ({n})", authkey_id=1, user_id=1,
            email="a@b.test", ip="198.51.100.9", http_method="GET", target="/x"), actor=ADMIN)

    setting_topic = namespace.topic_of(SETTING_TOPIC)
    await namespace.ensure(setting_topic, partitions=1)
    await namespace.ensure(namespace.topic_of("misp.identity.auth.v1"))
    async with running_consumer(audit_engine, namespace) as runner:
        await namespace.publish([("misp.identity.auth.v1", auth(1))])

        async def applied() -> bool:
            return runner.applied >= 1

        await wait_until(applied, what="the first auth event")
        assert await count_entries(audit_engine) == 0  # MISP.log_auth is off by default
        await namespace.publish([
            (SETTING_TOPIC, envelope_of(SettingChanged(name="MISP.log_auth", value=True,
                                                       previous_value=False), actor=ADMIN)),
            (SETTING_TOPIC, envelope_of(SettingChanged(name="MISP.log_client_ip", value=True,
                                                       previous_value=False), actor=ADMIN)),
        ])
        # Each setting is recorded in the transaction of its row: both rows, both applied.
        await wait_until(lambda: _equals(
            count_entries(audit_engine, "action = 'serverSettingsEdit'"), 2),
            what="the two setting rows")
        await namespace.publish([("misp.identity.auth.v1", auth(2))])
        await wait_until(lambda: count_entries(audit_engine, "action = 'auth'"),
                         what="the auth row")
    async with audit_engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM log_entry WHERE action = 'auth'"))).one()
        setting = (await conn.execute(text(
            "SELECT change FROM log_entry WHERE action = 'serverSettingsEdit' ORDER BY id"
        ))).scalars().all()
    assert row.ip == "198.51.100.9" and row.title.endswith("(2)")
    assert setting[0] == "MISP.log_auth () => (1)"


async def test_a_siem_reads_ecs_records_keyed_by_entry_id_from_the_audit_topic(
        audit_engine: AsyncEngine, audit_db: str, namespace: Namespace,
        kafka_bootstrap: str) -> None:
    siem_topic = f"{namespace.prefix}-siem"
    await ensure_topics(kafka_bootstrap, [Topic(siem_topic, owner="test", partitions=3)])
    events = [envelope_of(user_updated(10 + i, f"old{i}@x.test", f"new{i}@x.test"),
                          actor=ADMIN) for i in range(3)]
    async with running_relay(audit_engine, audit_db, kafka_bootstrap), running_consumer(
            audit_engine, namespace, options=Options(siem_topic=siem_topic)):
        await namespace.publish([(USER_TOPIC, e) for e in events])
        siem = AIOKafkaConsumer(siem_topic, **client_options(kafka_bootstrap),
                                group_id=f"siem-{uuid.uuid4().hex}",
                                auto_offset_reset="earliest")
        await siem.start()
        try:
            got = []
            while len(got) < 3:
                batch = await asyncio.wait_for(siem.getmany(timeout_ms=1000), 30)
                got += [r for rs in batch.values() for r in rs]
        finally:
            await siem.stop()
    async with audit_engine.connect() as conn:
        ids = {str(i) for i in (await conn.execute(text("SELECT id FROM log_entry"))).scalars()}
    records = []
    for r in got:
        envelope = from_kafka(r.headers, r.value)  # CloudEvents headers
        assert envelope.type == AuditLogRecorded.type and r.key.decode() == envelope.subject
        body = json.loads(r.value)
        AuditLogRecorded.model_validate(body)
        records.append(body)
    assert {r["event"]["id"] for r in records} == ids
    first = next(r for r in records if r["misp"]["log"]["change"].startswith("email (old0"))
    assert first["@timestamp"] and first["event"]["action"] == "edit"
    assert first["event"]["category"] == ["iam"] and first["event"]["outcome"] == "success"
    assert first["user"]["email"] == "admin@admin.test"
    assert first["user"]["target"]["email"] == "new0@x.test"
    assert first["organization"]["name"] == "ORGNAME"
    assert "source" not in first  # MISP.log_client_ip is off: no IP anywhere
    assert set(first["related"]["user"]) == {"admin@admin.test", "new0@x.test"}
    assert first["message"] == "User (10): new0@x.test"
