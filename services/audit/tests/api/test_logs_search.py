"""`admin/logs/index`, `admin/audit_logs/index`, top API users and verify, through the ASGI app
on a real database: MISP's filters and shapes, scoping, and 4xx for bad input."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from audit.adapters.keys import load_or_create_key
from audit.api.routes import checkpoint_topic
from audit.bootstrap import create_app
from audit.handlers.integrity import published_checkpoints, write_checkpoint
from audit.projections.log import Options, Source, project
from audit.settings import AuditSettings
from audit.testing import Namespace, envelope_of, running_relay, wait_until
from misp_contracts.envelope import Actor, Envelope
from misp_contracts.events.audit import AUDIT_CHECKPOINT_TOPIC
from misp_contracts.events.auth import AuthenticationFailed
from misp_contracts.events.identity import UserState, UserUpdated
from misp_contracts.events.settings import SettingChanged
from misp_platform.testing import seed_principal

PEPPER = secrets.token_hex(16)
NO_PERMISSION = "You do not have permission to use this functionality."


@dataclass
class Env:
    client: httpx.AsyncClient
    site_admin: str
    org_admin: str
    auditor: str
    nobody: str
    engine: AsyncEngine
    db: str
    checkpoint_topic: str  # where this test's checkpoints are published (verify reads it)


def actor(uid: int, email: str, org_id: int, org: str, ip: str) -> Actor:
    return Actor(user_id=uid, email=email, org_id=org_id, org_name=org, authkey_id=uid,
                 client_ip=ip)


async def seed_rows(engine: AsyncEngine) -> None:
    def upd(uid: int, old: str, new: str, who: Actor, when: datetime):  # type: ignore[no-untyped-def]
        return envelope_of(UserUpdated(
            user=UserState(id=uid, uuid=str(uuid.uuid4()), email=new, org_id=who.org_id or 1,
                           role_id=3), changes={"email": (old, new)}), actor=who, time=when)

    now = datetime.now(UTC)
    a1 = actor(1, "admin@admin.test", 1, "ORGNAME", "10.0.0.1")
    a2 = actor(2, "orgadmin@two.test", 2, "OrgTwo", "10.0.0.2")
    a3 = actor(3, "auditor@two.test", 2, "OrgTwo", "10.0.0.3")
    events = [
        envelope_of(SettingChanged(name="MISP.log_client_ip", value=True), actor=a1,
                    time=now - timedelta(days=3)),
        upd(20, "testusr-changed@user.local", "testusr@user.local", a1,
            now - timedelta(days=2)),
        upd(21, "a@two.test", "b@two.test", a2, now - timedelta(hours=5)),
        upd(22, "c@two.test", "d@two.test", a3, now - timedelta(hours=1)),
        upd(23, "e@two.test", "f@two.test", a3, now - timedelta(minutes=5)),
        envelope_of(AuthenticationFailed(reason="unknown", title="Failed authentication using "
                                         "API key (abcd" + "*" * 32 + "wxyz)", ip="203.0.113.5"),
                    time=now - timedelta(minutes=1)),
    ]
    async with engine.begin() as conn:
        await project(conn, [(e, Source("misp.x.y.v1", 0, i)) for i, e in enumerate(events)],
                      Options(publish=False))


@pytest.fixture
async def env(audit_db: str, audit_engine: AsyncEngine, tmp_path: Path,
              namespace: Namespace) -> AsyncIterator[Env]:
    keys = {
        "site_admin": await seed_principal(audit_engine, PEPPER, user_id=1,
                                           email="admin@admin.test",
                                           role={"perm_site_admin": True, "perm_admin": True}),
        "org_admin": await seed_principal(audit_engine, PEPPER, user_id=2, org_id=2,
                                          org_name="OrgTwo", email="orgadmin@two.test",
                                          role={"perm_admin": True, "perm_audit": True}),
        "auditor": await seed_principal(audit_engine, PEPPER, user_id=3, org_id=2,
                                        org_name="OrgTwo", email="auditor@two.test",
                                        role={"perm_audit": True}),
        "nobody": await seed_principal(audit_engine, PEPPER, user_id=4, org_id=2,
                                       org_name="OrgTwo"),
    }
    await seed_rows(audit_engine)
    settings = AuditSettings(database_url=audit_db, pepper=PEPPER,
                             signing_key_path=str(tmp_path / "audit-signing.key"))
    app = create_app(settings)
    topic = namespace.topic_of(AUDIT_CHECKPOINT_TOPIC)
    app.dependency_overrides[checkpoint_topic] = lambda: topic
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://audit") as client:
        yield Env(client, engine=audit_engine, db=audit_db, checkpoint_topic=topic, **keys)


async def logs(env: Env, key: str, url: str = "/admin/logs/index", **kw: object) -> httpx.Response:
    return await env.client.request("POST" if "json" in kw or "content" in kw else "GET", url,
                                    headers={"Authorization": key,
                                             "Accept": "application/json"}, **kw)  # type: ignore[arg-type]


async def test_pymisp_style_post_search_finds_the_email_change(env: Env) -> None:
    r = await logs(env, env.site_admin, json={"model": "User", "action": "edit",
                                              "change": "%testusr@user.local%"})
    assert r.status_code == 200
    rows = r.json()
    assert len(rows) == 1
    log = rows[0]["Log"]
    assert log["change"] == "email (testusr-changed@user.local) => (testusr@user.local)"
    assert log["title"] == "User (20): testusr@user.local"
    assert set(log) == {"id", "title", "created", "model", "model_id", "action", "user_id",
                        "change", "email", "org", "description", "ip"}
    assert log["id"].isdigit() and log["model_id"] == "20" and log["ip"] == "10.0.0.1"
    assert len(log["created"]) == 19


async def test_named_params_pipes_lists_created_ranges_and_paging(env: Env) -> None:
    r = await logs(env, env.site_admin, url="/admin/logs/index/action:edit||auth_fail/"
                   "limit:2/page:2.json")
    assert r.status_code == 200
    got = r.json()
    assert len(got) == 2 and [g["Log"]["id"] for g in got] == sorted(g["Log"]["id"] for g in got)
    recent = await logs(env, env.site_admin, json={"created": "6h", "action": ["edit"]})
    assert {x["Log"]["model_id"] for x in recent.json()} == {"21", "22", "23"}
    stamp = (datetime.now(UTC) - timedelta(hours=2)).timestamp()
    rng = await logs(env, env.site_admin, json={"created": [stamp - 86400 * 5, stamp]})
    assert {x["Log"]["action"] for x in rng.json()} == {"serverSettingsEdit", "edit"}
    assert len(rng.json()) == 3
    fail = await logs(env, env.site_admin, json={"email": "SYSTEM", "org": "%SYS%"})
    assert [x["Log"]["action"] for x in fail.json()] == ["auth_fail"]
    # A date alone means "since that day" (as in MISP): the day of the row of 5 hours ago, so
    # that the rows of the last 5 hours are in whatever the time of day (midnight included).
    everything = (await logs(env, env.site_admin)).json()
    day = next(x["Log"]["created"][:10] for x in everything if x["Log"]["model_id"] == "21")
    since = sorted(x["Log"]["id"] for x in everything if x["Log"]["created"][:10] >= day)
    by_day = (await logs(env, env.site_admin, json={"created": day})).json()
    assert sorted(x["Log"]["id"] for x in by_day) == since and len(since) >= 4


async def test_scoping_org_admins_see_their_org_and_others_themselves(env: Env) -> None:
    everything = (await logs(env, env.site_admin)).json()
    org = (await logs(env, env.org_admin)).json()
    mine = (await logs(env, env.auditor)).json()
    assert len(everything) == 6
    assert {x["Log"]["org"] for x in org} == {"OrgTwo"} and len(org) == 3
    assert {x["Log"]["user_id"] for x in mine} == {"3"} and len(mine) == 2
    refused = await logs(env, env.nobody)
    assert refused.status_code == 403 and refused.json()["message"] == NO_PERMISSION


async def test_org_admins_see_their_org_by_id_whatever_its_name(env: Env) -> None:
    def edit(model_id: int, who: Actor) -> Envelope:
        return envelope_of(UserUpdated(
            user=UserState(id=model_id, uuid=str(uuid.uuid4()), email=f"{model_id}@x.test",
                           org_id=who.org_id or 1, role_id=3), changes={"email": ("a", "b")}),
            actor=who)

    def failed(user_id: int, org_name: str) -> Envelope:  # logged by the system, no org id
        return envelope_of(AuthenticationFailed(
            reason="disabled_user", title=f"Failed authentication for user {user_id}",
            user_id=user_id, email=f"user{user_id}@x.test", org_name=org_name, ip="192.0.2.1"))

    # Org 7 is also called OrgTwo; user 6 is of org 7, user 9 of org 2 (not known yet).
    await seed_principal(env.engine, PEPPER, user_id=6, org_id=7, org_name="OrgTwo")
    events = [
        edit(30, actor(5, "old@two.test", 2, "OldTwo", "10.0.0.5")),  # org 2 before a rename
        edit(31, actor(6, "user6@x.test", 7, "OrgTwo", "10.0.0.6")),  # the namesake org
        failed(3, "OrgTwo"), failed(6, "OrgTwo"), failed(9, "OrgTwo"),
    ]
    async with env.engine.begin() as conn:
        await project(conn, [(e, Source("misp.x.y.v1", 1, i)) for i, e in enumerate(events)],
                      Options(publish=False))
    await seed_principal(env.engine, PEPPER, user_id=9, org_id=2, org_name="OrgTwo")

    seen = {(x["Log"]["action"], x["Log"]["user_id"], x["Log"]["model_id"])
            for x in (await logs(env, env.org_admin)).json()}
    assert seen == {("edit", "2", "21"), ("edit", "3", "22"), ("edit", "3", "23"),
                    ("edit", "5", "30"), ("auth_fail", "3", "3"), ("auth_fail", "9", "9")}
    everything = (await logs(env, env.site_admin)).json()
    assert len(everything) == 11  # the namesake's rows exist: the org admin is not shown them
    newer = (await logs(env, env.org_admin, url="/admin/audit_logs/index",
                        json={"action": "auth_fail"})).json()
    # The failure of a user the principals knew is recorded with the user's org id.
    assert {(x["AuditLog"]["user_id"], x["AuditLog"]["org_id"]) for x in newer} == {
        ("3", "2"), ("9", "0")}

async def email_search(env: Env, key: str, patterns: object, *,
                       url: str = "/admin/logs/index") -> list[tuple[str, str]]:
    field = "user" if "audit_logs" in url else "email"  # the newer index names it `user`
    r = await logs(env, key, url=url, json={field: patterns})
    assert r.status_code == 200, r.text
    if "audit_logs" in url:
        return [(x["User"]["email"], x["AuditLog"]["model_id"]) for x in r.json()]
    return [(x["Log"]["email"], x["Log"]["model_id"]) for x in r.json()]


async def test_email_substrings_find_their_rows_through_the_email_list(env: Env) -> None:
    # Rows logged after the first ones (their emails reach log_email by its trigger), one with
    # an email only a LIKE wildcard would match if `_` were not taken literally.
    late = [envelope_of(UserUpdated(
        user=UserState(id=40 + i, uuid=str(uuid.uuid4()), email=f"u{i}@x.test", org_id=2,
                       role_id=3), changes={"email": ("a", "b")}),
        actor=actor(uid, email, 2, "OrgTwo", "10.0.0.9"))
        for i, (uid, email) in enumerate([(7, "New_Admin@Two.TEST"), (8, "newxadmin@two.test")])]
    async with env.engine.begin() as conn:
        await project(conn, [(e, Source("misp.x.y.v1", 2, i)) for i, e in enumerate(late)],
                      Options(publish=False))

    listed = [
        await email_search(env, env.site_admin, "%admin@%"),
        await email_search(env, env.site_admin, "%new\\_admin%"),  # `_` escaped: literal
        await email_search(env, env.site_admin, "%NEW_ADMIN@two%"),  # `_`: any character
        await email_search(env, env.site_admin, ["%auditor%", "orgadmin@two%"]),
        await email_search(env, env.site_admin, ["%auditor%", "admin@admin.test"]),
        await email_search(env, env.org_admin, "%@%"),  # scoped to the org
        await email_search(env, env.site_admin, "%nobody%"),
        await email_search(env, env.site_admin, "%two.test",
                           url="/admin/audit_logs/index"),
    ]
    admin = [("admin@admin.test", "0"), ("admin@admin.test", "20")]  # a setting, an edit
    auditor = [("auditor@two.test", "22"), ("auditor@two.test", "23")]
    new = [("New_Admin@Two.TEST", "40"), ("newxadmin@two.test", "41")]
    assert listed == [
        [*admin, ("orgadmin@two.test", "21"), *new],
        new[:1],
        new,
        [("orgadmin@two.test", "21"), *auditor],
        [*admin, *auditor],
        [("orgadmin@two.test", "21"), *auditor, *new],
        [],
        [*new[::-1], *auditor[::-1], ("orgadmin@two.test", "21")],  # newest first
    ]
    async with env.engine.connect() as conn:  # the list alone serves: no email trigram index
        trigram = (await conn.execute(text(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'log_entry' "
            "AND indexdef LIKE '%(email gin_trgm_ops)%'"))).scalar()
        emails = set((await conn.execute(text("SELECT email FROM log_email"))).scalars())
    assert trigram == 0 and {"New_Admin@Two.TEST", "newxadmin@two.test"} <= emails


@pytest.mark.parametrize("body", [
    {"unknown_field": 1}, {"created": "not a date"}, {"page": -1}, {"limit": 10**9},
    {"id": "1; DROP TABLE log_entry"}, {"user_id": ["x"]}, {"email": {"$ne": 1}},
])
async def test_bad_input_gets_misp_s_4xx_body(env: Env, body: dict[str, object]) -> None:
    r = await logs(env, env.site_admin, json=body)
    assert r.status_code == 400
    assert set(r.json()) == {"name", "message", "url"} and r.json()["url"] == "/admin/logs/index"


async def test_empty_posts_and_malformed_json_are_refused_like_misp(env: Env) -> None:
    empty = await logs(env, env.site_admin, content=b"")
    assert empty.status_code == 400
    assert empty.json()["message"].startswith("Either specify the search terms in the url")
    bad = await logs(env, env.site_admin, content=b"{nope")
    assert bad.status_code == 405 and bad.json()["message"].startswith("Invalid JSON input")
    named = await logs(env, env.site_admin, url="/admin/logs/index/page:-3")
    assert named.status_code == 400
    weird = await logs(env, env.site_admin, json={"title": "%'\";--%"})
    assert weird.status_code == 200 and weird.json() == []


async def test_audit_logs_index_has_misp_s_newer_shape(env: Env) -> None:
    r = await logs(env, env.site_admin, url="/admin/audit_logs/index",
                   json={"user": "auditor@two.test"})
    assert r.status_code == 200
    rows = r.json()
    assert [x["AuditLog"]["model_id"] for x in rows] == ["23", "22"]  # id DESC
    first = rows[0]
    assert first["AuditLog"]["change"] == {"email": ["e@two.test", "f@two.test"]}
    assert first["AuditLog"]["request_type"] == "1" and first["AuditLog"]["authkey_id"] == "3"
    assert first["User"] == {"id": "3", "email": "auditor@two.test", "org_id": "2"}
    assert first["Organisation"]["name"] == "OrgTwo" and first["Organisation"]["uuid"]
    bad = await logs(env, env.site_admin, url="/admin/audit_logs/index", json={"title": "x"})
    assert bad.status_code == 400


async def test_top_api_users_counts_rows_by_ip_and_email(env: Env) -> None:
    r = await logs(env, env.site_admin, url="/api/v1/audit/top_api_users/limit:2")
    assert r.status_code == 200
    assert r.json()[0] == {"ip": "10.0.0.3", "email": "auditor@two.test", "count": "2"}
    assert len(r.json()) == 2
    since = await logs(env, env.site_admin, url="/api/v1/audit/top_api_users?since=30m")
    assert {(x["ip"], x["email"]) for x in since.json()} == {("10.0.0.3", "auditor@two.test"),
                                                              ("203.0.113.5", "SYSTEM")}
    assert (await logs(env, env.site_admin,
                       url="/api/v1/audit/top_api_users?limit=0")).status_code == 400
    assert (await logs(env, env.org_admin,
                       url="/api/v1/audit/top_api_users")).status_code == 403


async def test_the_verify_endpoint_reports_the_first_broken_link(env: Env,
                                                                tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit-signing.key")
    assert (tmp_path / "audit-signing.key").stat().st_mode & 0o777 == 0o600
    await write_checkpoint(env.engine, key)
    ok = await logs(env, env.site_admin, url="/api/v1/audit/verify")
    assert ok.status_code == 200 and ok.json()["ok"] is True and ok.json()["entries"] == 6
    async with env.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE log_entry SET title = 'nothing to see' "
                                "WHERE model_id = 22"))
    broken = (await logs(env, env.site_admin, url="/api/v1/audit/verify")).json()
    assert broken["ok"] is False and broken["first_broken"]["reason"].startswith("content")
    assert (await logs(env, env.auditor, url="/api/v1/audit/verify")).status_code == 403


async def test_the_verify_endpoint_compares_the_checkpoints_with_kafka_by_default(
        env: Env, tmp_path: Path, namespace: Namespace, kafka_bootstrap: str) -> None:
    key = load_or_create_key(tmp_path / "audit-signing.key")
    await namespace.ensure(env.checkpoint_topic, partitions=1)
    await write_checkpoint(env.engine, key, topic=env.checkpoint_topic)
    async with running_relay(env.engine, env.db, kafka_bootstrap):
        await wait_until(lambda: published_checkpoints(kafka_bootstrap, env.checkpoint_topic),
                         what="the checkpoint on Kafka")
    ok = (await logs(env, env.site_admin, url="/api/v1/audit/verify")).json()
    assert ok["ok"] is True and ok["compared_with_kafka"] is True and ok["checkpoints"] == 1
    # Whoever can write the database deletes the checkpoint: only Kafka's copy remembers it.
    async with env.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("DELETE FROM log_checkpoint"))
    found = (await logs(env, env.site_admin, url="/api/v1/audit/verify")).json()
    assert found["ok"] is False and found["compared_with_kafka"] is True
    assert found["checkpoint_problem"] == ("checkpoint 1 was published but is not in the "
                                           "database")
    skipped = (await logs(env, env.site_admin, url="/api/v1/audit/verify?db_only=1")).json()
    assert skipped["ok"] is True and skipped["compared_with_kafka"] is False


async def test_the_verify_endpoint_verifies_after_a_checkpoint_and_says_what_it_left_out(
        env: Env, tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "audit-signing.key")
    cp = await write_checkpoint(env.engine, key)
    assert cp is not None
    async with env.engine.begin() as conn:  # an entry the checkpoint's signed head covers
        await conn.execute(text("UPDATE log_entry SET title = 'x' WHERE model_id = 22"))
    bounded = (await logs(env, env.site_admin,
                          url=f"/api/v1/audit/verify?db_only=1&since_checkpoint={cp.number}")
               ).json()
    assert bounded["ok"] is True and bounded["full"] is False, bounded
    assert (bounded["since_checkpoint"], bounded["entries"], bounded["not_covered_entries"]) == (
        cp.number, 0, 6)
    assert bounded["last_full"] is None  # no full verification ran yet
    full = (await logs(env, env.site_admin, url="/api/v1/audit/verify?db_only=1&full=1")).json()
    assert full["ok"] is False and full["full"] is True and full["since_checkpoint"] is None
    assert full["first_broken"]["reason"].startswith("content")
    assert full["last_full"]["ran_by"] == "api" and full["last_full"]["ok"] is False
    again = (await logs(env, env.site_admin,
                        url=f"/api/v1/audit/verify?db_only=1&since_checkpoint={cp.number}")
             ).json()
    assert again["ok"] is True and again["last_full"]["first_broken"]["reason"].startswith(
        "content")  # the bounded answer carries the last full verification's verdict


@pytest.mark.parametrize("query", [
    "since_checkpoint=abc", "since_checkpoint=0", "since_checkpoint=99", "since=yesterdayish",
    "full=maybe", "full=1&since_checkpoint=1", "since=1d&since_checkpoint=1", "bogus=1",
])
async def test_the_verify_endpoint_answers_400_to_a_bad_range(env: Env, tmp_path: Path,
                                                              query: str) -> None:
    await write_checkpoint(env.engine, load_or_create_key(tmp_path / "audit-signing.key"))
    r = await logs(env, env.site_admin, url=f"/api/v1/audit/verify?db_only=1&{query}")
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"name", "message", "url"}
