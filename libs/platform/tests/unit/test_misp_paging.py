"""One paging rule for every index: MISP's `page` and `limit`, bad values ignored, a cap."""

from __future__ import annotations

import pytest

from misp_platform.misp.paging import DEFAULT_MAX_ROWS, MAX_PAGE, Page, paging


def test_named_query_and_body() -> None:
    assert paging({"page": "2", "limit": "10"}) == Page(10, 10)
    assert paging({}, {"page": "3", "limit": "5"}) == Page(10, 5)
    assert paging({"limit": "4"}, {"limit": "7", "page": "2"}) == Page(4, 4)
    assert paging({"limit": "4"}, None, {"limit": 6, "page": 2}) == Page(6, 6)


@pytest.mark.parametrize("page", [None, "", "0", "\u00b2", "-1", "9" * 20, "1e3", "abc"])
def test_a_bad_or_missing_page_is_page_one(page: str | None) -> None:
    assert paging({"page": page, "limit": "10"}) == Page(0, 10)


@pytest.mark.parametrize("limit", [None, "", "0", "\u00b2", "-1", "9" * 20, "0x1f"])
def test_a_bad_or_missing_limit_is_every_row_up_to_the_cap(limit: str | None) -> None:
    assert paging({"page": "3", "limit": limit}) == Page(0, DEFAULT_MAX_ROWS)


def test_the_cap_and_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_INDEX_MAX_ROWS", "3")
    assert paging({}) == Page(0, 3)
    assert paging({"limit": "50", "page": "2"}) == Page(3, 3)
    assert paging({"page": "2"}, default_limit=2) == Page(2, 2)
    assert paging({"page": str(MAX_PAGE * 10), "limit": "1"}) == Page(MAX_PAGE - 1, 1)
