"""`admin/users/email` to all users through the app: the request is stored and its `bulk_email`
job asked for through the outbox in one transaction (the text never goes on Kafka), bad input
gets MISP's 4xx and writes nothing, and `/api/v1/mailer/requests/{id}` follows the jobs
service's answers."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.tables import bulk_request, mail
from mailer.handlers.bulk import when_job_queued_record, when_job_rejected_record
from misp_contracts.envelope import from_kafka
from misp_contracts.events.jobs import (
    JOBS_COMMANDS_TOPIC,
    EnqueueJob,
    JobQueued,
    JobRejected,
    JobState,
)
from misp_platform.db import outbox

from ..support import add_user, apply, set_setting

BODY = "The quarterly maintenance is on Friday; sign 7f3a9c."


def auth(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


def to_all(**fields: Any) -> dict[str, Any]:
    return {"User": {"action": "0", "recipient": "0", "subject": "Maintenance", "body": BODY,
                     **fields}}


async def job_commands(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as conn:
        return list(await conn.execute(
            select(outbox.c.headers, outbox.c.payload, outbox.c.message_key,
                   text("outbox.xmin::text AS xid"))
            .where(outbox.c.topic == JOBS_COMMANDS_TOPIC)))


async def test_a_mail_to_all_users_is_stored_and_its_job_asked_for_in_one_transaction(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine) -> None:
    for user_id in (601, 602):
        await add_user(mailer_engine, user_id=user_id)
    await add_user(mailer_engine, user_id=603, org_id=3)
    await add_user(mailer_engine, user_id=604, disabled=True)

    r = await client.post("/admin/users/email", headers=auth(admin_key), json=to_all())

    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["success"] is True and answer["url"] == "/admin/users/email"
    assert answer["message"] == "E-mail job queued for 3 recipient(s)."
    assert (answer["job_id"], answer["recipients"], answer["status"]) == (None, "3", "pending")
    request_id = answer["request_id"]
    async with mailer_engine.connect() as conn:
        row = (await conn.execute(select(bulk_request, text("bulk_request.xmin::text AS xid"))
                                  .where(bulk_request.c.id == request_id))).one()
        assert (await conn.execute(select(mail.c.id))).first() is None  # mails: the job's
    assert (row.action, row.subject, row.body, row.status) == ("custom", "Maintenance", BODY,
                                                                "pending")
    assert row.scope_org_id is None and row.actor["user_id"] == 900001 and row.recipients == 3
    [command] = await job_commands(mailer_engine)
    assert command.xid == row.xid  # written by the same transaction
    assert command.message_key == request_id
    envelope = from_kafka([(k, v.encode()) for k, v in command.headers], bytes(command.payload))
    enqueue = EnqueueJob.model_validate(envelope.data)
    assert envelope.type == EnqueueJob.type and envelope.actor.user_id == 900001
    assert (enqueue.job_type, enqueue.queue, enqueue.request_id) == ("bulk_email", "email",
                                                                     request_id)
    assert enqueue.data == {"request_id": request_id}
    assert b"quarterly" not in bytes(command.payload) and b"Maintenance" not in bytes(
        command.payload)


async def test_bad_input_to_all_users_gets_misp_4xx_and_writes_nothing(
        client: httpx.AsyncClient, admin_key: str, mailer_engine: AsyncEngine) -> None:
    await add_user(mailer_engine, user_id=611)
    cases: list[tuple[dict[str, Any], int, str]] = [
        (to_all(subject=""), 403, "subject"),  # a custom message needs a subject
        (to_all(body=" "), 403, "body"),
        (to_all(action="9"), 403, "action"),
    ]
    for payload, status, word in cases:
        r = await client.post("/admin/users/email", headers=auth(admin_key), json=payload)
        assert r.status_code == status and word in r.text, (payload, r.text)
    await set_setting(mailer_engine, "MISP.disable_emailing", True)
    disabled = await client.post("/admin/users/email", headers=auth(admin_key), json=to_all())
    assert disabled.status_code == 403
    assert disabled.json()["message"] == "Emailing is currently disabled on this instance."

    async with mailer_engine.connect() as conn:
        assert (await conn.execute(select(bulk_request.c.id))).first() is None
    assert await job_commands(mailer_engine) == []


async def test_the_request_shows_its_job_once_the_jobs_service_answers(
        client: httpx.AsyncClient, admin_key: str, org_admin_key: str,
        mailer_engine: AsyncEngine) -> None:
    await add_user(mailer_engine, user_id=621, org_id=2)
    await add_user(mailer_engine, user_id=622, org_id=5)
    mine = (await client.post("/admin/users/email", headers=auth(org_admin_key),
                              json=to_all())).json()
    theirs = (await client.post("/admin/users/email", headers=auth(admin_key),
                                json=to_all(action="1", subject=""))).json()
    # An org admin reaches their own org only (the seeded admin's own user is not projected).
    assert mine["message"] == "E-mail job queued for 1 recipient(s)."
    assert theirs["message"] == "E-mail job queued for 2 recipient(s)."

    def view(request_id: str, key: str) -> Any:
        return client.get(f"/api/v1/mailer/requests/{request_id}", headers=auth(key))

    pending = (await view(mine["request_id"], org_admin_key)).json()["BulkRequest"]
    assert (pending["status"], pending["job_id"], pending["org_id"]) == ("pending", None, "2")
    assert (await view(theirs["request_id"], org_admin_key)).status_code == 404
    assert (await view("no-such-request", admin_key)).status_code == 404

    job = JobState(id=4242, queue="email", job_type="bulk_email",
                   data={"request_id": mine["request_id"]}, request_id=mine["request_id"])
    await apply(mailer_engine, when_job_queued_record, JobQueued(job=job))
    await apply(mailer_engine, when_job_rejected_record, JobRejected(
        request_id=theirs["request_id"], job_type="bulk_email", queue="email",
        reason="Invalid job type"))

    queued = (await view(mine["request_id"], admin_key)).json()["BulkRequest"]
    assert (queued["status"], queued["job_id"], queued["mail_status"]) == ("queued", "4242", {})
    assert "body" not in queued
    rejected = (await view(theirs["request_id"], admin_key)).json()["BulkRequest"]
    assert (rejected["status"], rejected["error"]) == ("rejected", "Invalid job type")
    assert rejected["subject"] == "" and rejected["action"] == "welcome"
