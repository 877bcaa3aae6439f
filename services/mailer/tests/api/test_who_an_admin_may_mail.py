"""The mailer applies identity's rules of who may manage whom (misp_contracts.access): an org
admin's password reset (or welcome) reaches only their own org's plain users, with identity's
404 "Invalid user" for anyone else and nothing queued; a mail to all users skips the admins and
the job says so; a site admin may mail anyone."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from mailer.adapters.tables import mail, mail_request
from mailer.handlers.compose import Mailer
from mailer.handlers.contact import NOT_MANAGED
from mailer.handlers.jobs import job_handlers
from mailer.settings import MailerSettings
from misp_contracts.events.mailer import TemporaryPasswordIssued
from misp_platform.db import event as event_table
from misp_platform.testing import run_job

from ..support import add_role, add_user

ORG = 2  # the org of the `org_admin_key` fixture
SITE_ROLE, ADMIN_ROLE, USER_ROLE = 31, 32, 33


def auth(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


def reset(user_id: int) -> dict[str, Any]:
    return {"action": "2", "recipient": "1", "recipientEmailList": str(user_id)}


async def roles(engine: AsyncEngine) -> None:
    await add_role(engine, SITE_ROLE, perm_site_admin=True, perm_admin=True)
    await add_role(engine, ADMIN_ROLE, perm_admin=True)
    await add_role(engine, USER_ROLE)


async def queued(engine: AsyncEngine) -> tuple[list[Any], list[Any], list[Any]]:
    """The mails, the requests and the credentials' events recorded so far."""
    async with engine.connect() as conn:
        mails = list(await conn.execute(select(mail.c.recipient, mail.c.user_id)))
        requests = list(await conn.execute(select(mail_request.c.id)))
        credentials = list(await conn.execute(select(event_table.c.data).where(
            event_table.c.type == TemporaryPasswordIssued.type)))
    return mails, requests, credentials


async def test_an_org_admin_cannot_reset_the_password_of_a_site_admin_and_nothing_is_queued(
        client: httpx.AsyncClient, org_admin_key: str, mailer_engine: AsyncEngine) -> None:
    await roles(mailer_engine)
    await add_user(mailer_engine, user_id=801, org_id=ORG, role_id=SITE_ROLE)

    for payload in (reset(801), {**reset(801), "action": "1"}):  # a welcome mail resets too
        r = await client.post("/admin/users/email", headers=auth(org_admin_key), json=payload)

        assert r.status_code == 404, r.text
        assert r.json()["message"] == "Invalid user"
    assert await queued(mailer_engine) == ([], [], [])


async def test_an_org_admin_cannot_reset_the_password_of_another_admin_of_their_org(
        client: httpx.AsyncClient, org_admin_key: str, mailer_engine: AsyncEngine) -> None:
    await roles(mailer_engine)
    await add_user(mailer_engine, user_id=802, org_id=ORG, role_id=ADMIN_ROLE)

    r = await client.post("/admin/users/email", headers=auth(org_admin_key), json=reset(802))

    assert r.status_code == 404, r.text
    assert r.json()["message"] == "Invalid user"
    assert await queued(mailer_engine) == ([], [], [])
    # A message that sets no password still reaches them (they are in the admin's view).
    note = await client.post("/admin/users/quickEmail/802", headers=auth(org_admin_key),
                             json={"subject": "s", "body": "b"})
    assert note.status_code == 200, note.text


async def test_an_org_admin_resets_the_password_of_a_plain_user_of_their_org(
        client: httpx.AsyncClient, org_admin_key: str, admin_key: str,
        mailer_engine: AsyncEngine) -> None:
    await roles(mailer_engine)
    plain = await add_user(mailer_engine, user_id=803, org_id=ORG, role_id=USER_ROLE)
    site_admin = await add_user(mailer_engine, user_id=804, org_id=ORG, role_id=SITE_ROLE)

    mine = await client.post("/admin/users/email", headers=auth(org_admin_key),
                             json=reset(803))
    theirs = await client.post("/admin/users/email", headers=auth(admin_key), json=reset(804))

    assert mine.status_code == 200, mine.text
    assert theirs.status_code == 200, theirs.text  # a site admin may mail anyone
    mails, _, credentials = await queued(mailer_engine)
    assert sorted(m.recipient for m in mails) == sorted([plain.email, site_admin.email])
    assert sorted(c.data["user_id"] for c in credentials) == [803, 804]


async def test_a_mail_to_all_by_an_org_admin_skips_the_admins_and_says_so(
        client: httpx.AsyncClient, org_admin_key: str, mailer_engine: AsyncEngine,
        mailer: Mailer) -> None:
    await roles(mailer_engine)
    plain = await add_user(mailer_engine, user_id=811, org_id=ORG, role_id=USER_ROLE)
    other_admin = await add_user(mailer_engine, user_id=812, org_id=ORG, role_id=ADMIN_ROLE)
    await add_user(mailer_engine, user_id=813, org_id=ORG, role_id=SITE_ROLE)
    await add_user(mailer_engine, user_id=814, org_id=ORG + 1, role_id=USER_ROLE)

    r = await client.post("/admin/users/email", headers=auth(org_admin_key),
                          json={"User": {"action": "2", "recipient": "0"}})

    assert r.status_code == 200, r.text
    assert r.json()["message"] == "E-mail job queued for 1 recipient(s)."
    done = await run_job(mailer_engine, service="mailer", queue="email", job_type="bulk_email",
                         handlers=job_handlers(MailerSettings(), mailer),
                         data={"request_id": r.json()["request_id"]})
    # The other org admin is named; the site admin is outside an org admin's view altogether
    # (as in identity's index of users), so the job neither mails nor names them.
    assert (done["outcome"], done["message"]) == (
        "succeeded", f"Queued 1 e-mail(s). Not sent to: {other_admin.email} ({NOT_MANAGED}).")
    mails, _, credentials = await queued(mailer_engine)
    assert [m.recipient for m in mails] == [plain.email]
    assert [c.data["user_id"] for c in credentials] == [811]
