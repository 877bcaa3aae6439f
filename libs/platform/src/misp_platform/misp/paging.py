"""MISP's `page` and `limit` on every index, one rule for all services.

Both come as named params (`/page:2/limit:10`), in the query string (`?page=2&limit=10`) or, for
an index that takes a POSTed filter, in its body; a named param wins over the query, the body
over both. Like CakePHP's `Model::buildQuery`, a `page` that is missing, 0 or not a whole number
is page 1, and a page applies only with a limit. A `limit` that is missing, 0 or not a whole
number (`-1`, `²`, `1e3`) is no limit, as MISP's SQL makes of it: every row, but never more than
`MISP_INDEX_MAX_ROWS` (10000 by default); a larger limit is clamped to it. Nothing here answers
4xx: a bad value is ignored, as MISP ignores it. A page past the end is an empty list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from misp_contracts.numbers import whole_number

T = TypeVar("T")
DEFAULT_MAX_ROWS = 10_000
MAX_PAGE = 10**9  # with a limit up to the cap, the offset stays far inside bigint


def index_max_rows() -> int:
    """`MISP_INDEX_MAX_ROWS`: the most rows one index answer holds (at least 1)."""
    number = whole_number(os.environ.get("MISP_INDEX_MAX_ROWS", ""), maximum=10**9)
    return max(number, 1) if number else DEFAULT_MAX_ROWS


@dataclass(frozen=True)
class Page:
    """LIMIT and OFFSET for an index's SQL."""

    offset: int
    limit: int

    def take(self, rows: Sequence[T]) -> list[T]:
        """This page of rows already filtered in Python (when a filter cannot run in SQL)."""
        return list(rows[self.offset:self.offset + self.limit])


def paging(named: Mapping[str, Any], query: Mapping[str, Any] | None = None,
           body: Mapping[str, Any] | None = None, *, default_limit: int | None = None) -> Page:
    """The slice an index answers (see the module's text). `default_limit` is an index's own
    page size when the client gives none (jobs/index: 20); without it, every row up to the cap."""
    cap = index_max_rows()

    def pick(name: str) -> Any:
        for source in (body, named, query):
            if source is not None and source.get(name) not in (None, ""):
                return source.get(name)
        return None

    limit = whole_number(pick("limit")) or default_limit
    if not limit:
        return Page(0, cap)
    limit = min(limit, cap)
    page = min(whole_number(pick("page")) or 1, MAX_PAGE)
    return Page((page - 1) * limit, limit)


def every_row() -> Page:
    """No paging asked for: every row up to the cap."""
    return paging({})


async def get_paging(request: Request) -> Page:
    state = request.scope.get("state") or {}
    named = state.get("named_params")
    return paging(named if isinstance(named, dict) else {}, request.query_params)


Paging = Annotated[Page, Depends(get_paging)]
