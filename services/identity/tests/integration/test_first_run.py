"""First run through the real Kafka: organisation 1 arrives on a topic, two consumer processes'
worth of consumers and seeders race, and everything is created exactly once."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import time
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.tables import authkey, role, user_account
from identity.bootstrap import spec
from identity.handlers.first_run import key_path, seed_when_ready
from identity.settings import IdentitySettings
from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform.auth import authkey_hmac
from misp_platform.consumer import ConsumerRunner
from misp_platform.db import outbox
from misp_platform.kafka import create_producer


async def test_two_seeders_create_roles_admin_and_key_exactly_once(
        kafka_bootstrap, new_topic, fresh_database) -> None:
    url = fresh_database
    state_dir = tempfile.mkdtemp(prefix="idfr")
    pepper = secrets.token_hex(16)
    engine = create_async_engine(url, pool_size=10)
    topic = await new_topic("test.identity.orgs")
    stop = asyncio.Event()
    group = f"test-identity-{uuid.uuid4().hex[:8]}"
    runners = [ConsumerRunner(service="identity", group=group, engine=engine,
                              bootstrap_servers=kafka_bootstrap,
                              handlers=spec.handlers(IdentitySettings()), topics=[topic])
               for _ in range(2)]
    tasks = [asyncio.create_task(r.run(stop)) for r in runners]
    seeders = [asyncio.create_task(seed_when_ready(engine, pepper=pepper, state_dir=state_dir,
                                                   interval_s=0.05)) for _ in range(3)]
    try:
        org = OrganisationState(id=1, uuid=str(uuid.uuid4()), name="ORGNAME", type="ADMIN")
        event = OrganisationCreated(organisation=org, reason="first-run")
        envelope = Envelope(source="/orgs", type=event.type, subject=org.uuid,
                            actor=Actor.system(), data=event.model_dump(mode="json"))
        producer = create_producer(kafka_bootstrap)
        await producer.start()
        try:
            headers, value = to_kafka(envelope)
            await producer.send_and_wait(topic, value=value, key=org.uuid.encode(),
                                         headers=headers)
        finally:
            await producer.stop()
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*seeders), timeout=60)
        print(f"seeded {time.monotonic() - started:.2f}s after organisation 1 was published")
        async with engine.connect() as conn:
            roles = (await conn.execute(select(role.c.role_id, role.c.name)
                                        .order_by(role.c.role_id))).all()
            users = (await conn.execute(select(user_account.c.email))).all()
            keys = (await conn.execute(select(authkey.c.key_hmac))).all()
            published = (await conn.execute(select(func.count()).select_from(outbox))).scalar()
        assert [(r.role_id, r.name) for r in roles] == [
            (1, "admin"), (2, "Org Admin"), (3, "User"), (4, "Publisher"), (5, "Sync user"),
            (6, "Read Only")]
        assert [u.email for u in users] == ["admin@admin.test"]
        raw = key_path(state_dir).read_text().strip()
        assert [k.key_hmac for k in keys] == [authkey_hmac(pepper, raw)]
        assert published == 6 + 1 + 1 + 1  # roles, default role, admin, key
        assert not list(key_path(state_dir).parent.glob("admin.authkey.pending-*"))
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for s in seeders:
            s.cancel()
        await engine.dispose()
        shutil.rmtree(state_dir, ignore_errors=True)
