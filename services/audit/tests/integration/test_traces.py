"""One admin action is one trace across services (issue 18, item 5): identity's API, its relay
and the audit's consumer in process, on the real PostgreSQL and Kafka, spans kept by the SDK's
in-memory exporter."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from audit.testing import Namespace, running_consumer, wait_until
from identity.bootstrap import create_app, spec
from identity.handlers.first_run import key_path, seed
from identity.settings import IdentitySettings
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.identity import UserCreated
from misp_contracts.events.orgs import OrganisationCreated, OrganisationState
from misp_platform import tracing
from misp_platform.kafka import create_producer
from misp_platform.relay import OutboxRelay
from misp_platform.testing import (
    drop_test_database,
    migrated_test_database,
    required_env,
    with_principal_handlers,
)

TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{secrets.token_hex(8)}-01"


@dataclass
class Identity:
    client: httpx.AsyncClient
    engine: AsyncEngine
    url: str
    admin_key: str


@asynccontextmanager
async def identity_in_process() -> AsyncIterator[Identity]:
    """Identity's app on a fresh database with organisation 1 and the first run done."""
    url = await migrated_test_database(required_env("MISP_PG_URL"), spec.migrations_dir,
                                       prefix="test_identity")
    state_dir = tempfile.mkdtemp(prefix="idtr")
    settings = IdentitySettings(database_url=url, pepper=secrets.token_hex(16),
                                state_dir=state_dir, read_your_writes=False)
    engine = create_async_engine(url, pool_size=5)
    try:
        org = OrganisationState(id=1, uuid=str(uuid.uuid4()), name="ORGNAME",
                                date_created=datetime.now(UTC), local=True, type="ADMIN")
        created = OrganisationCreated(organisation=org)
        handlers = with_principal_handlers(spec.handlers(settings))
        async with engine.begin() as conn:
            await handlers[created.type](conn, Envelope(
                source="/orgs", type=created.type, subject=org.uuid, actor=Actor.system(),
                data=created.model_dump(mode="json")))
        assert await seed(engine, pepper=settings.pepper.get_secret_value(),
                          state_dir=state_dir)
        app = create_app(settings, engine=engine, configure_logs=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5555))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                         timeout=30) as client:
                yield Identity(client, engine, url, key_path(state_dir).read_text().strip())
    finally:
        await engine.dispose()
        await drop_test_database(url)
        shutil.rmtree(state_dir, ignore_errors=True)


async def publish_into(identity: Identity, namespace: Namespace) -> None:
    """Identity's relay, once, with its outbox routed to the namespace's copies of its topics
    (the running stack's consumers never see this test's events)."""
    async with identity.engine.begin() as conn:
        topics = (await conn.execute(text(
            "UPDATE outbox SET topic = :prefix || substr(topic, 5) RETURNING topic"),
            {"prefix": namespace.prefix})).scalars().all()
    await namespace.ensure(*set(topics))
    producer = create_producer(namespace.bootstrap)
    await producer.start()
    try:
        assert await OutboxRelay(identity.engine, identity.url, producer).publish_pending() > 0
    finally:
        await producer.stop()


def _in_trace(spans: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and
            format(s.context.trace_id, "032x") == TRACE_ID]


async def test_a_users_add_is_one_trace_from_identitys_api_through_its_relay_to_the_audit(
        audit_engine: AsyncEngine, namespace: Namespace) -> None:
    exporter = tracing.install_in_memory("integration", "test")
    try:
        async with identity_in_process() as identity, \
                running_consumer(audit_engine, namespace) as consumer:
            response = await identity.client.post(
                "/admin/users/add", json={"email": f"t-{secrets.token_hex(5)}@example.test"},
                headers={"Authorization": identity.admin_key, "Accept": "application/json",
                         "traceparent": TRACEPARENT})
            assert response.status_code == 200, response.text
            await publish_into(identity, namespace)

            def audited() -> list[ReadableSpan]:
                return [s for s in _in_trace(exporter.get_finished_spans())
                        if s.kind is SpanKind.CONSUMER and s.attributes is not None
                        and s.attributes.get("cloudevents.event_type") == UserCreated.type
                        and s.attributes.get("messaging.consumer.group.name")
                        == consumer.group]

            async def audit_span() -> list[ReadableSpan]:
                return audited()

            (handled,) = await wait_until(audit_span, what="the audit's span of UserCreated")
    finally:
        spans = exporter.get_finished_spans()
        tracing.shutdown_tracing()

    traced = _in_trace(spans)
    (server,) = [s for s in traced if s.kind is SpanKind.SERVER]
    assert server.name == "POST /admin/users/add"
    assert server.parent is not None and server.parent.is_remote  # the caller's traceparent
    users_topic = namespace.topic_of(UserCreated.topic)
    sent = [s for s in traced if s.kind is SpanKind.PRODUCER and s.attributes is not None
            and s.attributes.get("messaging.destination.name") == users_topic
            and s.attributes.get("cloudevents.event_type") == UserCreated.type]
    assert len(sent) == 1, [s.name for s in traced]
    assert server.context is not None
    # the event was written in the request's span: the relay's and the audit's spans are its
    # children, all under the trace the caller began
    assert sent[0].parent is not None and sent[0].parent.span_id == server.context.span_id
    assert handled.parent is not None and handled.parent.span_id == server.context.span_id
    assert {s.kind for s in traced} >= {SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER}
