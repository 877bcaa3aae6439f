"""The pure pieces of the import-rule, log and operator screens: newest-first paging over an
oldest-first API, the log search's filters, the list forms' bodies, the undelivered report."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from console.forms import Form
from console.pages.lists import (
    ALLOWEDLIST,
    EVENT_BLOCKLIST,
    REGEXP,
    entry_body,
    good_key,
    named_path,
    rows_of,
)
from console.pages.logs import (
    FIRST_CHUNK,
    as_log,
    audit_filters_of,
    change_lines,
    created_range,
    live_feed,
    log_filters,
    newest_first,
)
from console.pages.operator import undelivered


def oldest_first(total: int) -> tuple[Any, list[tuple[int, int]]]:
    """A fake API of `total` rows (ids 1..total) paged oldest first, and its calls."""
    calls: list[tuple[int, int]] = []

    async def fetch(page: int, limit: int) -> list[dict[str, Any]]:
        calls.append((page, limit))
        start = (page - 1) * limit
        return [{"id": i} for i in range(start + 1, min(total, start + limit) + 1)]

    return fetch, calls


@pytest.mark.parametrize("total", [0, 1, 49, 50, 51, 999, 1000, 1001, 1049, 1050, 1051, 2500,
                                   12345])
@pytest.mark.parametrize("page", [1, 2, 3, 30])
def test_newest_first_reads_the_pages_backwards(total: int, page: int) -> None:
    fetch, calls = oldest_first(total)
    rows, has_next = asyncio.run(newest_first(fetch, page, 50))
    newest = list(range(total, 0, -1))
    expected = newest[(page - 1) * 50:page * 50]
    assert [r["id"] for r in rows] == expected
    assert has_next == (len(newest) > page * 50)
    if total < FIRST_CHUNK:
        assert calls == [(1, FIRST_CHUNK)]  # a short list: one call
    else:
        assert len(calls) <= 2 + 4 * total.bit_length()  # probing: logarithmic


def test_log_filters_are_substrings_ranges_and_exact_values() -> None:
    assert log_filters({"email": " bob@", "action": "add", "model": "User", "model_id": "7",
                        "user_id": "x", "title": "Org", "created_from": "2026-12-01T10:00",
                        "created_to": ""}) == {
        "email": "%bob@%", "action": "add", "model": "User", "model_id": "7",
        "title": "%Org%", "created": "2026-12-01T10:00"}
    assert created_range("", "2026-12-04T00:00") == "0||2026-12-04T00:00"
    assert created_range("a", "b") == "a||b"
    assert created_range(None, None) == ""


def test_a_search_goes_to_the_audit_logs_unless_it_needs_the_log_fields() -> None:
    assert audit_filters_of({"email": "%a%", "title": "%t%", "created": "1d"}) == {
        "user": "%a%", "model_title": "%t%", "created": "1d"}
    assert audit_filters_of({"change": "%x%"}) is None
    assert audit_filters_of({"description": "%x%"}) is None
    assert audit_filters_of({"email": "%a%", "user_id": "3"}) is None


def test_an_audit_row_reads_as_a_log_row() -> None:
    row = as_log({"AuditLog": {"id": "9", "created": "2026-12-04 10:00:00", "action": "edit",
                               "model": "User", "model_id": "3", "title": "User (3): a@b",
                               "change": {"email": ["a@b", "c@d"]}, "ip": None},
                  "User": {"email": "admin@x"}, "Organisation": {"name": None}})
    assert row == {"id": "9", "created": "2026-12-04 10:00:00", "email": "admin@x",
                   "org": "SYSTEM", "action": "edit", "model": "User", "model_id": "3",
                   "title": "User (3): a@b", "change": "email: a@b → c@d", "ip": None}
    assert change_lines({"name": "x", "n": 1}) == ["name: x", "n: 1"]
    assert change_lines("") == []
    assert change_lines('{"a": [1, 2]}') == ["a: 1 → 2"]


def test_list_forms_make_the_apis_bodies() -> None:
    form = Form([("uuids", "a\r\n\r\n b \n"), ("comment", "why"), ("event_info", " info "),
                 ("event_orgc", "")])
    assert entry_body(EVENT_BLOCKLIST, form, EVENT_BLOCKLIST.add_fields) == {
        "uuids": ["a", "b"], "comment": "why", "event_info": "info", "event_orgc": ""}
    regexp = Form([("regexp", "/x/i"), ("replacement", "y"), ("type", "")])
    assert entry_body(REGEXP, regexp, REGEXP.add_fields) == {
        "regexp": "/x/i", "replacement": "y", "type": "ALL"}
    assert rows_of(REGEXP, [{"Regexp": {"id": "1"}}, "junk"]) == [{"id": "1"}]
    assert rows_of(EVENT_BLOCKLIST, [{"id": "2"}]) == [{"id": "2"}]
    assert ALLOWEDLIST.path("edit", "3") == "/admin/allowedlists/edit/3"
    assert named_path({"searchall": "a/b c:d", "x": " "}) == "/searchall:a%20b%20c%3Ad"


@pytest.mark.parametrize("key", ["../users", "a/b", "", "x" * 65, "1;2"])
def test_a_key_that_could_name_another_path_is_refused(key: str) -> None:
    with pytest.raises(Exception, match="Invalid entry"):
        good_key(key)


def test_undelivered_messages_per_service() -> None:
    report = {
        "outbox": {"identity": {"ok": True, "parked_messages": 0},
                   "settings": {"ok": False, "error": "critical: 2 message(s) parked"}},
        "services": {"identity": {"reachable": True, "checks": {"consistency": {
            "outbox_backlog": 3, "outbox_oldest": None,
            "flagged_streams": [{"consumer": "c", "topic": "t"}]}}},
            "settings": {"reachable": False}},
    }
    assert undelivered(report) == [
        {"service": "identity", "reachable": True, "parked_ok": True, "parked": 0,
         "parked_problem": None, "backlog": 3, "oldest": None,
         "flagged": [{"consumer": "c", "topic": "t"}]},
        {"service": "settings", "reachable": False, "parked_ok": False, "parked": None,
         "parked_problem": "critical: 2 message(s) parked", "backlog": None, "oldest": None,
         "flagged": []},
    ]
    assert undelivered(None) == []


def test_the_log_page_follows_the_consoles_logs_feed() -> None:
    assert live_feed("logs") == "/console/live/logs"
    assert live_feed("nope") is None
