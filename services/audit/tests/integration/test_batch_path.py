"""The consumer's batch path on real Kafka and PostgreSQL: a batch is logged once whatever it
repeats (inside itself or across redeliveries), its chain verifies, each entry has its SIEM
record, and a poisoned message in a batch goes to the dead-letter topic while the rest are
logged."""

from __future__ import annotations

import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.domain.checkpoint import public_raw
from audit.handlers.integrity import verify, write_checkpoint
from audit.testing import Namespace, count_entries, envelope_of, running_consumer, wait_until
from misp_contracts.envelope import Actor, Envelope, from_kafka, to_kafka
from misp_contracts.events.audit import AUDIT_LOG_TOPIC, AuditLogRecorded
from misp_contracts.events.identity import (
    USER_TOPIC,
    UserSettingSet,
    UserSettingState,
    UserState,
    UserUpdated,
)
from misp_contracts.topics import dlq_topic
from misp_platform.kafka import create_producer

ADMIN = Actor(user_id=1, email="admin@admin.test", org_id=1, org_name="ORGNAME", authkey_id=4,
              client_ip="192.0.2.7")


def user_updated(uid: int) -> Envelope:
    event = UserUpdated(user=UserState(id=uid, uuid=str(uuid.uuid4()), email=f"u{uid}@x.test",
                                       org_id=1, role_id=3),
                        changes={"email": (f"old{uid}@x.test", f"u{uid}@x.test")})
    return envelope_of(event, actor=ADMIN, subject="same-key")


def setting_set(uid: int) -> Envelope:
    event = UserSettingSet(user_setting=UserSettingState(id=uid, user_id=uid, setting="s",
                                                         value={"n": 1.5}),
                           changes={"value": ({"n": 1}, {"n": 1.5})})
    return envelope_of(event, actor=ADMIN, subject="same-key")


async def log_rows(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(
            "SELECT source_event_id, chain, seq FROM log_entry ORDER BY chain, seq"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def outbox(engine: AsyncEngine, topic: str) -> list[Envelope]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT headers, payload FROM outbox WHERE topic = :t ORDER BY position"),
            {"t": topic})).all()
    return [from_kafka([(k, v.encode()) for k, v in r.headers], bytes(r.payload))
            for r in rows]


async def verifies(engine: AsyncEngine) -> None:
    key = Ed25519PrivateKey.generate()
    await write_checkpoint(engine, key)
    report = await verify(engine, public_raw(key))
    assert report.ok, report.as_dict()


async def test_a_batch_repeating_events_logs_each_once_and_its_chain_verifies(
        audit_engine: AsyncEngine, namespace: Namespace) -> None:
    topic = namespace.topic_of(USER_TOPIC)
    await namespace.ensure(topic, partitions=1)
    a, b, c, d, e = (user_updated(1), setting_set(2), user_updated(3), setting_set(4),
                     user_updated(5))
    # Published before the consumer starts: one batch, `a` twice in it, two types mixed.
    await namespace.publish([(USER_TOPIC, x) for x in (a, b, a, c)])
    async with running_consumer(audit_engine, namespace) as runner:
        await wait_until(lambda: count_entries(audit_engine, "source_event_id = :i",
                                               {"i": c.id}), what="c")
        await namespace.publish([(USER_TOPIC, b), (USER_TOPIC, d)])  # b redelivered
        await wait_until(lambda: count_entries(audit_engine, "source_event_id = :i",
                                               {"i": d.id}), what="d")
        assert runner.applied == 4  # a once in its batch, b once: redelivered, it was marked
    async with running_consumer(audit_engine, namespace):  # a new group: from the start
        await namespace.publish([(USER_TOPIC, e)])
        await wait_until(lambda: count_entries(audit_engine, "source_event_id = :i",
                                               {"i": e.id}), what="e")
    rows = await log_rows(audit_engine)
    assert [r[0] for r in rows] == [x.id for x in (a, b, c, d, e)]
    assert [(r[1], r[2]) for r in rows] == [(f"{topic}:0", seq) for seq in range(1, 6)]
    await verifies(audit_engine)
    records = await outbox(audit_engine, AUDIT_LOG_TOPIC)
    assert [r.causationid for r in records] == [x.id for x in (a, b, c, d, e)]
    for record in records:
        siem = AuditLogRecorded.model_validate(record.data)
        assert siem.misp.chain is not None and siem.misp.chain.chain == f"{topic}:0"
        assert record.actor.client_ip is None  # MISP.log_client_ip is off


async def test_a_poisoned_message_in_a_batch_is_dead_lettered_and_the_rest_logged(
        audit_engine: AsyncEngine, namespace: Namespace) -> None:
    topic = namespace.topic_of(USER_TOPIC)
    await namespace.ensure(topic, partitions=1)
    good = [user_updated(10), setting_set(11), user_updated(12)]
    producer = create_producer(namespace.bootstrap)
    await producer.start()
    try:
        for i, envelope in enumerate(good):
            if i == 1:  # a record that claims a type but is no CloudEvent
                await producer.send_and_wait(topic, value=b"{not json", key=b"same-key",
                                             headers=[("ce_type", UserUpdated.type.encode())])
            headers, value = to_kafka(envelope)
            await producer.send_and_wait(topic, value=value, headers=headers, key=b"same-key")
    finally:
        await producer.stop()
    async with running_consumer(audit_engine, namespace) as runner:
        await wait_until(lambda: count_entries(audit_engine, "source_event_id = :i",
                                               {"i": good[-1].id}), what="the last event")
        assert (runner.applied, runner.dead_lettered) == (3, 1)
    assert [r[0] for r in await log_rows(audit_engine)] == [x.id for x in good]
    async with audit_engine.connect() as conn:
        letters = (await conn.execute(text(
            "SELECT payload, headers FROM outbox WHERE topic = :t"),
            {"t": dlq_topic("audit")})).all()
    assert [bytes(r.payload) for r in letters] == [b"{not json"]
    assert dict(letters[0].headers)["dlq_original_offset"] == "1"
    await verifies(audit_engine)
