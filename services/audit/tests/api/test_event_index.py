"""`logs/event_index/{id}` through the ASGI app on a real database: an event's rows (logged from
another service's events by the audit's own projection) in MISP's shape, for who may see it."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.bootstrap import create_app
from audit.projections.log import Options, Source, project
from audit.settings import AuditSettings
from misp_contracts.envelope import Actor, Envelope
from misp_platform.testing import seed_principal

PEPPER = secrets.token_hex(16)
EVENT, OTHER_EVENT = 42, 43
COLUMNS = {"title", "created", "model", "model_id", "action", "change", "org", "email"}


@dataclass
class Env:
    client: httpx.AsyncClient
    keys: dict[str, str]

    async def get(self, who: str, path: str) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if who != "anonymous":
            headers["Authorization"] = self.keys[who]
        return await self.client.get(path, headers=headers)


def event_envelope(verb: str, event_id: int, who: Actor, when: datetime,
                   changes: dict[str, Any] | None = None, **fields: Any) -> Envelope:
    """What a service holding events would publish; the audit logs it as a generic row."""
    data: dict[str, Any] = {"event": {"id": event_id, **fields}}
    if changes:
        data["changes"] = changes
    return Envelope(source="/events", type=f"misp.events.event.{verb}.v1",
                    subject=str(event_id), actor=who, time=when, data=data)


async def seed_rows(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    admin = Actor(user_id=1, email="admin@one.test", org_id=1, org_name="OrgOne")
    member = Actor(user_id=2, email="member@two.test", org_id=2, org_name="OrgTwo")
    outsider = Actor(user_id=3, email="outsider@three.test", org_id=3, org_name="OrgThree")
    events = [
        event_envelope("added", EVENT, admin, now - timedelta(hours=3), info="Phishing wave",
                       distribution=1),
        event_envelope("updated", EVENT, member, now - timedelta(hours=2),
                       changes={"info": ["Phishing wave", "Phishing wave (2)"]}),
        event_envelope("published", EVENT, admin, now - timedelta(hours=1)),
        event_envelope("added", OTHER_EVENT, outsider, now - timedelta(minutes=30),
                       info="Other org's event"),
    ]
    async with engine.begin() as conn:
        await project(conn, [(e, Source("misp.events.event.v1", 0, i))
                             for i, e in enumerate(events)], Options(publish=False))


@pytest.fixture
async def env(audit_db: str, audit_engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Env]:
    keys = {
        "site_admin": await seed_principal(audit_engine, PEPPER, user_id=1, org_id=1,
                                           org_name="OrgOne", email="admin@one.test",
                                           role={"perm_site_admin": True, "perm_admin": True}),
        "member": await seed_principal(audit_engine, PEPPER, user_id=2, org_id=2,
                                       org_name="OrgTwo", email="member@two.test"),
        "colleague": await seed_principal(audit_engine, PEPPER, user_id=4, org_id=2,
                                          org_name="OrgTwo", email="colleague@two.test"),
        "outsider": await seed_principal(audit_engine, PEPPER, user_id=3, org_id=3,
                                         org_name="OrgThree", email="outsider@three.test",
                                         role={"perm_audit": True, "perm_admin": True}),
    }
    await seed_rows(audit_engine)
    settings = AuditSettings(database_url=audit_db, pepper=PEPPER,
                             signing_key_path=str(tmp_path / "audit-signing.key"))
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        yield Env(client, keys)


async def test_a_site_admin_gets_every_row_of_the_event_newest_first_in_misps_shape(
        env: Env) -> None:
    r = await env.get("site_admin", f"/logs/event_index/{EVENT}")
    assert r.status_code == 200, r.text
    rows = r.json()["Log"]
    assert [(x["action"], x["email"]) for x in rows] == [
        ("publish", "admin@one.test"), ("edit", "member@two.test"), ("add", "admin@one.test")]
    assert all(set(x) == COLUMNS for x in rows)
    assert rows[2]["model"] == "Event" and rows[2]["model_id"] == str(EVENT)
    assert rows[2]["title"] == f"Event ({EVENT})" and rows[2]["org"] == "OrgOne"
    assert "info () => (Phishing wave)" in rows[2]["change"]
    assert rows[1]["change"] == "info (Phishing wave) => (Phishing wave (2))"
    assert (await env.get("site_admin", f"/logs/event_index/{EVENT}.json")).json() == r.json()


async def test_a_user_of_an_org_with_rows_sees_the_event_with_other_orgs_emails_blanked(
        env: Env) -> None:
    for who in ("member", "colleague"):
        rows = (await env.get(who, f"/logs/event_index/{EVENT}")).json()["Log"]
        assert [(x["action"], x["org"], x["email"]) for x in rows] == [
            ("publish", "OrgOne", ""), ("edit", "OrgTwo", "member@two.test"),
            ("add", "OrgOne", "")]


async def test_an_event_the_caller_may_not_see_or_the_log_does_not_know_is_invalid(
        env: Env) -> None:
    for who, event in (("outsider", EVENT), ("member", OTHER_EVENT), ("site_admin", 987654),
                       ("site_admin", "not-a-number"), ("site_admin", 0)):
        r = await env.get(who, f"/logs/event_index/{event}")
        assert r.status_code == 404, (who, event, r.text)
        assert r.json() == {"name": "Invalid event.", "message": "Invalid event.",
                            "url": f"/logs/event_index/{event}"}
    own = (await env.get("outsider", f"/logs/event_index/{OTHER_EVENT}")).json()["Log"]
    assert [(x["action"], x["email"]) for x in own] == [("add", "outsider@three.test")]


async def test_the_org_filter_and_paging_slice_the_rows(env: Env) -> None:
    of_org = (await env.get("site_admin", f"/logs/event_index/{EVENT}/OrgTwo")).json()["Log"]
    assert [x["action"] for x in of_org] == ["edit"]
    assert (await env.get("site_admin",
                          f"/logs/event_index/{EVENT}/NoSuchOrg")).json() == {"Log": []}
    second = (await env.get("site_admin",
                            f"/logs/event_index/{EVENT}/limit:1/page:2")).json()["Log"]
    assert [x["action"] for x in second] == ["edit"]
    past = (await env.get("site_admin", f"/logs/event_index/{EVENT}?limit=2&page=9")).json()
    assert past == {"Log": []}


async def test_a_caller_without_a_key_is_refused_in_misps_shape(env: Env) -> None:
    r = await env.get("anonymous", f"/logs/event_index/{EVENT}")
    assert r.status_code == 403
    assert set(r.json()) >= {"name", "message", "url"}
