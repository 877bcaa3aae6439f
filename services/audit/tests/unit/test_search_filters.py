"""Log search filters: MISP's forms are understood, anything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit.domain.search import (
    MAX_LIMIT,
    SearchError,
    parse_audit_filters,
    parse_log_filters,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_percent_means_like_lists_and_pipes_mean_or() -> None:
    q = parse_log_filters({"email": "%admin%", "action": "add||edit", "model": ["User", "Role"],
                           "user_id": "5"}, NOW)
    by = {c.column: c for c in q.conditions}
    assert by["email"].op == "like" and by["email"].values == ("%admin%",)
    assert by["action"].values == ("add", "edit") and by["model"].op == "in"
    assert by["user_id"].values == (5,)


def test_created_takes_timestamps_ages_dates_and_ranges() -> None:
    ts = parse_log_filters({"created": 1767225600.5}, NOW).conditions[0]
    assert ts.op == "ge" and ts.values[0] == datetime.fromtimestamp(1767225600.5, UTC)
    age = parse_log_filters({"created": "1d"}, NOW).conditions[0]
    assert age.values[0] == NOW - timedelta(days=1)
    day = parse_log_filters({"created": "2024-10-21"}, NOW).conditions[0]
    assert day.values[0] == datetime(2024, 10, 21, tzinfo=UTC)
    rng = parse_log_filters({"created": ["2024-10-22", "2024-10-21"]}, NOW).conditions
    assert [c.op for c in rng] == ["ge", "le"] and rng[0].values[0] < rng[1].values[0]


@pytest.mark.parametrize("filters", [
    {"nope": 1}, {"created": "yesterday-ish"}, {"page": -1}, {"page": 0},
    {"limit": MAX_LIMIT + 1}, {"limit": "ten"}, {"id": "1 OR 1=1"}, {"email": {"a": 1}},
    {"user_id": 2**70}, {"created": ["1d", "2d", "3d"]}, {"email": [True]},
])
def test_bad_filters_are_search_errors(filters: dict[str, object]) -> None:
    with pytest.raises(SearchError):
        parse_log_filters(filters, NOW)


def test_audit_log_filters_map_to_the_same_columns() -> None:
    q = parse_audit_filters({"user": "a@b.test", "org": "3", "model_title": "%x%",
                             "request_type": 1}, NOW)
    by = {c.column: c for c in q.conditions}
    assert by["email"].values == ("a@b.test",) and by["org_id"].values == (3,)
    assert by["title"].op == "like" and by["request_type"].values == (1,)
    assert q.limit == 60
    with pytest.raises(SearchError):
        parse_audit_filters({"title": "x"}, NOW)
