"""Two MISP calls PyMISP has no method for, through the gateway with httpx in MISP's shapes
(issue 17, item 2): `admin/regexp/clean` (site admins only; this product stores no attributes,
so every run finds them all clean) and `logs/event_index/{id}` (the log rows of one event).

This product holds no events: an event's rows come from a service that does, whose events the
audit logs like any other service's. The test publishes such events on their own topic
(`misp.events.event.v1`, as that service would), then reads them back through the gateway."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pymisp import MISPOrganisation, MISPUser, PyMISP

from misp_contracts.envelope import Actor, Envelope, to_kafka
from misp_contracts.topics import Topic
from misp_platform.kafka import create_producer, ensure_topics

from .support import GATEWAY, admin_headers, admin_key, until
from .test_identity_pymisp import wait_everywhere

NO_PERMISSION = "You do not have permission to use this functionality."
EVENT_TOPIC = Topic("misp.events.event.v1", owner="events",
                    description="an events service's events (tests/e2e: logs/event_index)")


@dataclass(frozen=True)
class Member:
    key: str
    actor: Actor


@pytest.fixture(scope="module")
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)


@pytest.fixture(scope="module")
def members(misp: PyMISP) -> Iterator[dict[str, Member]]:
    """A new org admin and a new user of the host organisation, and a user of a new
    organisation ("outsider"), with their keys; deleted afterwards."""
    org = MISPOrganisation()
    org.name = f"e2e-event-logs-{secrets.token_hex(4)}"
    other = misp.add_organisation(org, pythonify=True)
    assert isinstance(other, MISPOrganisation), other
    created: dict[str, tuple[MISPUser, str]] = {}
    try:
        for name, role_id, org_id, org_name in (
                ("org_admin", 2, 1, None), ("user", 3, 1, None),
                ("outsider", 3, other.id, org.name)):
            user = MISPUser()
            user.email = f"e2e-{name.replace('_', '-')}-{secrets.token_hex(4)}@example.test"
            user.org_id = org_id
            user.role_id = role_id
            added = misp.add_user(user, pythonify=True)
            assert isinstance(added, MISPUser), added
            created[name] = (added, org_name or misp.get_organisation(1, pythonify=True).name)
        for user, _ in created.values():
            wait_everywhere(user.authkey, 200)
        yield {name: Member(user.authkey, Actor(user_id=int(user.id), email=user.email,
                                                org_id=int(user.org_id), org_name=org_name))
               for name, (user, org_name) in created.items()}
    finally:  # also when the set-up fails half-way
        for user, _ in created.values():
            deleted = misp.delete_user(user)
            assert deleted.get("success") is True, deleted
        until(lambda: misp.delete_organisation(other).get("success") is True,
              f"organisation {other.id} deleted once empty")


def _as(key: str) -> dict[str, str]:
    return {"Authorization": key, "Accept": "application/json"}


# ---- admin/regexp/clean ---------------------------------------------------------------------


def test_a_site_admin_cleans_the_attributes_and_finds_nothing_to_change() -> None:
    r = httpx.post(f"{GATEWAY}/admin/regexp/clean", headers=admin_headers())
    assert r.status_code == 200, r.text
    message = "All done! Number of changed attributes: 0 Number of deletions: 0"
    assert r.json() == {"saved": True, "success": True, "name": message, "message": message,
                        "url": "/admin/regexp/clean"}


def test_an_org_admin_or_a_user_may_not_clean(members: dict[str, Member]) -> None:
    for name in ("org_admin", "user"):
        r = httpx.post(f"{GATEWAY}/admin/regexp/clean", headers=_as(members[name].key))
        assert r.status_code == 403, r.text
        assert r.json() == {"name": NO_PERMISSION, "message": NO_PERMISSION,
                            "url": "/admin/regexp/clean"}


# ---- logs/event_index -----------------------------------------------------------------------


async def publish_event_changes(changes: list[tuple[str, int, Actor, dict[str, Any]]]) -> None:
    """`(verb, event id, who, data)`: what an events service publishes as its events change."""
    bootstrap = os.environ["MISP_KAFKA_BOOTSTRAP_SERVERS"]
    await ensure_topics(bootstrap, [EVENT_TOPIC])
    producer = create_producer(bootstrap)
    await producer.start()
    try:
        for verb, event_id, who, data in changes:
            envelope = Envelope(source="/events", type=f"misp.events.event.{verb}.v1",
                                subject=str(event_id), actor=who,
                                data={"event": {"id": event_id, **data}})
            headers, value = to_kafka(envelope)
            await producer.send_and_wait(EVENT_TOPIC.name, value=value,
                                         key=str(event_id).encode(), headers=headers)
    finally:
        await producer.stop()


def event_rows(key: str, event_id: int, count: int) -> list[dict[str, Any]]:
    """The event's rows as the owner of `key` reads them, once there are `count`."""
    def read() -> list[dict[str, Any]] | None:
        # A miss waits up to projection_wait_s (5 s, httpx's default timeout) for the audit's
        # consumer before it answers (docs/consistency.md): the client waits longer.
        r = httpx.get(f"{GATEWAY}/logs/event_index/{event_id}", headers=_as(key), timeout=30)
        rows: list[dict[str, Any]] = r.json()["Log"] if r.status_code == 200 else []
        return rows if len(rows) >= count else None
    return until(read, f"{count} log rows of event {event_id}")


def test_an_events_rows_are_read_by_who_may_see_the_event(misp: PyMISP,
                                                          members: dict[str, Member]) -> None:
    me = misp.get_user(pythonify=True)
    admin = Actor(user_id=int(me.id), email=me.email, org_id=int(me.org_id),
                  org_name=misp.get_organisation(me.org_id, pythonify=True).name)
    outsider = members["outsider"].actor
    shared, own = random.sample(range(10**8, 10**9), 2)
    asyncio.run(publish_event_changes([
        ("added", shared, admin, {"info": "e2e shared event", "distribution": 1}),
        ("updated", shared, outsider, {"changes": {"info": ["e2e shared event", "renamed"]}}),
        ("added", own, outsider, {"info": "e2e outsider's event"}),
    ]))

    rows = event_rows(admin_key(), shared, 2)
    assert [(r["action"], r["email"], r["org"]) for r in rows] == [
        ("edit", outsider.email, outsider.org_name), ("add", admin.email, admin.org_name)]
    assert set(rows[0]) == {"title", "created", "model", "model_id", "action", "change",
                            "org", "email"}
    assert rows[1]["model"] == "Event" and rows[1]["model_id"] == str(shared)
    assert rows[1]["title"] == f"Event ({shared})"

    # Another organisation's user sees the event its org changed, not the admin's email.
    seen = event_rows(members["outsider"].key, shared, 2)
    assert [(r["action"], r["email"]) for r in seen] == [("edit", outsider.email), ("add", "")]
    # A user of the host organisation: the outsider's email is blanked, the admin's shown.
    seen = event_rows(members["user"].key, shared, 2)
    assert [(r["action"], r["email"]) for r in seen] == [("edit", ""), ("add", admin.email)]

    assert len(event_rows(members["outsider"].key, own, 1)) == 1
    for key, event_id in ((members["user"].key, own), (admin_key(), 987654321)):
        # A miss waits up to projection_wait_s (5 s, httpx's default timeout) for the audit's
        # consumer before it answers (docs/consistency.md): the client waits longer.
        r = httpx.get(f"{GATEWAY}/logs/event_index/{event_id}", headers=_as(key), timeout=30)
        assert r.status_code == 404, r.text
        assert r.json() == {"name": "Invalid event.", "message": "Invalid event.",
                            "url": f"/logs/event_index/{event_id}"}


def test_a_caller_without_a_valid_key_may_not_read_an_events_log() -> None:
    r = httpx.get(f"{GATEWAY}/logs/event_index/1", headers=_as("x" * 40))
    assert r.status_code == 403
    assert r.json()["message"].startswith("Authentication failed.")
    assert r.json()["url"] == "/logs/event_index/1"
