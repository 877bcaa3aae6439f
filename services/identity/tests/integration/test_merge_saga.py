"""The merge saga, identity's side, over the real Kafka: orgs' events (published here as orgs
publishes them) reach identity's consumer, which moves every user of the source to the target
through its own event store exactly once, and closes the source to new users."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import select

from identity.adapters.tables import org, user_account
from identity.bootstrap import spec
from identity.settings import IdentitySettings
from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.base import DomainEvent
from misp_contracts.events.identity import USER_TOPIC, UserUpdated
from misp_contracts.events.orgs import (
    OrganisationDeleted,
    OrganisationMerged,
    OrganisationMergeStarted,
    OrganisationRef,
    OrganisationState,
)
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import event, outbox
from misp_platform.kafka import create_producer
from misp_platform.testing import eventually

ADMIN = Actor(user_id=1, email="admin@admin.test", org_id=1, org_name="ORGNAME",
              client_ip="198.51.100.4", request_id="req-merge")

Publish = Callable[[Envelope], Awaitable[None]]


def ref(state: OrganisationState) -> OrganisationRef:
    return OrganisationRef(id=state.id, uuid=state.uuid, name=state.name)


def as_orgs(event: DomainEvent, subject: str, correlation: str | None = None) -> Envelope:
    return Envelope(source="/orgs", type=event.type, subject=subject, actor=ADMIN,
                    correlationid=correlation, data=event.model_dump(mode="json"))


@pytest.fixture
async def saga(identity, kafka_bootstrap, new_topic) -> AsyncIterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Identity's real handlers in a consumer on a fresh orgs topic; `publish` sends there."""
    topic = await new_topic("test.identity.orgs")
    producer = create_producer(kafka_bootstrap)
    await producer.start()
    stops: list[asyncio.Event] = []
    tasks: list[asyncio.Task[None]] = []

    def start(group: str) -> ConsumerRunner:
        runner = ConsumerRunner(service="identity", group=group, engine=identity.engine,
                                bootstrap_servers=kafka_bootstrap,
                                handlers=spec.handlers(IdentitySettings()), topics=[topic])
        stop = asyncio.Event()
        stops.append(stop)
        tasks.append(asyncio.create_task(runner.run(stop)))
        return runner

    async def publish(envelope: Envelope) -> None:
        headers, value = to_kafka(envelope)
        await producer.send_and_wait(topic, value=value, key=(envelope.subject or "").encode(),
                                     headers=headers)

    async def stop_all() -> None:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        stops.clear()
        tasks.clear()

    try:
        yield {"start": start, "publish": publish, "stop": stop_all}
    finally:
        await stop_all()
        await producer.stop()


async def org_of(identity, user_id: int | str) -> int | None:  # type: ignore[no-untyped-def]
    async with identity.engine.connect() as conn:
        value = (await conn.execute(select(user_account.c.org_id).where(
            user_account.c.user_id == int(user_id)))).scalar()
    return None if value is None else int(value)


async def user_moves(identity) -> list[Any]:  # type: ignore[no-untyped-def]
    async with identity.engine.connect() as conn:
        return list(await conn.execute(
            select(event.c.stream_id, event.c.data, event.c.metadata)
            .where(event.c.type == UserUpdated.type,
                   event.c.data["changes"].has_key("org_id"))  # type: ignore[index]
            .order_by(event.c.recorded_at)))


async def test_every_user_of_the_source_moves_once_and_the_source_refuses_new_users(
        identity, add_org, saga) -> None:  # type: ignore[no-untyped-def]
    source, target, other = await add_org(41), await add_org(42), await add_org(43)
    users = [await identity.add_user(org_id=source.id, role_id=3) for _ in range(3)]
    bystander = await identity.add_user(org_id=other.id, role_id=3)

    merge_id = str(uuid.uuid4())
    started = as_orgs(OrganisationMergeStarted(merge_id=merge_id, source=ref(source),
                                               target=ref(target)),
                      subject=source.uuid, correlation="corr-merge-1")
    saga["start"](f"test-merge-{uuid.uuid4().hex[:8]}")
    await saga["publish"](started)

    async def all_moved() -> bool:
        return all([await org_of(identity, u["id"]) == target.id for u in users])

    await eventually(all_moved)
    assert await org_of(identity, bystander["id"]) == other.id
    moves = await user_moves(identity)
    assert len(moves) == 3
    for row in moves:
        assert row.data["changes"] == {"org_id": [source.id, target.id]}
        assert row.data["user"]["org_id"] == target.id
        assert row.metadata["correlationid"] == "corr-merge-1"
        assert row.metadata["causationid"] == started.id
        assert row.metadata["actor"]["user_id"] == ADMIN.user_id
    async with identity.engine.connect() as conn:
        published = (await conn.execute(select(outbox.c.topic).where(
            outbox.c.message_key.in_([str(r.stream_id) for r in moves])))).scalars().all()
        closed = (await conn.execute(select(org.c.merging_into).where(
            org.c.org_id == source.id))).scalar()
    assert published == [USER_TOPIC] * 6  # each user's creation, then its move
    assert closed == target.id

    # Closed: no new user in the source, no move into it (MISP's failure envelope).
    refused = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                  json={"email": f"late-{uuid.uuid4().hex[:6]}@example.test",
                                        "org_id": str(source.id), "role_id": "3"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"] == ["Invalid organisation"]
    assert refused.json()["message"] == "Could not add User"
    move_in = await identity.call("POST", f"/admin/users/edit/{bystander['id']}",
                                  identity.admin_key, json={"org_id": str(source.id)})
    assert move_in.status_code == 403, move_in.text
    assert await org_of(identity, bystander["id"]) == other.id
    # Users already moved can still be edited (their email, not their organisation).
    edited = await identity.call("POST", f"/admin/users/edit/{users[0]['id']}",
                                 identity.admin_key,
                                 json={"email": f"kept-{uuid.uuid4().hex[:6]}@example.test"})
    assert edited.status_code == 200, edited.text

    # Redelivery (same message id: Kafka after a crash before the offset commit), a restart
    # of the consumer, and a replay by a group without marks: nothing more happens.
    await saga["stop"]()
    saga["start"](f"test-merge-{uuid.uuid4().hex[:8]}")
    await saga["publish"](started)
    probe = await add_org(44)
    probe_user = await identity.add_user(org_id=probe.id, role_id=3)
    marker = as_orgs(OrganisationMergeStarted(merge_id=str(uuid.uuid4()), source=ref(probe),
                                              target=ref(target)), subject=probe.uuid)
    await saga["publish"](marker)  # applied after the replay above: a barrier
    await eventually(lambda: _equals(org_of(identity, probe_user["id"]), target.id))
    assert len(await user_moves(identity)) == 3 + 1


async def test_a_late_merged_and_deleted_source_is_swept(
        identity, add_org, saga) -> None:  # type: ignore[no-untyped-def]
    """Orgs may complete before identity reacts: the sweep on OrganisationMerged and on
    OrganisationDeleted{merged_into} still moves the users, and the source is then deleted."""
    source, target = await add_org(51), await add_org(52)
    users = [await identity.add_user(org_id=source.id, role_id=3) for _ in range(2)]
    merge_id = str(uuid.uuid4())
    saga["start"](f"test-merge-{uuid.uuid4().hex[:8]}")
    await saga["publish"](as_orgs(OrganisationMerged(merge_id=merge_id, source=ref(source),
                                                     target=ref(target), users_moved=0),
                                  subject=source.uuid, correlation=merge_id))
    await saga["publish"](as_orgs(OrganisationDeleted(org_id=source.id, uuid=source.uuid,
                                                      name=source.name,
                                                      merged_into=target.id),
                                  subject=source.uuid, correlation=merge_id))

    async def swept() -> bool:
        async with identity.engine.connect() as conn:
            deleted = (await conn.execute(select(org.c.deleted).where(
                org.c.org_id == source.id))).scalar()
        return bool(deleted) and all(
            [await org_of(identity, u["id"]) == target.id for u in users])

    await eventually(swept)
    assert len(await user_moves(identity)) == 2
    refused = await identity.call("POST", "/admin/users/add", identity.admin_key,
                                  json={"email": f"gone-{uuid.uuid4().hex[:6]}@example.test",
                                        "org_id": str(source.id), "role_id": "3"})
    assert refused.status_code == 403 and refused.json()["errors"] == ["Invalid organisation"]


async def test_users_added_while_the_merge_starts_are_either_moved_or_refused(
        identity, add_org, saga) -> None:  # type: ignore[no-untyped-def]
    """The race rule: the closing mark and the move are one decision in identity's database,
    so a user racing the merge start ends up in the target or is refused, never in the source."""
    source, target = await add_org(61), await add_org(62)
    saga["start"](f"test-merge-{uuid.uuid4().hex[:8]}")

    async def add_one(n: int, delay_s: float = 0) -> Any:
        await asyncio.sleep(delay_s)
        return await identity.call("POST", "/admin/users/add", identity.admin_key,
                                   json={"email": f"race-{n}-{uuid.uuid4().hex[:6]}@example.test",
                                         "org_id": str(source.id), "role_id": "3"})

    def is_refusal(r: Any) -> bool:
        return bool(r.status_code == 403 and r.json()["errors"] == ["Invalid organisation"]
                    and r.json()["message"] == "Could not add User")

    before = await asyncio.gather(*(add_one(n) for n in range(5)))  # surely before the start
    assert [r.status_code for r in before] == [200] * 5, [r.text for r in before]
    racing = [asyncio.create_task(add_one(n, n * 0.01)) for n in range(5, 35)]
    await asyncio.sleep(0.1)
    await saga["publish"](as_orgs(OrganisationMergeStarted(
        merge_id=str(uuid.uuid4()), source=ref(source), target=ref(target)),
        subject=source.uuid))
    raced = await asyncio.gather(*racing)

    async def none_left() -> bool:
        async with identity.engine.connect() as conn:
            closed = (await conn.execute(select(org.c.merging_into).where(
                org.c.org_id == source.id))).scalar()
            left = (await conn.execute(select(user_account.c.user_id).where(
                user_account.c.org_id == source.id))).all()
        return closed == target.id and not left

    await eventually(none_left)
    after = await asyncio.gather(*(add_one(n) for n in range(35, 40)))  # surely after it
    assert all(is_refusal(r) for r in after), [r.text for r in after]

    # Each racing add has exactly one of the two outcomes, and both loops below run.
    accepted = [r.json()["User"]["id"] for r in [*before, *raced] if r.status_code == 200]
    refused = [r for r in [*raced, *after] if r.status_code != 200]
    assert all(is_refusal(r) for r in refused), [r.text for r in refused]
    assert len(accepted) + len(refused) == 40 and len(accepted) >= 5 and len(refused) >= 5
    for user_id in accepted:
        assert await org_of(identity, user_id) == target.id
    async with identity.engine.connect() as conn:
        in_target = (await conn.execute(select(user_account.c.user_id).where(
            user_account.c.org_id == target.id))).scalars().all()
    assert sorted(in_target) == sorted(int(i) for i in accepted)  # no one lost, no one extra


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)
