"""`python -m audit dlq replay`: a dead letter of the audit consumer (which handles every
`misp.*` type itself, not through a handler table) is logged once when replayed."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.bootstrap import spec
from audit.settings import AuditSettings
from misp_contracts.envelope import Actor, to_kafka
from misp_contracts.events.identity import UserState, UserUpdated
from misp_platform import dlq

from ..integration.test_projection import envelope_of


async def test_a_replayed_dead_letter_is_logged_once(audit_engine: AsyncEngine, audit_db: str,
                                                     kafka_bootstrap: str) -> None:
    event = UserUpdated(user=UserState(id=77, uuid=str(uuid.uuid4()), email="dl@x.test",
                                       org_id=1, role_id=3),
                        changes={"email": ("old@x.test", "dl@x.test")})
    envelope = envelope_of(event, actor=Actor(user_id=1, email="admin@admin.test", org_id=1))
    headers, value = to_kafka(envelope)
    letter = dlq.DeadLetter(offset=0, key=envelope.subject, value=value, headers={
        **{k: v.decode() for k, v in headers}, "dlq_error": "boom",
        "dlq_original_topic": "misp.identity.user.v1"})
    settings = AuditSettings(database_url=audit_db, kafka_bootstrap_servers=kafka_bootstrap)
    handlers = spec.single_handlers(settings)

    assert await dlq.replay(audit_engine, spec.consumer_group, handlers, letter) == "applied"
    assert await dlq.replay(audit_engine, spec.consumer_group, handlers,
                            letter) == "already-applied"
    async with audit_engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT model, model_id, action, email FROM log_entry WHERE source_event_id = :id"),
            {"id": envelope.id})).all()
    assert [tuple(r) for r in rows] == [("User", 77, "edit", "admin@admin.test")]
