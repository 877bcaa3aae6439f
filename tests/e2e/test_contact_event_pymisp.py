"""PyMISP's `contact_event_reporter` through the gateway (issue 17, item 2): this product holds
no events, so every call gets MISP's answer for an event it does not find, whoever sends it."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pymisp import PyMISP

from .support import GATEWAY, admin_key
from .test_regexp_clean_and_event_logs import Member, members  # noqa: F401  (fixture)

INVALID = {"name": "Invalid event", "message": "Invalid event"}


@pytest.fixture(scope="module")
def misp() -> PyMISP:
    return PyMISP(GATEWAY, admin_key(), ssl=False, timeout=30)


def test_contacting_a_reporter_finds_no_event(misp: PyMISP,
                                              members: dict[str, Member]) -> None:  # noqa: F811
    as_user = PyMISP(GATEWAY, members["user"].key, ssl=False, timeout=30)
    for client, event in ((misp, 5), (misp, str(uuid.uuid4())), (as_user, 5)):
        answer = client.contact_event_reporter(event, "About your event")
        assert answer["errors"][0] == 404, answer
        assert answer["errors"][1] == {**INVALID, "url": f"/events/contact/{event}"}


def test_a_caller_without_a_valid_key_may_not_contact_a_reporter() -> None:
    r = httpx.post(f"{GATEWAY}/events/contact/5", json={"message": "m"},
                   headers={"Authorization": "x" * 40, "Accept": "application/json"})
    assert r.status_code == 403
    assert r.json()["message"].startswith("Authentication failed.")
