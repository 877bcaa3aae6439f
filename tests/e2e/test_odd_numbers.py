"""Ids, pages and recipients that are not plain ASCII numbers, or too large for bigint, get a
4xx in MISP's shape at every service, never a 500 (`"²".isdigit()` is True and `int("²")`
raises; a 20-digit id overflowed PostgreSQL's bigint)."""

from __future__ import annotations

import httpx
import pytest

from .support import GATEWAY, admin_key

HUGE = "9" * 20
CALLS = [
    ("GET", "/admin/users/view/\u00b2", None),
    ("GET", f"/admin/users/view/{HUGE}", None),
    ("GET", "/admin/users/index/searchorg:\u00b2", None),
    ("POST", "/admin/users/email",
     {"action": "custom", "subject": "s", "body": "b", "recipient": "one",
      "recipientEmailList": "\u00b2"}),
    ("GET", "/organisations/index/page:\u00b2", None),
    ("GET", "/jobs/getProgress/\u00b2", None),
    ("GET", f"/jobs/getProgress/{HUGE}", None),
    ("GET", f"/jobs/index/page:{HUGE}", None),
    ("GET", f"/api/v1/jobs/jobs/{HUGE}", None),
    ("POST", f"/api/v1/jobs/jobs/{HUGE}/cancel", None),
    ("POST", f"/api/v1/jobs/jobs/{HUGE}/rerun", None),
    ("POST", f"/api/v1/jobs/tasks/{HUGE}/run", None),
    ("POST", "/tasks/setTask", {"Task": {"\u00b2": {"timer": 1}}}),
    ("GET", "/admin/logs/index/user:\u00b2", None),
]


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[c[1] for c in CALLS])
def test_an_odd_number_is_a_client_error(method: str, path: str, body: object) -> None:
    answer = httpx.request(method, f"{GATEWAY}{path}", json=body, timeout=30, headers={
        "Authorization": admin_key(), "Accept": "application/json"})
    assert answer.status_code < 500, f"{method} {path}: {answer.status_code} {answer.text[:300]}"
    if answer.status_code >= 400:
        assert "message" in answer.json() or "errors" in answer.json(), answer.text[:300]
